"""How results reach the PACS: on one association kept between sends (opening and releasing one per
result cost more than the C-STORE itself), replaced when the PACS has dropped it or it sat idle; and,
with a broker, sent by the worker that made them, or queued for later while the PACS is down."""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
from redis import Redis

from bench.local_server import free_port
from fracture_web.dicom_node import sender as sender_module
from fracture_web.dicom_node.config import NodeConfig
from fracture_web.dicom_node.sender import CStoreSender
from fracture_web.dicom_node.shared_studies import SharedStudies
from fracture_web.dicom_node.tasks import DELIVER, WorkerContext, celery_app, deliver_or_queue

from dicom_files import secondary_captures
from helpers import wait_until
from servers import REDIS, redis_server, storage_scp


def config_for(port: int, **settings) -> NodeConfig:
    return replace(NodeConfig(dest_host="127.0.0.1", dest_port=port, dest_ae_title="DEST", retries=1,
                              retry_delay=5.0), **settings)


def test_results_sent_one_after_another_go_on_one_association():
    port, associations = free_port(), []
    sender = CStoreSender(config_for(port))
    with storage_scp(port, associations=associations) as received:
        for result in secondary_captures(3):
            assert sender.attempt([result]) is None
        sender.close()
    assert len(received) == 3 and len(associations) == 1


def test_when_the_pacs_has_dropped_the_kept_association_the_next_send_opens_a_new_one_and_goes_through():
    port, associations = free_port(), []
    sender = CStoreSender(config_for(port))
    first, second = secondary_captures(2)
    with storage_scp(port, associations=associations) as received:
        assert sender.attempt([first]) is None
        associations[0].abort()  # the PACS restarts, or times the association out (noticed or not yet)
        assert sender.attempt([second]) is None
        sender.close()
    assert [ds.SOPInstanceUID for ds in received] == [first.SOPInstanceUID, second.SOPInstanceUID]
    assert len(associations) == 2


def test_an_association_left_idle_is_released_and_the_next_send_opens_a_new_one(monkeypatch):
    monkeypatch.setattr(sender_module, "KEEP_IDLE_SECONDS", 0.2)
    port, associations = free_port(), []
    sender = CStoreSender(config_for(port))
    first, second = secondary_captures(2)
    with storage_scp(port, associations=associations) as received:
        assert sender.attempt([first]) is None
        wait_until(lambda: associations[0].is_released, timeout=5)  # released by us, not aborted
        assert sender.attempt([second]) is None
        sender.close()
    assert len(received) == 2 and len(associations) == 2


@pytest.mark.skipif(REDIS is None, reason="redis-server is not installed (make test installs the Debian package "
                    "'redis-server' as root with apt-get)")
def test_a_worker_queues_its_results_while_the_pacs_is_down_and_the_queued_task_delivers_them_later(tmp_path):
    port, (first, second) = free_port(), secondary_captures(2)
    with redis_server(tmp_path) as url:
        config = config_for(port, broker_url=url)
        app, queued = celery_app(config), []
        app.context = WorkerContext(config, None, CStoreSender(config), SharedStudies(Redis.from_url(url), 3600))
        app.send_task = lambda name, args, **options: queued.append((name, args, options.get("kwargs")))
        task = SimpleNamespace(app=app)
        deliver_or_queue(task, [first])  # nothing listens: it cannot connect
        assert app.context.sender.recently_unreachable()
        deliver_or_queue(task, [second])  # queued without waiting on the PACS again
        assert [(name, kwargs) for name, _args, kwargs in queued] == [(DELIVER, {"refusals": 0})] * 2
        with storage_scp(port) as received:
            for _name, args, kwargs in queued:
                assert app.tasks[DELIVER].apply(args=args, kwargs=kwargs).successful()
            deliver_or_queue(task, [first])  # an analysis run again: its result went already
            app.context.sender.close()
    assert [ds.SOPInstanceUID for ds in received] == [first.SOPInstanceUID, second.SOPInstanceUID]

"""The DICOM node under faults and attack: one study whose report cannot be made, one result the PACS
refuses for ever, a modality's invalid UIDs, strangers and idle associations, Redis down, and a
worker's task that runs twice. Each story ends with everything else still delivered: nothing one
bad item does stops the others (pynetdicom on both ends; a real redis-server where a broker is in it)."""
from __future__ import annotations

import copy
import threading
import time
import tracemalloc
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client import REGISTRY
from pydicom import dcmread
from pydicom.uid import (ComprehensiveSRStorage, DeflatedExplicitVRLittleEndian, DigitalXRayImageStorageForPresentation,
                         ExplicitVRLittleEndian)
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config
from pynetdicom.sop_class import Verification
from redis import Redis

from bench.local_server import free_port
from fracture_web.dicom_node import report, scp
from fracture_web.dicom_node.associations import IdleWatch
from fracture_web.dicom_node.broker import BrokerNode
from fracture_web.dicom_node.config import NodeConfig, NodeConfigError, from_environment
from fracture_web.dicom_node.dead_letter import REDIS_KEY
from fracture_web.dicom_node.scp import serve_metrics
from fracture_web.dicom_node.sender import CStoreSender
from fracture_web.dicom_node.server import Node
from fracture_web.dicom_node.shared_studies import SharedStudies
from fracture_web.dicom_node.tasks import DELIVER, REPORT, WorkerContext, celery_app, encode
from fracture_web.dicom_node.worker import recovery_seconds

from dicom_files import (analysis_of, cited, deflate_bomb, radiograph_dataset, radiograph_study, reading_of,
                         secondary_captures)
from helpers import synthetic_xray, wait_until
from servers import REDIS, redis_server, storage_scp

needs_redis = pytest.mark.skipif(REDIS is None, reason="redis-server is not installed (make test installs the Debian "
                                 "package 'redis-server' as root with apt-get)")
PACS_AE, MODALITY_AE = "DEST", "MODALITY"


def node_config(tmp_path, dest_port: int, **settings) -> NodeConfig:
    """A one-box node on loopback that takes images from the test's modality and sends to its PACS."""
    return replace(NodeConfig(dest_host="127.0.0.1", dest_port=dest_port, dest_ae_title=PACS_AE, bind="127.0.0.1",
                              port=free_port(), allowed_ae_titles=(MODALITY_AE,), queue_dir=tmp_path / "queue",
                              retries=1, retry_delay=0.05, resend_interval=0.2, settle_seconds=0.2), **settings)


def associate(port: int, calling: str = MODALITY_AE, sop_class=None):
    ae = AE(ae_title=calling)
    ae.add_requested_context(sop_class or Verification, ExplicitVRLittleEndian)
    return ae.associate("127.0.0.1", port, ae_title="FRACTURE_AI")


def c_store(port: int, ds, calling: str = MODALITY_AE):
    """Send one dataset to the node as a modality would; the status dataset (None when not associated)."""
    assoc = associate(port, calling, ds.SOPClassUID)
    if not assoc.is_established:
        return None
    try:
        return assoc.send_c_store(ds)
    finally:
        assoc.release()



def dead_letters(reason: str) -> float:
    return REGISTRY.get_sample_value("fracture_dead_letters_total", {"reason": reason}) or 0.0


@contextmanager
def running(node):
    node.start()
    try:
        yield node
    finally:
        node.stop()


def views(seed: int, count: int) -> list:
    rng = np.random.default_rng(seed)
    return radiograph_study([synthetic_xray(rng, crack=i == 0, size=(200, 160)) for i in range(count)])


def test_a_view_whose_report_cannot_be_made_is_set_aside_and_everything_else_is_delivered_also_after_a_restart(
        model, tmp_path, monkeypatch):
    bad_study, good_study = views(1, 2), views(2, 1)
    poison = bad_study[1].SOPInstanceUID  # say, its Rescale Slope is NaN and the SR builder raises on it
    made = report.measurement_report

    def faulty(readings, now):
        if any(reading.source.SOPInstanceUID == poison for reading in readings):
            raise ValueError("cannot encode a NaN measurement")
        return made(readings, now)

    monkeypatch.setattr(report, "measurement_report", faulty)
    dest_port, before = free_port(), dead_letters("report_failed")
    config = node_config(tmp_path, dest_port, settle_seconds=3600)
    with running(Node(config, model)):  # the first run receives the bad study and stops while it settles
        assert [c_store(config.port, view).Status for view in bad_study] == [0x0000, 0x0000]
    restarted = replace(config, port=free_port(), settle_seconds=0.2)
    with storage_scp(dest_port) as received, running(Node(restarted, model)):  # the old code's thread died here
        assert c_store(restarted.port, good_study[0]).Status == 0x0000
        wait_until(lambda: len(received) == 5)  # 3 Secondary Captures, a report for each study
    reports = {ds.StudyInstanceUID: cited(ds) for ds in received if ds.SOPClassUID == ComprehensiveSRStorage}
    assert reports == {bad_study[0].StudyInstanceUID: [bad_study[0].SOPInstanceUID],  # its good view is reported
                       good_study[0].StudyInstanceUID: [good_study[0].SOPInstanceUID]}
    assert sorted(ds.SourceImageSequence[0].ReferencedSOPInstanceUID for ds in received if ds.Modality == "OT") == \
        sorted(view.SOPInstanceUID for view in bad_study + good_study)
    (kept,) = Node(restarted, model).dead_letters.items()
    assert "report_failed" in kept.name and poison in kept.read_text()  # its reading, for a person to look at
    assert dead_letters("report_failed") == before + 1


def node_with_queue(model, tmp_path, dest_port: int, queued: list) -> Node:
    """A node (not started: the test turns it) with ``queued`` in its outbox, oldest first, that sets a
    result aside after 3 failed sends."""
    node = Node(node_config(tmp_path, dest_port, dead_letter_after=3), model)
    for ds in queued:
        node.outbox.put(ds)
    return node


def test_a_result_the_pacs_refuses_for_ever_does_not_hold_up_those_queued_behind_it(model, tmp_path):
    refused, *others = secondary_captures(3)
    dest_port, before = free_port(), dead_letters("refused")
    node = node_with_queue(model, tmp_path, dest_port, [refused, *others])
    with storage_scp(dest_port, refuse=frozenset({refused.SOPInstanceUID})) as received:
        assert node._resend_queued()
        assert sorted(ds.SOPInstanceUID for ds in received) == sorted(ds.SOPInstanceUID for ds in others)
        assert len(node.outbox.pending()) == 1 and node.outbox.refusals(node.outbox.pending()[0]) == 1
        for _ in range(2):
            node._resend_queued()
    assert node.outbox.pending() == [] and len(received) == 2
    (kept,) = node.dead_letters.items()
    assert dcmread(kept).SOPInstanceUID == refused.SOPInstanceUID and dead_letters("refused") == before + 1
    assert "0xA700" in kept.with_name(kept.name + ".why").read_text()


def test_a_result_the_pacs_aborts_on_for_ever_does_not_hold_up_those_queued_behind_it_and_is_set_aside(
        model, tmp_path):
    # The PACS was down, three results were queued; back up, it cuts the association whenever the
    # oldest one is sent (as a DICOM firewall may on an object it cannot parse), never answering.
    poison, *others = secondary_captures(3)
    dest_port, before = free_port(), dead_letters("aborted")
    node = node_with_queue(model, tmp_path, dest_port, [poison, *others])
    with storage_scp(dest_port, abort_on=frozenset({poison.SOPInstanceUID})) as received:
        assert node._resend_queued()  # the old code stopped the round at the poison, every round, for ever
        assert sorted(ds.SOPInstanceUID for ds in received) == sorted(ds.SOPInstanceUID for ds in others)
        (waiting,) = node.outbox.pending()
        assert node.outbox.refusals(waiting) == 1  # held against the file, as a refusal is
        for _ in range(2):
            node._resend_queued()
    assert node.outbox.pending() == [] and len(received) == 2
    (kept,) = node.dead_letters.items()  # set aside, not lost: a person can move it back to the queue
    assert dcmread(kept).SOPInstanceUID == poison.SOPInstanceUID and dead_letters("aborted") == before + 1
    assert "no answer" in kept.with_name(kept.name + ".why").read_text()


def test_a_pacs_that_is_down_costs_the_queued_results_none_of_their_tries(model, tmp_path):
    queued = secondary_captures(3)
    dest_port = free_port()  # nothing listens there: the PACS is down for many resend rounds
    node = Node(node_config(tmp_path, dest_port, dead_letter_after=2), model)
    for ds in queued:
        node.outbox.put(ds)
    for _ in range(5):
        assert not node._resend_queued()
    assert [node.outbox.refusals(path) for path in node.outbox.pending()] == [0, 0, 0]
    assert node.dead_letters.items() == []
    with storage_scp(dest_port) as received:  # back up: everything goes, oldest first
        assert node._resend_queued()
    assert [ds.SOPInstanceUID for ds in received] == [ds.SOPInstanceUID for ds in queued]


@pytest.mark.filterwarnings("ignore:.*VR UI:UserWarning")  # pydicom warns, and sends them as a modality would
def test_a_radiograph_with_an_invalid_study_uid_is_refused_at_intake_saying_why(model, tmp_path):
    source = views(3, 1)[0]
    long_uid, letters = copy.deepcopy(source), copy.deepcopy(source)
    long_uid.StudyInstanceUID = "1.2." + "3" * 296  # 300 characters: no PACS would take its results
    letters.SeriesInstanceUID = "1.2.abc"
    config = node_config(tmp_path, free_port(), settle_seconds=3600)
    with running(Node(config, model)) as node:
        for ds, keyword in ((long_uid, "StudyInstanceUID"), (letters, "SeriesInstanceUID")):
            status = c_store(config.port, ds)
            assert status.Status == 0xC000 and keyword in status.ErrorComment
        assert c_store(config.port, source).Status == 0x0000
        assert len(node.collector.settled()) == 0 and len(list(config.studies_dir.iterdir())) == 1  # only the good


def test_only_the_allowed_calling_ae_titles_and_hosts_may_open_an_association(model, tmp_path):
    config = node_config(tmp_path, free_port(), settle_seconds=3600)
    with running(Node(config, model)):
        stranger = associate(config.port, calling="ANY_HOST")
        assert stranger.is_rejected and not stranger.is_established
        assert c_store(config.port, views(4, 1)[0], calling="ANY_HOST") is None
        assert c_store(config.port, views(5, 1)[0]).Status == 0x0000
    elsewhere = replace(config, port=free_port(), allowed_hosts=("10.0.0.0/8",))
    with running(Node(elsewhere, model)):  # with allowed hosts, the right AE title from the wrong host is not enough
        started = time.monotonic()
        assert not associate(elsewhere.port).is_established and time.monotonic() - started < 5
    here = replace(config, port=free_port(), allowed_hosts=("192.168.0.0/16", "127.0.0.1"))
    with running(Node(here, model)):
        assert c_store(here.port, views(5, 1)[0]).Status == 0x0000
    pacs_only = from_environment({"FRACTURE_DICOM_DEST_HOST": "pacs", "FRACTURE_DICOM_DEST_AE_TITLE": "PACS"})
    assert pacs_only.callers == ("PACS",)  # by default only the PACS the results go to
    listed = from_environment({"FRACTURE_DICOM_DEST_HOST": "pacs", "FRACTURE_DICOM_DEST_AE_TITLE": "PACS",
                               "FRACTURE_DICOM_ALLOWED_AE_TITLES": "CR_ROOM_1, DX_ROOM_2"})
    assert listed.callers == ("CR_ROOM_1", "DX_ROOM_2")
    with pytest.raises(NodeConfigError, match="^FRACTURE_DICOM_ALLOWED_HOSTS .*'the-ward'"):
        from_environment({"FRACTURE_DICOM_DEST_HOST": "pacs", "FRACTURE_DICOM_DEST_AE_TITLE": "PACS",
                          "FRACTURE_DICOM_ALLOWED_HOSTS": "10.0.0.0/8, the-ward"})


def test_a_good_store_is_accepted_while_ten_idle_associations_are_held_with_c_echoes(model, tmp_path):
    assert NodeConfig().max_associations >= 32  # sized for a hospital's modalities, not pynetdicom's 10
    # Idle for 2.5 s: longer than opening the ten takes on a busy machine (up to 0.2 s each), or the
    # first would be closed before the last is open.
    config = node_config(tmp_path, free_port(), settle_seconds=3600, max_associations=10, idle_seconds=2.5)
    with running(Node(config, model)):
        held = [associate(config.port) for _ in range(10)]
        assert all(assoc.is_established for assoc in held)
        stop = threading.Event()

        def echo():  # what keeps pynetdicom's own network timeout from ever firing
            while not stop.wait(0.2):
                for assoc in held:
                    if assoc.is_established:
                        assoc.send_c_echo()

        echoing = threading.Thread(target=echo, daemon=True)
        echoing.start()
        try:
            started, status = time.monotonic(), None
            while status is None and time.monotonic() - started < 10:
                status = c_store(config.port, views(6, 1)[0])  # rejected while all ten slots are taken
            assert status is not None and status.Status == 0x0000
            assert time.monotonic() - started < 5
            wait_until(lambda: not any(assoc.is_established for assoc in held), timeout=5)  # the idle ones were closed
        finally:
            stop.set()
            echoing.join()


@needs_redis
def test_with_redis_down_the_broker_node_answers_out_of_resources_within_seconds(tmp_path):
    source = views(7, 1)[0]
    config = replace(node_config(tmp_path, free_port()), visibility_timeout=120.0)
    with redis_server(tmp_path) as url:
        node = BrokerNode(replace(config, broker_url=url))
        node.start()
        assert c_store(config.port, source).Status == 0x0000  # queued for the workers
    try:
        started = time.monotonic()  # Redis has stopped
        status = c_store(config.port, source)
        assert status.Status == 0xA700  # "out of resources": the modality keeps the image and retries
        assert time.monotonic() - started < 5
    finally:
        node.stop()


@needs_redis
def test_a_result_task_run_again_after_a_worker_died_does_not_send_it_twice(tmp_path):
    sc, *_ = secondary_captures(3)
    dest_port = free_port()
    with redis_server(tmp_path) as url, storage_scp(dest_port) as received:
        config = replace(node_config(tmp_path, dest_port), broker_url=url)
        app = celery_app(config)
        app.context = WorkerContext(config, None, CStoreSender(config), SharedStudies(Redis.from_url(url), 3600))
        deliver = app.tasks[DELIVER]
        for _ in range(2):  # the second run: the message came back after the worker died before acknowledging
            assert deliver.apply(args=[[encode(sc)]]).successful()
        assert [ds.SOPInstanceUID for ds in received] == [sc.SOPInstanceUID]
        for readings in (2, 2, 3):  # a study's report, run twice, then re-issued (same UID) over a late view
            assert deliver.apply(args=[[encode(sc)], "study-key", readings]).successful()
        assert len(received) == 3


@needs_redis
def test_a_study_whose_reporting_task_died_before_queuing_its_report_is_reported_when_the_task_runs_again(tmp_path):
    source = radiograph_dataset(np.full((64, 48), 90, np.uint8))
    reading = reading_of(source, analysis_of(source, False, (), display_max_side=32), received=100.0)
    with redis_server(tmp_path) as url:
        config = replace(node_config(tmp_path, free_port()), broker_url=url, settle_seconds=0)
        app = celery_app(config)
        app.context = WorkerContext(config, None, CStoreSender(config), SharedStudies(Redis.from_url(url), 3600))
        key, queued = app.context.studies.add(reading), []

        def dies_while_queuing(name, args, **options):
            raise SystemExit("SIGKILL")  # the worker dies as it hands the report to Redis

        app.send_task = dies_while_queuing
        with pytest.raises(SystemExit):
            app.tasks[REPORT].apply(args=[key], task_id="report-check", throw=True)
        app.send_task = lambda name, args, **options: queued.append((name, args))
        # Its message came back (the same task id): the task runs again.
        assert app.tasks[REPORT].apply(args=[key], task_id="report-check").successful()
    assert [(name, args[1:]) for name, args in queued] == [(DELIVER, [key, 1])]


@needs_redis
def test_a_result_refused_for_ever_by_the_pacs_goes_to_the_dead_letter_list_with_a_broker(tmp_path):
    sc, *_ = secondary_captures(3)
    dest_port, before = free_port(), dead_letters("refused")
    with redis_server(tmp_path) as url, storage_scp(dest_port, refuse=frozenset({sc.SOPInstanceUID})) as received:
        config = replace(node_config(tmp_path, dest_port), broker_url=url, dead_letter_after=1)
        app = celery_app(config)
        app.context = WorkerContext(config, None, CStoreSender(config), SharedStudies(Redis.from_url(url), 3600))
        assert app.tasks[DELIVER].apply(args=[[encode(sc)]]).successful()  # set aside, not retried for ever
        (entry,) = Redis.from_url(url).lrange(REDIS_KEY, 0, -1)
    assert received == [] and b'"refused"' in entry and dead_letters("refused") == before + 1


def test_a_dead_workers_task_is_taken_up_again_within_about_two_minutes_by_default():
    config = from_environment({"FRACTURE_DICOM_DEST_HOST": "pacs", "FRACTURE_DICOM_DEST_AE_TITLE": "PACS",
                               "FRACTURE_BROKER_URL": "redis://broker.local:6379/0"})
    assert recovery_seconds(config) <= 120  # was an hour: visibility 3600 s
    assert celery_app(config).conf.broker_transport_options["visibility_timeout"] == config.visibility_timeout
    assert config.visibility_timeout > max(config.settle_seconds, config.resend_interval)  # no live task restored


def test_the_metrics_server_listens_on_the_nodes_bind_address_only():
    server = serve_metrics(NodeConfig(bind="127.0.0.1", metrics_port=free_port()))
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()
        server.server_close()


def test_a_deflated_bomb_is_refused_at_intake_and_the_next_good_store_still_accepted(model, tmp_path, monkeypatch):
    """A few hundred kilobytes that pynetdicom alone would inflate to 400 MB in the node's memory."""
    monkeypatch.setattr(pynetdicom_config, "STORE_SEND_CHUNKED_DATASET", True)  # the modality sends the file as it is
    source = views(4, 1)[0]
    bomb = tmp_path / "bomb.dcm"
    bomb.write_bytes(deflate_bomb(copy.deepcopy(source), inflated_mb=400))
    config = node_config(tmp_path, free_port(), settle_seconds=3600)
    with running(Node(config, model)):
        ae = AE(ae_title=MODALITY_AE)
        ae.add_requested_context(source.SOPClassUID, DeflatedExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", config.port, ae_title="FRACTURE_AI")
        tracemalloc.start()
        try:
            status = assoc.send_c_store(bomb)
            _now, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            assoc.release()
        assert status.Status == 0xC000 and "inflated" in status.ErrorComment
        assert peak < 250 << 20
        assert c_store(config.port, source).Status == 0x0000


def test_an_instance_over_the_size_limit_aborts_its_association_and_the_next_store_is_accepted(
        model, tmp_path, monkeypatch):
    """pynetdicom holds whatever a peer sends in memory: the node stops an instance at the limit as it arrives."""
    monkeypatch.setattr(scp, "IdleWatch", partial(IdleWatch, max_bytes=1 << 20))
    rng = np.random.default_rng(5)
    small = radiograph_dataset(synthetic_xray(rng, crack=False, size=(200, 160)))
    large = radiograph_dataset(synthetic_xray(rng, crack=False, size=(1200, 1000)).astype(np.uint16) * 16)  # 2.4 MB
    config = node_config(tmp_path, free_port(), settle_seconds=3600)
    with running(Node(config, model)):
        assoc = associate(config.port, sop_class=large.SOPClassUID)
        status = assoc.send_c_store(large)
        assert not status  # no status: the association was aborted mid-instance
        wait_until(lambda: not assoc.is_established, timeout=5)
        assert c_store(config.port, small).Status == 0x0000


def test_an_instance_still_arriving_keeps_its_association_from_counting_as_idle():
    clock = [0.0]
    class Assoc:  # the parts of a pynetdicom association the watch looks at (weakly referenced, as they are)
        accepted_contexts = [SimpleNamespace(context_id=1, abstract_syntax=Verification),
                             SimpleNamespace(context_id=3, abstract_syntax=DigitalXRayImageStorageForPresentation)]
        requestor = SimpleNamespace(ae_title=MODALITY_AE)

        def abort(self) -> None:
            aborted.append(True)

    assoc, aborted = Assoc(), []
    watch = IdleWatch(10.0, lambda: [assoc], clock=lambda: clock[0])

    def pdu(context_id: int) -> SimpleNamespace:
        item = SimpleNamespace(context_id=context_id, data=bytes(16_000))
        return SimpleNamespace(assoc=assoc, pdu=SimpleNamespace(presentation_data_value_items=[item]))

    watch.close_idle()  # first seen at 0 s
    for second in range(1, 30):
        clock[0] = float(second)
        watch.received(pdu(3))  # a large image on a slow link
        assert watch.close_idle() == 0
    for second in range(30, 45):
        clock[0] = float(second)
        watch.received(pdu(1))  # C-ECHOs only from now on
    assert watch.close_idle() == 1 and aborted == [True]

"""A hospital's Redis freezes (a stuck process, a failover, a firewall that drops packets) while the
broker node holds a connection to it. The modality's C-STORE must not wait for its own timeout: the
node answers "out of resources" (0xA700) within seconds, as when Redis is down, and the modality keeps
the image and sends it again. Once Redis answers again, the image it resends is queued and taken.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import replace

from redis import Redis

from bench.local_server import free_port
from fracture_web.dicom_node.broker import BrokerNode
from fracture_web.dicom_node.tasks import QUEUE, celery_app

from servers import redis_server
from test_dicom_node_faults import c_store, needs_redis, node_config, running, views


@needs_redis
def test_a_frozen_redis_makes_the_broker_node_refuse_within_seconds_and_queue_the_image_sent_again(tmp_path):
    first, second = views(11, 2)
    processes: list = []
    with redis_server(tmp_path, processes) as url:
        config = replace(node_config(tmp_path, free_port()), broker_url=url, visibility_timeout=120.0)
        queue = Redis.from_url(url)
        with running(BrokerNode(config)):
            assert c_store(config.port, first).Status == 0x0000  # the node holds a connection to Redis now
            os.kill(processes[0].pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                status = c_store(config.port, second)
                waited = time.monotonic() - started
            finally:
                os.kill(processes[0].pid, signal.SIGCONT)
            assert status is not None and status.Status == 0xA700  # the modality keeps the image and retries
            assert waited < 8, f"the C-STORE waited {waited:.1f} s on a frozen Redis"
            assert queue.llen(QUEUE) == 1, "the refused image was queued all the same"
            assert c_store(config.port, second).Status == 0x0000  # sent again once Redis answers
            assert queue.llen(QUEUE) == 2


def test_workers_and_the_node_give_up_on_a_redis_command_that_gets_no_answer(tmp_path):
    config = replace(node_config(tmp_path, free_port()), broker_url="redis://127.0.0.1:6379/0")
    options = celery_app(config).conf.broker_transport_options
    assert 0 < options["socket_timeout"] <= 5 and options["socket_keepalive"]

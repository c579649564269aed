"""A poison radiograph: one whose analysis kills the worker (a decoder crash, an out-of-memory kill).
Its message is never acknowledged, so it comes back to the next worker, and the next. After
``FRACTURE_BROKER_MAX_DELIVERIES`` starts that never finished, the image is set aside in the dead
letter (its only copy, kept) instead of killing one more worker; the other images go on as usual.
"""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from redis import Redis

from bench.local_server import free_port
from fracture_web.dicom_node import tasks
from fracture_web.dicom_node.config import from_environment
from fracture_web.dicom_node.dead_letter import RECEIVED_KEY
from fracture_web.dicom_node.sender import CStoreSender
from fracture_web.dicom_node.shared_studies import SharedStudies
from fracture_web.dicom_node.tasks import ANALYSE, WorkerContext, celery_app, encode

from dicom_files import radiograph_dataset
from servers import redis_server
from test_dicom_node_faults import needs_redis, node_config


@needs_redis
def test_an_image_that_kills_its_worker_each_time_is_set_aside_after_the_allowed_deliveries(tmp_path, monkeypatch):
    poison = encode(radiograph_dataset(np.full((64, 48), 90, np.uint8)))
    starts = []

    def dies(*args, **kwargs):
        starts.append(1)
        raise SystemExit("SIGKILL")  # the worker dies mid-analysis: its message is never acknowledged

    monkeypatch.setattr(tasks, "read_radiograph", dies)
    with redis_server(tmp_path) as url:
        config = replace(node_config(tmp_path, free_port()), broker_url=url, max_deliveries=3)
        app = celery_app(config)
        client = Redis.from_url(url)
        app.context = WorkerContext(config, None, CStoreSender(config), SharedStudies(client, 3600))
        for _ in range(3):  # the message comes back (same task id) to the next worker, which dies too
            with pytest.raises(SystemExit):
                app.tasks[ANALYSE].apply(args=[poison, 0.0], task_id="poison", throw=True)
        assert app.tasks[ANALYSE].apply(args=[poison, 0.0], task_id="poison").successful()
        (entry,) = [json.loads(text) for text in client.lrange(RECEIVED_KEY, 0, -1)]
    assert len(starts) == 3, "the fourth worker analysed it again"
    assert entry["reason"] == "analysis_failed" and entry["payload"] == poison  # kept for a person to look at
    assert "WorkerLost" in entry["error"]


def test_the_allowed_deliveries_are_a_setting_of_the_workers():
    config = from_environment({"FRACTURE_DICOM_DEST_HOST": "pacs", "FRACTURE_DICOM_DEST_AE_TITLE": "PACS",
                               "FRACTURE_BROKER_MAX_DELIVERIES": "5"})
    assert config.max_deliveries == 5

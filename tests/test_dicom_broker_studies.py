"""Studies read by several workers: whichever worker read each view, the study is due for its report
once it has stopped growing, is not reported twice, gets a re-issued report for a late view, and a
report still waiting for a retry is dropped once a newer one covers more views (SharedStudies on a
real redis-server; no model)."""
from __future__ import annotations

import numpy as np
import pytest
from redis import Redis

from fracture_web.dicom_node.shared_studies import SharedStudies

from dicom_files import BOXES, analysis_of, radiograph_study, reading_of
from helpers import synthetic_xray
from servers import REDIS, redis_server

pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server is not installed and could not be installed "
                                "here (make test installs the Debian package 'redis-server' as root with apt-get)")


def test_a_study_is_reported_once_settled_and_again_for_a_late_view(tmp_path):
    rng = np.random.default_rng(5)
    sources = radiograph_study([synthetic_xray(rng, crack=i == 1, size=(200, 160)) for i in range(3)])
    readings = [reading_of(source, analysis_of(source, i == 1, BOXES if i == 1 else (), display_max_side=80),
                           received=100.0 + i) for i, source in enumerate(sources)]
    with redis_server(tmp_path) as url:
        first_worker, second_worker = (SharedStudies(Redis.from_url(url), keep_seconds=3600) for _ in range(2))
        key = first_worker.add(readings[0])
        assert second_worker.add(readings[1]) == key  # one study, whoever read the view
        assert first_worker.due(key, settle_seconds=60) is None  # it grew just now: still settling
        due = second_worker.due(key, settle_seconds=0)
        assert [r.source.SOPInstanceUID for r in due] == [s.SOPInstanceUID for s in sources[:2]]
        first_worker.reporting(key, len(due))
        assert second_worker.due(key, settle_seconds=0) is None  # reported: the other checks do nothing

        first_worker.add(readings[2])  # a late view
        assert len(second_worker.due(key, settle_seconds=0)) == 3
        second_worker.reporting(key, 3)
        assert first_worker.superseded(key, 2) and not first_worker.superseded(key, 3)
        assert 0 < Redis.from_url(url).ttl(f"fracture:study:{key}") <= 3600  # forgotten after the keeping time


def test_two_workers_finding_a_study_due_at_once_make_its_report_once(tmp_path):
    rng = np.random.default_rng(6)
    sources = radiograph_study([synthetic_xray(rng, crack=False, size=(200, 160)) for _ in range(2)])
    first_view, late_view = (reading_of(source, analysis_of(source, False, (), display_max_side=80),
                                        received=100.0 + i) for i, source in enumerate(sources))
    with redis_server(tmp_path) as url:
        first_worker, second_worker = (SharedStudies(Redis.from_url(url), keep_seconds=3600) for _ in range(2))
        key = first_worker.add(first_view)
        assert first_worker.due(key, 0) and second_worker.due(key, 0)  # both checks ran late, together
        assert first_worker.claim(key, 1, "check-1", seconds=60)
        assert not second_worker.claim(key, 1, "check-2", seconds=60)  # it leaves that report to the first
        assert first_worker.claim(key, 1, "check-1", seconds=60)  # the first check, retried, still holds it
        second_worker.add(late_view)
        assert second_worker.claim(key, 2, "check-2", seconds=60)  # a report over more views is a new claim

"""Where an analysis spends its time: each stage timed as it runs, in the web app and in the DICOM
node alike, with no prometheus in the pure code (the callers hand the record to the metrics)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from prometheus_client import REGISTRY

from dicom_files import radiograph_dataset
from fracture_web.analysis import analyse
from fracture_web.dicom_node.radiograph import read_radiograph
from fracture_web.pixels import InvalidImageError
from fracture_web.timings import StageTimings


def stage_count(stage: str) -> float:
    return REGISTRY.get_sample_value("fracture_stage_seconds_count", {"stage": stage}) or 0.0


def test_an_analysis_fills_the_record_it_is_given_stage_by_stage(model, sample_bytes):
    timings = StageTimings()
    analyse(sample_bytes, model, timings=timings)
    assert [stage for stage, _ in timings.entries] == ["decode", "model", "findings", "render"]
    assert all(seconds > 0 for _, seconds in timings.entries)
    without_images = StageTimings()
    analyse(sample_bytes, model, images=False, timings=without_images)
    assert [stage for stage, _ in without_images.entries] == ["decode", "model", "findings"]


def test_a_stage_that_fails_is_not_timed_and_an_unknown_stage_is_a_mistake(model):
    timings = StageTimings()
    with pytest.raises(InvalidImageError):
        analyse(b"not an image", model, timings=timings)
    assert timings.entries == []
    with pytest.raises(ValueError, match="unknown stage 'inference'"):
        with timings.stage("inference"):
            pass


def test_the_dicom_nodes_radiographs_are_timed_in_the_same_histogram(model, sample_bytes):
    gray = cv2.imdecode(np.frombuffer(sample_bytes, np.uint8), cv2.IMREAD_GRAYSCALE)
    before = {stage: stage_count(stage) for stage in ("decode", "model", "findings", "render", "encode")}
    read_radiograph(radiograph_dataset(gray), model, None)
    # the node sends DICOM objects, not an encoded answer of the web app's
    assert {stage: stage_count(stage) - count for stage, count in before.items()} == \
        {"decode": 1, "model": 1, "findings": 1, "render": 1, "encode": 0}

"""The docs' site page screenshot shows real validation radiographs, read by their dataset labels: the
sample behind it is the shipped model's validation split, its fractured share as asked, the same on every run."""
from __future__ import annotations

import pytest

from bench.site_page_screenshot import MODEL, training_seed, validation_sample
from fracture_web.datasets import read_records
from helpers import FRACATLAS

pytestmark = pytest.mark.skipif(not FRACATLAS.is_dir(), reason="FracAtlas is only on the project's machines")


def test_the_screenshot_sample_is_validation_images_with_their_labels_the_same_every_run():
    seed = training_seed(MODEL)
    sample = validation_sample(FRACATLAS, seed, size=120, fractured=40)
    validation = read_records(FRACATLAS, split="val")
    label_of = dict(zip(validation.paths, validation.labels.tolist()))
    assert len(sample) == len({path for path, _ in sample}) == 120
    assert all(label_of[path] == label for path, label in sample)  # only validation images, their own labels
    assert sum(label for _, label in sample) == 40
    assert validation_sample(FRACATLAS, seed, size=120, fractured=40) == sample

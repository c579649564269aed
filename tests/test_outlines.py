"""The radiologists' outlines land where the preprocessing puts those pixels."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from fracture_web.imaging import to_model_input
from fracture_web.outlines import mask_in_image, mask_in_model_input, read_outlines
from helpers import FRACATLAS


def write_coco(path, annotations):
    images = [{"id": 1, "file_name": "images/a.png", "width": 200, "height": 100}]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": []}))


def test_a_polygon_is_read_and_a_missing_one_falls_back_to_the_box(tmp_path):
    square = [[10, 10, 30, 10, 30, 30, 10, 30]]
    write_coco(tmp_path / "a.json", [{"image_id": 1, "segmentation": square, "bbox": [10, 10, 20, 20]},
                                     {"image_id": 1, "segmentation": [], "bbox": [100, 50, 10, 20]}])
    outlines = read_outlines(tmp_path / "a.json")
    assert "images/a.png" in outlines and outlines.sizes["images/a.png"] == (100, 200)
    mask = mask_in_image(outlines.polygons["images/a.png"], 100, 200)
    assert mask[20, 20] and mask[60, 105] and not mask[5, 5] and not mask[60, 150]


def test_the_model_input_mask_follows_the_letterbox():
    # A bright square in a 100x200 image, and its outline: the mask must cover the square's pixels
    # in the letterboxed model input.
    image = np.zeros((100, 200), np.float32)
    image[40:60, 120:160] = 1.0
    outline = [np.array([[120, 40], [160, 40], [160, 60], [120, 60]], np.float32)]
    model_input = to_model_input(image, 64)[..., 0]
    mask = mask_in_model_input(outline, 100, 200, 64)
    bright = model_input > 0.5
    assert (mask[bright] == 1).mean() > 0.9 and (bright[mask == 1]).mean() > 0.6


@pytest.mark.skipif(not (FRACATLAS / "annotations.json").is_file(), reason="FracAtlas is not beside the repo")
def test_fracatlas_outlines_match_their_files():
    outlines = read_outlines(FRACATLAS / "annotations.json")
    assert len(outlines) == 603
    name = sorted(outlines.polygons)[0]
    image = cv2.imread(str(FRACATLAS / name), cv2.IMREAD_GRAYSCALE)
    assert image.shape == outlines.sizes[name]

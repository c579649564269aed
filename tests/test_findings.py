"""Boxes from the fracture map: decoding and suppression on hand-made maps, the letterbox undone for
portrait, landscape and tiny images, and findings that agree with the verdict."""
from __future__ import annotations

import numpy as np
import pytest

from fracture_web.findings import (UNSCALED, Finding, FindingLevels, FindingLevelsError, box_iou,
                                   box_scale_from_metadata, candidates, grade, locate, suppress, to_image_box)
from fracture_web.imaging import letterbox_geometry, to_model_input

SIZE = 384
LEVELS = FindingLevels(definite=0.5, possible=0.3, min_probability=0.1)


def map_with(*spots: tuple[int, int, float], cells: int = 24) -> np.ndarray:
    """A fracture map with one bright cell (row, column, value) per spot on a faint background."""
    fracture_map = np.full((cells, cells), 0.01, np.float32)
    for row, column, value in spots:
        fracture_map[row, column] = value
    return fracture_map


def test_one_bright_cell_gives_one_box_around_that_cell():
    [(score, box)] = [c for c in candidates(map_with((5, 10, 0.9)), SIZE) if c[0] > 0.1]
    assert score == pytest.approx(0.9, abs=0.1)
    x0, y0, x1, y1 = box
    cell = SIZE / 24  # the cell spans x 160-176, y 80-96 of the input
    assert x0 <= 10.5 * cell <= x1 and y0 <= 5.5 * cell <= y1
    assert x1 - x0 <= 2 * cell and y1 - y0 <= 2 * cell


def test_two_separate_spots_give_two_boxes_highest_first():
    found = candidates(map_with((5, 5, 0.6), (18, 18, 0.9)), SIZE)
    scores = [score for score, _ in found[:2]]
    assert scores[0] > scores[1] > 0.3
    (cx0, cy0), (cx1, cy1) = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for _, b in found[:2]]
    assert cx0 > SIZE / 2 > cx1 and cy0 > SIZE / 2 > cy1


def test_the_models_box_scale_shrinks_each_box_about_its_centre():
    fracture_map = map_with((5, 5, 0.6), (18, 18, 0.9))
    fracture_map[17:20, 16:21] = np.maximum(fracture_map[17:20, 16:21], 0.8)  # a region wider than tall
    plain, scaled = ([c for c in candidates(fracture_map, SIZE, box_scale=scale) if c[0] > 0.1]
                     for scale in ((1.0, 1.0), (0.5, 0.25)))
    assert len(plain) == 2 and [score for score, _ in scaled] == [score for score, _ in plain]
    for (_, a), (_, b) in zip(plain, scaled):
        assert (b[0] + b[2]) / 2 == pytest.approx((a[0] + a[2]) / 2) and (b[1] + b[3]) / 2 == pytest.approx((a[1] + a[3]) / 2)
        assert b[2] - b[0] == pytest.approx((a[2] - a[0]) / 2) and b[3] - b[1] == pytest.approx((a[3] - a[1]) / 4)


@pytest.mark.parametrize("value", [["wide", 1], [0, 1], [1.0], [1.0, 50.0], "0.8"])
def test_a_box_scale_is_two_factors_from_the_metadata_or_none(value):
    assert box_scale_from_metadata({}) == UNSCALED == box_scale_from_metadata({"findings": {"definite": 0.5}})
    assert box_scale_from_metadata({"findings": {"box_scale": [0.8, 0.65]}}) == (0.8, 0.65)
    with pytest.raises(FindingLevelsError, match="box_scale"):
        box_scale_from_metadata({"findings": {"box_scale": value}})


def test_a_blank_map_gives_no_boxes():
    assert candidates(np.zeros((24, 24), np.float32), SIZE) == []


def test_suppression_keeps_the_best_of_overlapping_boxes_and_at_most_three():
    boxes = [(0.9, (0, 0, 10, 10)), (0.8, (1, 1, 11, 11)), (0.7, (50, 50, 60, 60)),
             (0.6, (100, 0, 110, 10)), (0.5, (0, 100, 10, 110))]
    kept = suppress(boxes)
    assert [score for score, _ in kept] == [0.9, 0.7, 0.6]


def test_iou_of_identical_disjoint_and_half_overlapping_boxes():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)


@pytest.mark.parametrize("height, width", [(1000, 600), (600, 1000), (40, 30)],
                         ids=["portrait", "landscape", "tiny"])
def test_a_box_round_trips_through_the_letterbox(height, width):
    # A bright square in the image, letterboxed as the app does, lands where the box says.
    image = np.zeros((height, width), np.float32)
    y0, x0, y1, x1 = height // 4, width // 2, height // 2, 3 * width // 4
    image[y0:y1, x0:x1] = 1.0
    model_input = to_model_input(image, SIZE)[..., 0]
    ys, xs = np.nonzero(model_input > 0.5)
    box = to_image_box((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), height, width, SIZE)
    tolerance = 1.5 / letterbox_geometry(height, width, SIZE).scale  # a pixel of the input, either side
    assert box == pytest.approx((x0, y0, x1, y1), abs=tolerance)


def test_boxes_in_the_padding_are_clipped_to_the_image():
    fit = letterbox_geometry(1000, 600, SIZE)  # portrait: padding left and right
    assert fit.left > 0
    box = to_image_box((0, 0, fit.left + 10, 50), 1000, 600, SIZE)
    assert box[0] == 0 and box[2] == pytest.approx(10 / fit.scale)


def test_a_fractured_verdict_always_has_a_finding():
    weak = [(0.2, (0, 0, 10, 10))]
    assert grade(weak, probability=0.9, fractured=True, levels=LEVELS) == [(0.2, (0, 0, 10, 10), "possible")]


def test_a_not_fractured_verdict_never_has_a_definite_finding():
    strong = [(0.9, (0, 0, 10, 10)), (0.4, (50, 50, 60, 60))]
    graded = grade(strong, probability=0.2, fractured=False, levels=LEVELS)
    assert [level for *_, level in graded] == ["possible", "possible"]
    assert grade(strong, probability=0.05, fractured=False, levels=LEVELS) == []  # below every operating point


def test_levels_follow_the_thresholds_when_fractured():
    scored = [(0.9, (0, 0, 10, 10)), (0.4, (50, 50, 60, 60)), (0.1, (100, 100, 110, 110))]
    assert [level for *_, level in grade(scored, 0.9, True, LEVELS)] == ["definite", "possible"]


def test_locate_returns_findings_in_image_pixels_highest_first():
    findings = locate(map_with((12, 12, 0.95), (3, 3, 0.4)), (800, 800), SIZE, probability=0.9, fractured=True,
                      levels=LEVELS)
    assert [f.level for f in findings] == ["definite", "possible"]
    assert all(isinstance(f, Finding) and 0 <= f.box[0] < f.box[2] <= 800 for f in findings)
    assert findings[0].as_dict()["box"][0] >= 400 > findings[1].as_dict()["box"][2]  # right half, left half


def test_levels_are_read_from_metadata_and_checked():
    levels = FindingLevels.from_metadata({"findings": {"definite": 0.6, "possible": 0.3}},
                                         {"balanced": 0.3, "high_sensitivity": 0.07})
    assert levels == FindingLevels(0.6, 0.3, 0.07)
    with pytest.raises(FindingLevelsError):
        FindingLevels.from_metadata({"findings": {"definite": 0.2, "possible": 0.3}}, {"balanced": 0.3})

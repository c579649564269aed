"""One finding per fracture region: a radiologist never sees a box inside another box, the definite
level is chosen so that definite boxes on fractured images mostly land on the fracture, and the
findings table counts the images that would show nested boxes."""
from __future__ import annotations

import numpy as np
import pytest

from fracture_web.evaluation.localisation import Located, choose_levels, findings_table
from fracture_web.findings import EXTENT, FindingLevels, candidates, overlap_of_smaller, suppress

SIZE = 384
CELLS = 24
OUTLINE = (100.0, 100.0, 130.0, 130.0)


def blob(row: float, column: float, height: float, width: float) -> np.ndarray:
    """A Gaussian spot on a CELLS x CELLS map (``width`` in cells)."""
    ys, xs = np.mgrid[:CELLS, :CELLS]
    return (height * np.exp(-((ys - row) ** 2 + (xs - column) ** 2) / (2 * width ** 2))).astype(np.float32)


def nested_pairs(boxes: list) -> int:
    return sum(overlap_of_smaller(a, b) >= 0.9 for i, (_, a) in enumerate(boxes) for _, b in boxes[i + 1:])


def test_a_sharp_peak_on_a_broad_shoulder_gives_one_box_not_two_nested():
    # A bright narrow spot beside the top of a broad, fainter swelling: one fracture region.
    fracture_map = blob(12, 12, 0.5, 4.0) + blob(12, 14, 0.45, 0.8)
    found = [c for c in candidates(fracture_map, SIZE) if c[0] > 0.2]
    assert len(found) == 1
    assert nested_pairs(candidates(fracture_map, SIZE)) == 0


def test_a_plateau_with_two_peaks_gives_one_box():
    # Two peaks joined above half their height (the saddle is below 70% of either, so their cores are apart).
    fracture_map = blob(12, 10, 0.8, 1.3) + blob(12, 14, 0.75, 1.3)
    assert len([c for c in candidates(fracture_map, SIZE) if c[0] > 0.2]) == 1


def test_two_separate_blobs_give_two_boxes():
    fracture_map = blob(5, 5, 0.8, 1.0) + blob(18, 18, 0.7, 1.0)
    found = [c for c in candidates(fracture_map, SIZE) if c[0] > 0.2]
    assert len(found) == 2 and nested_pairs(found) == 0


def test_a_box_inside_a_kept_box_is_dropped_however_small_its_iou():
    big, small, apart = (0, 0, 100, 100), (10, 10, 20, 20), (200, 200, 220, 220)  # small's IoU with big: 0.01
    assert suppress([(0.9, big), (0.8, small), (0.7, apart)]) == [(0.9, big), (0.7, apart)]
    assert suppress([(0.9, small), (0.8, big), (0.7, apart)]) == [(0.9, small), (0.7, apart)]  # one that holds it too


def test_overlap_is_measured_over_the_smaller_box():
    assert overlap_of_smaller((0, 0, 100, 100), (10, 10, 20, 20)) == 1.0
    assert overlap_of_smaller((0, 0, 10, 10), (5, 0, 25, 10)) == pytest.approx(0.5)
    assert overlap_of_smaller((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert overlap_of_smaller((0, 0, 0, 10), (0, 0, 10, 10)) == 0.0  # an empty box overlaps nothing


def test_the_findings_table_counts_images_with_nested_boxes_and_precision_per_level():
    nested = Located(1, 0.9, [(0.9, (98, 98, 128, 128)), (0.8, (0, 0, 300, 300))], [OUTLINE])
    apart = Located(1, 0.9, [(0.9, (98, 98, 128, 128)), (0.8, (300, 300, 330, 330))], [OUTLINE])
    normal = Located(0, 0.05, [])
    table = findings_table([nested, apart, normal], FindingLevels(definite=0.5, possible=0.3, min_probability=0.1),
                           threshold=0.3)
    assert table["images_with_nested_boxes"] == 1
    # Four definite boxes on fractured images: the two on the outline hit; the wide one around it does not.
    assert (table["definite_findings"], table["definite_hits"]) == (4, 2)
    assert table["definite_precision"] == 0.5 and table["findings_per_fractured_image"] == 2.0


def test_the_definite_threshold_keeps_most_definite_boxes_on_the_fracture():
    # Normal images carry no box, so only precision on the fractured ones can raise the threshold:
    # every strong box (0.8) is on the outline, every middling one (0.5) is elsewhere.
    fractured = [Located(1, 0.9, [(0.8, (98, 98, 128, 128)), (0.5, (300, 300, 330, 330))], [OUTLINE])
                 for _ in range(4)]
    normals = [Located(0, 0.05, []) for _ in range(4)]
    levels = choose_levels(fractured + normals, threshold=0.3, min_probability=0.1)
    assert 0.5 < levels.definite <= 0.8
    table = findings_table(fractured + normals, levels, threshold=0.3)
    assert table["definite_precision"] == 1.0 and table["images_with_nested_boxes"] == 0


def test_the_possible_threshold_caps_findings_per_fractured_image():
    # Three boxes per fractured image, nothing on normal images: the possible level must drop the weakest.
    fractured = [Located(1, 0.9, [(0.8, (98, 98, 128, 128)), (0.4, (300, 300, 330, 330)), (0.3, (0, 0, 20, 20))],
                         [OUTLINE]) for _ in range(4)]
    normals = [Located(0, 0.05, []) for _ in range(4)]
    levels = choose_levels(fractured + normals, threshold=0.3, min_probability=0.1)
    assert findings_table(fractured + normals, levels, threshold=0.3)["findings_per_fractured_image"] <= 1.5


def test_the_model_card_shows_precision_per_level_and_the_nested_count():
    import json

    from fracture_web.config import PROJECT_ROOT
    from fracture_web.evaluation.diagnostic_accuracy import to_json
    from fracture_web.evaluation.model_card import render

    model_dir = PROJECT_ROOT / "model"
    metadata, metrics = (json.loads((model_dir / name).read_text()) for name in ("metadata.json", "metrics.json"))
    nested = Located(1, 0.9, [(0.9, (98, 98, 128, 128)), (0.8, (0, 0, 300, 300))], [OUTLINE])
    table = findings_table([nested, Located(0, 0.05, [])], FindingLevels(0.5, 0.3, 0.1), threshold=0.3)
    card = render(metadata, {**metrics, "findings": json.loads(to_json(table))})
    assert "| definite findings on fractured images that are on an outline | 50.0% (1 of 2) |" in card
    assert "| images with one box inside another | 1 of 2 |" in card
    assert f"each boxed by the region above {EXTENT:.0%} of its peak" in card and "so no box lies inside" in card

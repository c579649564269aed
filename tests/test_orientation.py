"""Radiographs reach a PACS turned or mirrored: the renderings do exactly that, and the robustness
table reports the model under each, beside (not among) the scanner shifts."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fracture_web.datasets import read_records
from fracture_web.evaluation.robustness import format_robustness, robustness_table
from fracture_web.orientation import ORIENTATIONS, flip_horizontal, flip_vertical, rotate_quarter_turns
from fracture_web.shifts import SHIFTS

#: An asymmetric image: no rotation or mirror maps it onto itself.
ASYMMETRIC = np.array([[1, 2, 3],
                       [4, 5, 6]], np.float32)


def test_quarter_turns_rotate_counter_clockwise():
    np.testing.assert_array_equal(rotate_quarter_turns(ASYMMETRIC, 1), [[3, 6], [2, 5], [1, 4]])
    np.testing.assert_array_equal(rotate_quarter_turns(ASYMMETRIC, 2), [[6, 5, 4], [3, 2, 1]])
    np.testing.assert_array_equal(rotate_quarter_turns(ASYMMETRIC, 3), [[4, 1], [5, 2], [6, 3]])
    np.testing.assert_array_equal(rotate_quarter_turns(ASYMMETRIC, -1), rotate_quarter_turns(ASYMMETRIC, 3))


def test_flips_mirror_left_to_right_and_top_to_bottom():
    np.testing.assert_array_equal(flip_horizontal(ASYMMETRIC), [[3, 2, 1], [6, 5, 4]])
    np.testing.assert_array_equal(flip_vertical(ASYMMETRIC), [[4, 5, 6], [1, 2, 3]])


def test_every_orientation_keeps_the_pixels_and_returns_a_new_contiguous_image():
    for orientation in ORIENTATIONS:
        out = orientation.apply(ASYMMETRIC, np.random.default_rng(0))
        assert out.flags["C_CONTIGUOUS"] and not np.shares_memory(out, ASYMMETRIC)
        assert out.dtype == ASYMMETRIC.dtype and sorted(out.ravel()) == sorted(ASYMMETRIC.ravel())
        assert not np.array_equal(out, ASYMMETRIC)
    assert [o.name for o in ORIENTATIONS] == ["rot90", "rot180", "rot270", "flip_horizontal", "flip_vertical"]


class TopHalfModel:
    """Stands in for FractureModel: the probability is the mean of the input's top half, so it
    sees a bar at the top of an image and misses the same bar turned upside down."""

    input_size = 64
    thresholds = {"balanced": 0.5}

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.batch_sizes.append(len(batch))
        return {"probability": batch[:, :32].mean(axis=(1, 2, 3)), "heatmap": np.zeros((len(batch), 8, 8), np.float32)}


def bar_folder(root: Path) -> Path:
    """Four fractured and four other images: black squares with their top rows white, a deeper
    bar for the fractured ones (so the unshifted AUC is 1)."""
    rows = ["path,label"]
    for label, shares in ((1, (0.3, 0.35, 0.4, 0.45)), (0, (0.05, 0.1, 0.15, 0.2))):
        for share in shares:
            image = np.zeros((128, 128), np.uint8)
            image[:round(share * 128)] = 255
            cv2.imwrite(str(root / f"{label}_{share}.png"), image)
            rows.append(f"{label}_{share}.png,{label}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_the_robustness_table_reports_each_orientation_apart_from_the_scanner_shifts(tmp_path):
    model = TopHalfModel()
    table = robustness_table(read_records(bar_folder(tmp_path)), model, batch_size=4, orientations=ORIENTATIONS)
    assert table["reference"]["auc"] == 1.0
    assert list(table["shifts"]) == [shift.name for shift in SHIFTS]
    assert list(table["orientation"]) == ["rot90", "rot180", "rot270", "flip_horizontal", "flip_vertical"]
    rows = table["orientation"]
    assert all(set(row) == set(table["shifts"]["gamma_1.4"]) and not row["scanner"] for row in rows.values())
    # Mirrored left to right, or turned a quarter (the bar now a column across both halves), the
    # order holds; upside down, every image's top half is black: the model cannot tell them apart.
    assert rows["flip_horizontal"]["auc"] == rows["rot90"]["auc"] == rows["rot270"]["auc"] == 1.0
    assert rows["flip_vertical"]["auc"] == rows["rot180"]["auc"] == 0.5 and rows["rot180"]["auc_drop"] == 0.5
    assert sum(model.batch_sizes) == 8 * (1 + len(SHIFTS) + len(ORIENTATIONS))
    text = format_robustness(table).splitlines()
    header = text.index("orientation (as a PACS may hold the image; reported beside the shifts, no target)")
    assert [line.split()[0] for line in text[header + 1:]] == list(rows)
    assert all(line.endswith("reported") for line in text[header + 1:])


def test_without_orientations_the_table_has_only_the_shifts(tmp_path):
    table = robustness_table(read_records(bar_folder(tmp_path)), TopHalfModel(), shifts=SHIFTS[:1], batch_size=4)
    assert "orientation" not in table and "orientation" not in format_robustness(table)


def test_the_model_card_shows_the_turned_and_the_photographed_renderings_apart_from_the_scanner_shifts():
    import json

    from fracture_web.config import PROJECT_ROOT
    from fracture_web.evaluation.model_card import render

    model_dir = PROJECT_ROOT / "model"
    metadata, metrics = (json.loads((model_dir / name).read_text()) for name in ("metadata.json", "metrics.json"))
    row = {"auc": 0.9, "auc_drop": 0.027, "sensitivity": 0.8, "specificity": 0.85, "specificity_drop": 0.07,
           "scanner": False}
    robustness = {**metrics["robustness"],
                  "orientation": {"rot90": {**row, "description": "turned a quarter"}},
                  "photographed": {"film": {**row, "description": "a photo of the film", "as_photo": 0.99,
                                            "straightened": 0.98, "meets_target": True},
                                   "film_as_is": {**row, "description": "not straightened", "auc_drop": 0.07}}}
    card = render(metadata, {**metrics, "robustness": robustness})
    assert "| turned a quarter | 0.900 | -0.027 |" in card
    assert "| a photo of the film | 0.900 | -0.027 | 80.0% | 85.0% | -0.070 | 99.0% | 98.0% | met |" in card
    scanner_only = {key: value for key, value in metrics["robustness"].items()
                    if key not in ("orientation", "photographed")}
    assert "| not straightened | 0.900 | -0.070 |" in card and card.count("**missed**") == \
        render(metadata, {**metrics, "robustness": scanner_only}).count("**missed**")  # no verdicts added but "met"

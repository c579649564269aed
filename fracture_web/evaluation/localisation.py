"""Does the model point at the fracture? Its maps and its findings against the radiologists' outlines.

One pass over a labelled folder (:func:`locate_records`) keeps, per image, its probability, the
candidate boxes of :mod:`fracture_web.findings` (in the image's pixels) and, for a fractured image
with outlines, how each spatial output points:

- **maps** (the page's heatmap, and the class activation map where the model has it apart), laid
  over the image exactly as the page lays them: a *hit* is a peak on an outline or within 10% of the
  image's short side of one; the *mass inside* is the share of the map's total inside the outlines;
- **findings**, graded as the app grades them: a finding *hits* an outline when its box overlaps
  the outline's box with IoU >= 0.2 or its centre lies inside the outline's box.

:func:`fit_box_scale` fits the model's box scale on the training split's outlines: the width and
height factors that bring the top boxes that hit to the size of the outlines they hit.

:func:`choose_levels` picks the definite and possible thresholds on validation data, like the
operating points: definite findings rare on non-fractured images and mostly on the fracture on
fractured ones, findings of either level capped per image of each kind. :func:`findings_table`
reports how they land, nested boxes included. numpy and OpenCV.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..datasets import Records
from ..findings import (EXTENT, GROUP, MAX_FINDINGS, MAX_OVERLAP, UNSCALED, Box, BoxScale, FindingLevels, box_iou,
                        candidates, grade, overlap_of_smaller, to_image_box)
from ..imaging import decode_image, to_model_input
from ..outlines import Outlines, mask_in_image
from ..overlay import heatmap_on_image
from ..pixels import InvalidImageError
from .scoring import BatchModel

#: How near an outline a peak may fall, as a share of the image's short side, and still hit.
NEAR = 0.10
#: The spatial outputs scored, where the model has them: what the page shows, and the class
#: activation map (the page's heatmap before the network had a fracture map).
MAPS = ("heatmap", "cam")
#: A finding hits an outline whose box it overlaps by at least this IoU (or holds its centre).
HIT_IOU = 0.2
#: Validation targets the finding thresholds are chosen for: definite findings, and findings of
#: either level, per non-fractured image; findings of either level per outlined fractured image.
MAX_DEFINITE_PER_NORMAL = 0.10
MAX_FINDINGS_PER_NORMAL = 0.50
MAX_FINDINGS_PER_FRACTURED = 1.5
#: Validation target for the definite threshold on fractured images: at least this share of the
#: definite findings hit an outline (precision).
MIN_DEFINITE_PRECISION = 0.80
#: Two findings of one image are nested when this share of the smaller box lies inside the other.
NESTED = 0.9
#: How :func:`fit_box_scale` fits the box scale, in words (metadata.json's ``findings.box_scale_rule``).
BOX_SCALE_RULE = ("fitted on the training split's outlined fractured images: per side, the geometric mean of the "
                  "ratio of the outline's box to the top finding's box, over the images whose top finding hits an outline")
#: Score thresholds of the FROC points reported (over every candidate, before grading).
FROC_SCORES = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
_GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)


@dataclass(frozen=True)
class Located:
    """One scored image: label, probability, candidate findings (image pixels), the outlines'
    boxes (empty when not outlined) and, per map, (peak hit, mass inside) when outlined."""

    label: int
    probability: float
    candidates: list[tuple[float, Box]]
    targets: list[Box] = field(default_factory=list)
    pointing: dict[str, tuple[bool, float]] = field(default_factory=dict)

    @property
    def outlined(self) -> bool:
        return self.label == 1 and bool(self.targets)


@dataclass(frozen=True)
class Scored:
    """One readable record as the model answered it: its label, its pixels' (height, width), the
    model's outputs (batch of one) and, for a fractured record, its outlines."""

    label: int
    shape: tuple[int, int]
    outputs: dict[str, np.ndarray]
    outlines: list | None


def outputs_of_records(records: Records, outlines: Outlines | None, root: Path, model: BatchModel,
                  input_size: int) -> Iterator[Scored]:
    """Each readable record through the model, one at a time (``root``: the folder the outline names
    are relative to). Fractured records without outlines (all of them, without ``outlines``) are
    left out: there is nothing to hit."""
    for path, label in zip(records.paths, records.labels):
        outlined = outlines.of(path, root) if label == 1 and outlines is not None else None
        if label == 1 and outlined is None:
            continue
        try:
            pixels = decode_image(Path(path).read_bytes()).pixels
        except (InvalidImageError, OSError):
            continue
        outputs = model.outputs(to_model_input(pixels, input_size)[np.newaxis])
        yield Scored(int(label), pixels.shape[:2], outputs, outlined[0] if outlined is not None else None)


def locate_records(records: Records, outlines: Outlines | None, root: Path, model: BatchModel,
                   input_size: int, box_scale: BoxScale = UNSCALED, pointing: bool = True) -> list[Located]:
    """Score every readable record once (:func:`outputs_of_records`), its candidates' boxes scaled by
    ``box_scale``; with ``pointing``, how each map points at the outlines of a fractured one."""
    located = []
    for scored in outputs_of_records(records, outlines, root, model, input_size):
        boxes = [(score, to_image_box(box, *scored.shape, input_size))
                 for score, box in candidates(scored.outputs["fracture_map"][0], input_size, box_scale=box_scale)]
        item = Located(scored.label, float(scored.outputs["probability"][0]), boxes)
        if scored.outlines is not None:
            mask = mask_in_image(scored.outlines, *scored.shape)
            points = {key: score_map(heatmap_on_image(scored.outputs[key][0], scored.shape, input_size), mask)
                      for key in MAPS if key in scored.outputs} if pointing else {}
            item = Located(item.label, item.probability, boxes, [bounds(p) for p in scored.outlines], points)
        located.append(item)
    return located


def score_map(shown: np.ndarray, mask: np.ndarray) -> tuple[bool, float]:
    """(peak on or near an outline, share of the map's mass inside the outlines) for a map laid
    over the image (same shape as ``mask``)."""
    peak = np.unravel_index(int(np.argmax(shown)), shown.shape)
    # Distance of every pixel from the nearest outlined pixel.
    distance = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
    hit = bool(distance[peak] <= NEAR * min(mask.shape))
    total = float(shown.sum())
    return hit, float(shown[mask].sum() / total) if total > 0 else 0.0


def hits(box: Box, targets: list[Box]) -> bool:
    """Whether a finding's box hits one of the outlines' boxes (IoU >= 0.2, or its centre inside)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return any(box_iou(box, t) >= HIT_IOU or (t[0] <= cx <= t[2] and t[1] <= cy <= t[3]) for t in targets)


def fit_box_scale(located: list[Located]) -> BoxScale:
    """The (width, height) factors that bring boxes to the outlines' size: over the outlined images
    whose top candidate hits, the geometric mean of the ratio of the hit outline's box (the one it
    overlaps most) to the candidate's, per side; unscaled when no top candidate hits."""
    ratios = []
    for item in located:
        if not (item.outlined and item.candidates and hits(top := item.candidates[0][1], item.targets)):
            continue
        target = max(item.targets, key=lambda t: box_iou(top, t))
        sides = [(target[2] - target[0], top[2] - top[0]), (target[3] - target[1], top[3] - top[1])]
        if all(outline > 0 and box > 0 for outline, box in sides):
            ratios.append([outline / box for outline, box in sides])
    if not ratios:
        return UNSCALED
    width, height = np.exp(np.mean(np.log(ratios), axis=0))
    return float(width), float(height)


def pointing_table(located: list[Located]) -> dict:
    """Per map: outlined images scored, peak hit rate and mean mass inside the outlines."""
    rows = [item.pointing for item in located if item.outlined]
    return {key: {"images": len(rows), "peak_hit_rate": float(np.mean([r[key][0] for r in rows])),
                  "mass_inside": float(np.mean([r[key][1] for r in rows]))}
            for key in MAPS if rows and key in rows[0]}


def graded(item: Located, levels: FindingLevels, threshold: float) -> list[tuple[float, Box, str]]:
    """The image's findings as the app grades them at the operating point's ``threshold``."""
    return grade(item.candidates, item.probability, item.probability >= threshold, levels)


def choose_levels(located: list[Located], threshold: float, min_probability: float) -> FindingLevels:
    """The finding thresholds at the operating point's ``threshold``: the lowest definite one with at
    most ``MAX_DEFINITE_PER_NORMAL`` definite findings per non-fractured image *and* at least
    ``MIN_DEFINITE_PRECISION`` of the definite findings on outlined fractured images on an outline
    (none at all counts as met); then the lowest possible one (at most the definite one) with at most
    ``MAX_FINDINGS_PER_NORMAL`` findings of either level per non-fractured image and at most
    ``MAX_FINDINGS_PER_FRACTURED`` per outlined fractured image."""
    normals = [item for item in located if item.label == 0]
    fractured = [item for item in located if item.outlined]

    def per_image(items: list[Located], levels: FindingLevels, level: str | None) -> float:
        counts = [sum(level in (None, lvl) for *_, lvl in graded(item, levels, threshold)) for item in items]
        return float(np.mean(counts)) if counts else 0.0

    def definite_ok(t: float) -> bool:
        levels = FindingLevels(t, t, min_probability)
        hit, total = level_hits(fractured, levels, threshold, "definite")
        return (per_image(normals, levels, "definite") <= MAX_DEFINITE_PER_NORMAL
                and hit >= MIN_DEFINITE_PRECISION * total)

    def possible_ok(levels: FindingLevels) -> bool:
        return (per_image(normals, levels, None) <= MAX_FINDINGS_PER_NORMAL
                and per_image(fractured, levels, None) <= MAX_FINDINGS_PER_FRACTURED)

    definite = next((t for t in _GRID if definite_ok(t)), float(_GRID[-1]))
    possible = next((t for t in _GRID if t <= definite and possible_ok(FindingLevels(definite, t, min_probability))),
                    definite)
    return FindingLevels(float(definite), float(possible), min_probability)


def levels_rule(operating_point: str) -> str:
    """How :func:`choose_levels` chose the thresholds, in words (metadata.json's ``findings.rule``)."""
    return (f"chosen on the validation split at the {operating_point} operating point: the lowest definite score "
            f"giving at most {MAX_DEFINITE_PER_NORMAL} definite findings per non-fractured image with at least "
            f"{MIN_DEFINITE_PRECISION:.0%} of the definite findings on fractured images on an outline, and the lowest "
            f"possible score giving at most {MAX_FINDINGS_PER_NORMAL} findings of either level per non-fractured "
            f"image and {MAX_FINDINGS_PER_FRACTURED} per fractured image")


def level_hits(fractured: list[Located], levels: FindingLevels, threshold: float, level: str) -> tuple[int, int]:
    """How many of the findings of ``level`` on the outlined ``fractured`` images hit an outline, and
    how many there are."""
    shown = [(box, item.targets) for item in fractured
             for _, box, lvl in graded(item, levels, threshold) if lvl == level]
    return sum(hits(box, targets) for box, targets in shown), len(shown)


def nested(boxes: list[Box]) -> bool:
    """Whether one of ``boxes`` lies (by ``NESTED`` of its area) inside another."""
    return any(overlap_of_smaller(a, b) >= NESTED for i, a in enumerate(boxes) for b in boxes[i + 1:])


def findings_table(located: list[Located], levels: FindingLevels, threshold: float,
                   box_scale: BoxScale = UNSCALED) -> dict:
    """How the graded findings land: per outlined fractured image, whether any (the top, a definite)
    finding hits and how many findings it has; per finding level, the share on fractured images that
    hit (precision); per non-fractured image, how many findings of each level; how many images show
    one box inside another; the decoding's settings (``box_scale``: the one ``located`` was decoded
    with); and FROC points."""
    fractured = [item for item in located if item.outlined]
    normals = [item for item in located if item.label == 0]
    found = [[(hits(box, item.targets), level) for _, box, level in graded(item, levels, threshold)]
             for item in fractured]
    per_normal = [[level for *_, level in graded(item, levels, threshold)] for item in normals]
    precision = {}
    for level in ("definite", "possible"):
        hit, total = level_hits(fractured, levels, threshold, level)
        precision |= {f"{level}_findings": total, f"{level}_hits": hit,
                      f"{level}_precision": hit / total if total else float("nan")}
    return {
        "levels": {"definite": levels.definite, "possible": levels.possible,
                   "min_probability": levels.min_probability, "threshold": threshold},
        "decoding": {"group": GROUP, "extent": EXTENT, "box_scale": list(box_scale), "max_overlap": MAX_OVERLAP,
                     "max_findings": MAX_FINDINGS},
        "fractured_images": len(fractured), "normal_images": len(normals),
        "finding_hit_rate": _mean([any(hit for hit, _ in f) for f in found]),
        "top_finding_hit_rate": _mean([bool(f) and f[0][0] for f in found]),
        "definite_hit_rate": _mean([any(hit and lvl == "definite" for hit, lvl in f) for f in found]),
        **precision,
        "findings_per_fractured_image": _mean([len(f) for f in found]),
        "definite_per_normal_image": _mean([lv.count("definite") for lv in per_normal]),
        "possible_per_normal_image": _mean([lv.count("possible") for lv in per_normal]),
        "images_with_nested_boxes": sum(nested([box for _, box, _ in graded(item, levels, threshold)])
                                        for item in located),
        "froc": froc_points(located),
    }


def froc_points(located: list[Located], scores: tuple[float, ...] = FROC_SCORES) -> list[dict]:
    """For each score threshold over the ungraded candidates: the share of outlined fractures hit
    (lesion sensitivity) and the false candidates per image (those hitting no outline)."""
    scored = [item for item in located if item.outlined or item.label == 0]
    points = []
    for score in scores:
        hit_lesions = lesions = false = 0
        for item in scored:
            kept = [box for s, box in item.candidates if s >= score]
            lesions += len(item.targets)
            hit_lesions += sum(any(hits(box, [t]) for box in kept) for t in item.targets)
            false += sum(not hits(box, item.targets) for box in kept)
        points.append({"score": score, "sensitivity": hit_lesions / lesions if lesions else float("nan"),
                       "false_per_image": false / len(scored) if scored else float("nan")})
    return points


def bounds(polygon: np.ndarray) -> Box:
    """The (x0, y0, x1, y1) box around an outline."""
    return (float(polygon[:, 0].min()), float(polygon[:, 1].min()),
            float(polygon[:, 0].max()), float(polygon[:, 1].max()))


def _mean(values: list) -> float:
    return float(np.mean(values)) if values else float("nan")


def format_findings(table: dict) -> str:
    """The findings table for a person: hit rates, precision per level, findings per image, nested
    boxes, false findings per normal image, FROC points."""
    levels = table["levels"]
    lines = [f"Findings (definite >= {levels['definite']:.2f}, possible >= {levels['possible']:.2f}):",
             f"  fractured images with a finding on an outline: {table['finding_hit_rate']:.1%} of "
             f"{table['fractured_images']}; top finding: {table['top_finding_hit_rate']:.1%}; "
             f"a definite one: {table['definite_hit_rate']:.1%}",
             f"  on fractured images, findings on an outline: definite {table['definite_precision']:.1%} "
             f"({table['definite_hits']} of {table['definite_findings']}), possible {table['possible_precision']:.1%} "
             f"({table['possible_hits']} of {table['possible_findings']}); "
             f"{table['findings_per_fractured_image']:.2f} findings per fractured image",
             f"  per non-fractured image ({table['normal_images']}): {table['definite_per_normal_image']:.3f} definite, "
             f"{table['possible_per_normal_image']:.3f} possible",
             f"  images with one box inside another: {table['images_with_nested_boxes']}",
             "  FROC (score: outlines hit, false boxes per image): "
             + "; ".join(f"{p['score']:.1f}: {p['sensitivity']:.1%}, {p['false_per_image']:.2f}"
                         for p in table["froc"])]
    return "\n".join(lines)

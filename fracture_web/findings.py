"""Fracture map -> findings: boxes in the image's own pixels, each scored and graded.

The network's fracture map gives, per cell of the square model input (8 or 16 pixels a side), the
probability that a fracture lies in that cell (trained on the radiologists' outlines). Decoding it is the one
post-processing step of localisation, shared by the page, the API, the command line, the DICOM
results and the evaluation:

1. the map is upsampled (bicubic) to a stride of 4 input pixels, so peaks fall between cells;
2. each local maximum (over a 7x7 window of the fine map) is a candidate, scored by its value;
3. one candidate per fracture region: a peak inside a stronger peak's *group* (the connected region
   around it where the map stays above half that peak) belongs to that peak and gives no box;
4. a candidate's box is the connected region around its peak where the map stays above ``EXTENT``
   of the peak, scaled about its centre by the model's *box scale* (``metadata.json``,
   ``findings.box_scale``: the map's regions are wider than the fractures radiologists outline, so
   training fits the width and height factors that bring its boxes to the outlines' size);
5. suppression keeps the highest of boxes that overlap by ``MAX_OVERLAP`` of the *smaller* box (so
   no box is ever kept inside another, at whatever level of the same peak), at most three;
6. boxes are mapped back through the letterbox into the uploaded image's pixels.

Each candidate is then graded with the thresholds chosen on validation data (``metadata.json``,
``findings``) so that verdict and findings agree:

- ``definite``: score >= the definite threshold *and* the verdict is "fractured";
- ``possible``: any other candidate with score >= the possible threshold, shown only when the
  image's probability reaches the most sensitive operating point's threshold;
- a "fractured" verdict always has at least one finding: when no candidate reaches the possible
  threshold, the strongest one is shown as ``possible``;
- a "not fractured" verdict never has a definite finding.

Pure numpy and OpenCV; no Flask, no TensorFlow.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from .imaging import letterbox_geometry

#: Input pixels per cell of the upsampled map that peaks and boxes are read from.
FINE_STRIDE = 4
#: Side of the window (in fine cells) a peak must be the maximum of.
PEAK_WINDOW = 7
#: A peak's group: the connected region around it where the map is at least this share of the peak.
#: Weaker peaks inside it are the same fracture region and give no box of their own.
GROUP = 0.5
#: A box covers the connected region around its peak where the map is at least this share of it:
#: of the extents tried, the one whose top box best fits the outlines' boxes on the validation split
#: (``python -m bench.findings_on_validation --extents ...``).
EXTENT = 0.7
#: A box overlapping a higher-scored one by at least this share of the smaller box's area is dropped.
MAX_OVERLAP = 0.3
#: At most this many findings per image.
MAX_FINDINGS = 3
LEVELS = ("definite", "possible")

Box = tuple[float, float, float, float]  # x0, y0, x1, y1
#: A box's (width, height) factors; a model whose metadata has none keeps its regions as they are.
BoxScale = tuple[float, float]
UNSCALED: BoxScale = (1.0, 1.0)


class FindingLevelsError(ValueError):
    """The model's metadata lacks usable finding thresholds."""


@dataclass(frozen=True)
class Finding:
    """One suspected fracture: a box (x0, y0, x1, y1) in the image's pixels, its score (the
    fracture map's peak probability in it) and its level (``definite`` or ``possible``)."""

    box: Box
    score: float
    level: str

    def as_dict(self) -> dict:
        """As the API reports it: box in pixels (1 decimal), score (4 decimals), level."""
        return {"box": [round(v, 1) for v in self.box], "score": round(self.score, 4), "level": self.level}


@dataclass(frozen=True)
class FindingLevels:
    """The score thresholds of the two levels, and the image probability below which no
    ``possible`` finding is shown (the most sensitive operating point's threshold)."""

    definite: float
    possible: float
    min_probability: float

    @classmethod
    def from_metadata(cls, metadata: dict, thresholds: dict[str, float]) -> FindingLevels:
        """Read ``metadata["findings"]``; ``min_probability`` is the lowest operating point's threshold."""
        try:
            levels = metadata["findings"]
            definite, possible = float(levels["definite"]), float(levels["possible"])
        except (KeyError, TypeError, ValueError) as err:
            raise FindingLevelsError(f"'findings' thresholds ({err})") from err
        if not 0.0 <= possible <= definite <= 1.0:
            raise FindingLevelsError(f"'findings' thresholds must satisfy 0 <= possible <= definite <= 1, "
                                     f"not {possible} and {definite}")
        return cls(definite, possible, min(thresholds.values()))


def box_scale_from_metadata(metadata: dict) -> BoxScale:
    """``metadata["findings"]["box_scale"]`` as (width, height) factors; unscaled where absent."""
    value = metadata.get("findings", {}).get("box_scale")
    if value is None:
        return UNSCALED
    try:
        width, height = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise FindingLevelsError(f"'findings' box_scale must be two numbers, not {value!r}") from err
    if not (0.0 < width <= 10.0 and 0.0 < height <= 10.0):
        raise FindingLevelsError(f"'findings' box_scale must be two factors in (0, 10], not {value!r}")
    return width, height


def candidates(fracture_map: np.ndarray, input_size: int, extent: float = EXTENT,
               box_scale: BoxScale = UNSCALED) -> list[tuple[float, Box]]:
    """Scored boxes over the model input (pixels of the square input), highest first, after
    suppression; ``extent`` is the share of its peak a box's region stays above, and each region's
    box is scaled about its centre by ``box_scale`` before suppression."""
    fine = fine_map(fracture_map, input_size)
    regions = _peak_regions(fine, input_size / fine.shape[0], extent)
    return suppress((score, scaled_box(box, box_scale)) for score, box in regions)


def fine_map(fracture_map: np.ndarray, input_size: int) -> np.ndarray:
    """The map upsampled (bicubic) to one cell per ``FINE_STRIDE`` input pixels, clipped to [0, 1]:
    what peaks and boxes are read from."""
    side = max(1, input_size // FINE_STRIDE)
    fine = cv2.resize(np.asarray(fracture_map, np.float32), (side, side), interpolation=cv2.INTER_CUBIC)
    return np.clip(fine, 0.0, 1.0)


def scaled_box(box: Box, scale: BoxScale) -> Box:
    """``box`` scaled about its centre by (width, height) factors."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half_width, half_height = (box[2] - box[0]) / 2 * scale[0], (box[3] - box[1]) / 2 * scale[1]
    return cx - half_width, cy - half_height, cx + half_width, cy + half_height


def _peak_regions(fine: np.ndarray, scale: float, extent: float) -> Iterator[tuple[float, Box]]:
    """Each group's peak score and box (``scale`` input pixels per cell), strongest first, made only
    as they are asked for: suppression stops after a few, however many peaks a flat map has."""
    is_peak = (fine >= cv2.dilate(fine, np.ones((PEAK_WINDOW, PEAK_WINDOW), np.uint8))) & (fine > 0)
    ys, xs = np.nonzero(is_peak)
    order = np.argsort(-fine[ys, xs], kind="stable")
    grouped = np.zeros(fine.shape, bool)  # a peak inside a stronger peak's group belongs to it
    for y, x in zip(ys[order], xs[order]):
        if grouped[y, x]:
            continue
        peak = fine[y, x]
        grouped |= _region(fine >= GROUP * peak, y, x)
        rows, cols = np.nonzero(_region(fine >= extent * peak, y, x))
        yield float(peak), (cols.min() * scale, rows.min() * scale, (cols.max() + 1) * scale, (rows.max() + 1) * scale)


def _region(above: np.ndarray, y: int, x: int) -> np.ndarray:
    """The 8-connected part of the mask ``above`` that holds (y, x)."""
    _, labels = cv2.connectedComponents(above.astype(np.uint8), connectivity=8)
    return labels == labels[y, x]


def suppress(scored: Iterable[tuple[float, Box]], max_overlap: float = MAX_OVERLAP,
             limit: int = MAX_FINDINGS) -> list[tuple[float, Box]]:
    """The first boxes of ``scored`` (highest score first) that overlap no box kept before them by
    ``max_overlap`` of the smaller box or more (so none lies inside another), at most ``limit``;
    reads no further than it needs."""
    kept: list[tuple[float, Box]] = []
    for score, box in scored:
        if all(overlap_of_smaller(box, other) < max_overlap for _, other in kept):
            kept.append((score, box))
            if len(kept) == limit:
                break
    return kept


def _area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _intersection(a: Box, b: Box) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes; 0 when either is empty."""
    overlap = _intersection(a, b)
    union = _area(a) + _area(b) - overlap
    return overlap / union if union > 0 else 0.0


def overlap_of_smaller(a: Box, b: Box) -> float:
    """The share of the smaller box's area that lies inside the other (1 when one holds the other);
    0 when either is empty."""
    smaller = min(_area(a), _area(b))
    return _intersection(a, b) / smaller if smaller > 0 else 0.0


def to_image_box(box: Box, height: int, width: int, input_size: int) -> Box:
    """A box over the letterboxed model input -> the same box in the image's pixels, clipped to it."""
    fit = letterbox_geometry(height, width, input_size)
    x0, x1 = ((v - fit.left) / fit.scale for v in (box[0], box[2]))
    y0, y1 = ((v - fit.top) / fit.scale for v in (box[1], box[3]))
    return (float(np.clip(x0, 0, width)), float(np.clip(y0, 0, height)),
            float(np.clip(x1, 0, width)), float(np.clip(y1, 0, height)))


def grade(scored: list[tuple[float, Box]], probability: float, fractured: bool,
          levels: FindingLevels) -> list[tuple[float, Box, str]]:
    """Each candidate's level by the rules in the module docstring; candidates without one are dropped."""
    graded = []
    for score, box in scored:
        if fractured and score >= levels.definite:
            graded.append((score, box, "definite"))
        elif score >= levels.possible and probability >= levels.min_probability:
            graded.append((score, box, "possible"))
    if fractured and not graded and scored:
        graded.append((scored[0][0], scored[0][1], "possible"))
    return graded


def locate(fracture_map: np.ndarray, image_shape: tuple[int, int], input_size: int, probability: float,
           fractured: bool, levels: FindingLevels, box_scale: BoxScale = UNSCALED) -> tuple[Finding, ...]:
    """The findings of one image, highest score first, with boxes in the image's pixels."""
    graded = grade(candidates(fracture_map, input_size, box_scale=box_scale), probability, fractured, levels)
    return tuple(Finding(to_image_box(box, *image_shape[:2], input_size), score, level)
                 for score, box, level in graded)

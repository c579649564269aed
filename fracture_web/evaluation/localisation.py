"""Does the map point at the fracture? Scored against the radiologists' outlines, as a reader sees it.

For every fractured image with an outline, each spatial output of the model (the page's heatmap,
and the class activation map where the model has it apart) is laid over the image exactly as the
page lays it (``overlay.heatmap_on_image``). A *hit* is a map whose peak falls on an outline or
within 10% of the image's short side of one; the *mass inside* is the share of the map's total
inside the outlines. numpy and OpenCV.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..datasets import Records
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


def localisation_table(records: Records, outlines: Outlines, root: Path, model: BatchModel,
                       input_size: int) -> dict:
    """Per spatial output: images scored, peak hit rate and mean mass inside the outlines, over the
    fractured records that have outlines (``root``: the folder the outline names are relative to)."""
    hits: dict[str, list[bool]] = {}
    mass: dict[str, list[float]] = {}
    for path, label in zip(records.paths, records.labels):
        outlined = outlines.of(path, root) if label == 1 else None
        if outlined is None:
            continue
        try:
            pixels = decode_image(Path(path).read_bytes()).pixels
        except (InvalidImageError, OSError):
            continue
        outputs = model.outputs(to_model_input(pixels, input_size)[np.newaxis])
        mask = mask_in_image(outlined[0], *pixels.shape)
        for key in MAPS:
            if key in outputs:
                shown = heatmap_on_image(outputs[key][0], pixels.shape, input_size)
                hit, inside = score_map(shown, mask)
                hits.setdefault(key, []).append(hit)
                mass.setdefault(key, []).append(inside)
    return {key: {"images": len(hits[key]), "peak_hit_rate": float(np.mean(hits[key])),
                  "mass_inside": float(np.mean(mass[key]))} for key in hits}


def score_map(shown: np.ndarray, mask: np.ndarray) -> tuple[bool, float]:
    """(peak on or near an outline, share of the map's mass inside the outlines) for a map laid
    over the image (same shape as ``mask``)."""
    peak = np.unravel_index(int(np.argmax(shown)), shown.shape)
    # Distance of every pixel from the nearest outlined pixel.
    distance = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
    hit = bool(distance[peak] <= NEAR * min(mask.shape))
    total = float(shown.sum())
    return hit, float(shown[mask].sum() / total) if total > 0 else 0.0

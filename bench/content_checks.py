"""How far real radiographs sit from the thresholds that refuse noise and nearly blank images
(``fracture_web.pixels.check_content``) and warn of blur: its measures on every FracAtlas image and
full-size original, on a sample of them under each robustness shift and phone rendering, and,
for the blur warning, on the same sample blurred by 1% of its short side (where the model's
sensitivity falls), with the lowest (or, blurred, the highest) of each.

    python -m bench.content_checks [--data-dir ../shared/data/fracatlas] [--every 20] [--out FILE]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from bench.report import emit
from fracture_web.config import PROJECT_ROOT
from fracture_web.imaging import decode_image
from fracture_web.pixels import (MIN_NEIGHBOUR_CORRELATION, MIN_SHARPNESS, MIN_SPREAD, Content, InvalidImageError,
                                 content_measures)
from fracture_web.shifts import PHOTO_SHIFTS, SHIFTS

DATA = PROJECT_ROOT.parent / "shared" / "data" / "fracatlas"
#: The blur the warning is for: a Gaussian of this share of the image's short side.
BLUR = 0.01


def lowest(measures: list[Content]) -> dict[str, float]:
    return {"images": len(measures), "lowest_spread": min(m.spread for m in measures),
            "lowest_correlation": min(m.correlation for m in measures),
            "lowest_sharpness": min(m.sharpness for m in measures),
            "sharpness_0.5th_percentile": float(np.percentile([m.sharpness for m in measures], 0.5))}


def blurred(pixels: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(pixels, (0, 0), BLUR * min(pixels.shape))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--every", type=int, default=20, help="shift every Nth image")
    parser.add_argument("--out", type=Path, help="also write the report as JSON")
    args = parser.parse_args(argv)
    paths = sorted((args.data_dir / "images").rglob("*.jpg")) + sorted((args.data_dir.parent / "fracatlas-fullres" / "images").rglob("*.jpg"))
    decoded, refused = [], 0
    for path in paths:
        try:
            decoded.append(decode_image(path.read_bytes(), 1024).pixels)
        except InvalidImageError:
            refused += 1
    rng = np.random.default_rng(0)
    sample = decoded[::args.every]
    sharpness = [content_measures(blurred(p)).sharpness for p in sample]
    report = {"thresholds": {"spread": MIN_SPREAD, "correlation": MIN_NEIGHBOUR_CORRELATION, "sharpness": MIN_SHARPNESS},
              "refused_when_decoded": refused, "as_decoded": lowest([content_measures(p) for p in decoded]),
              "shifted": {shift.name: lowest([content_measures(np.asarray(shift.apply(p, rng), np.float32))
                                              for p in sample]) for shift in SHIFTS + PHOTO_SHIFTS},
              "blurred": {"sigma_share_of_short_side": BLUR, "images": len(sample), "highest_sharpness": max(sharpness),
                          "warned": float(np.mean(np.array(sharpness) < MIN_SHARPNESS))}}
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How far real radiographs sit from the thresholds that refuse noise and nearly blank images
(``fracture_web.pixels.check_content``): its two measures on every FracAtlas image and full-size
original, and on a sample of them under each robustness shift and phone rendering, with the
lowest of each.

    python -m bench.content_checks [--data-dir ../shared/data/fracatlas] [--every 20]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fracture_web.config import PROJECT_ROOT
from fracture_web.imaging import decode_image
from fracture_web.pixels import MIN_NEIGHBOUR_CORRELATION, MIN_SPREAD, InvalidImageError, content_measures
from fracture_web.shifts import PHOTO_SHIFTS, SHIFTS

DATA = PROJECT_ROOT.parent / "shared" / "data" / "fracatlas"


def lowest(measures: list[tuple[float, float]]) -> dict[str, float]:
    spreads, correlations = zip(*measures)
    return {"images": len(measures), "lowest_spread": min(spreads), "lowest_correlation": min(correlations)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--every", type=int, default=20, help="shift every Nth image")
    args = parser.parse_args(argv)
    paths = sorted((args.data_dir / "images").rglob("*.jpg")) + sorted((args.data_dir.parent / "fracatlas-fullres" / "images").rglob("*.jpg"))
    decoded, refused = [], 0
    for path in paths:
        try:
            decoded.append(decode_image(path.read_bytes(), 1024).pixels)
        except InvalidImageError:
            refused += 1
    rng = np.random.default_rng(0)
    report = {"thresholds": {"spread": MIN_SPREAD, "correlation": MIN_NEIGHBOUR_CORRELATION},
              "refused_when_decoded": refused, "as_decoded": lowest([content_measures(p) for p in decoded]),
              "shifted": {shift.name: lowest([content_measures(np.asarray(shift.apply(p, rng), np.float32))
                                              for p in decoded[::args.every]]) for shift in SHIFTS + PHOTO_SHIFTS}}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does the JPEG decode that checks for damage (``jpeg_stream.decode``: libjpeg-turbo through
simplejpeg, warnings as errors) give OpenCV's pixels, the decoder the rest of the app uses?

    python -m bench.jpeg_decoders [--dirs DIR ...] [--out benchmarks/jpeg-decoders.json]

Every JPEG in the folders, at each of libjpeg's scales (1, 1/2, 1/4, 1/8), grey and, for files
that hold colour, BGR: the count of decodes with identical pixels, of those that differ, and of
files it leaves to OpenCV (an EXIF block, or a libjpeg warning such as a truncated file).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from fracture_web import jpeg_stream
from fracture_web.imaging import GRAY_MODES, REDUCED_COLOUR, REDUCED_GRAY, sniff_format
from fracture_web.pixels import InvalidImageError

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
SCALES = (1, 2, 4, 8)


def opencv(data: bytes, colour: bool, scale: int) -> np.ndarray | None:
    """OpenCV's decode as ``imaging`` asks for it."""
    flags = ((REDUCED_COLOUR if colour else REDUCED_GRAY)[scale] if scale > 1
             else cv2.IMREAD_COLOR if colour else cv2.IMREAD_GRAYSCALE)
    return cv2.imdecode(np.frombuffer(data, np.uint8), flags)


def compare(path: Path, counts: Counter, differing: list[str]) -> None:
    """Count one file's decodes into ``counts``; name it in ``differing`` where pixels differ."""
    data = path.read_bytes()
    try:
        colours = (False,) if sniff_format(data).mode in GRAY_MODES else (False, True)
    except InvalidImageError:
        counts["not read at all"] += 1
        return
    for colour in colours:
        for scale in SCALES:
            try:
                ours = jpeg_stream.decode(data, colour, scale)
            except InvalidImageError:
                counts["refused as damaged"] += 1
                continue
            if ours is None:
                counts["left to OpenCV (EXIF)" if jpeg_stream.has_exif(data) else "left to OpenCV (a libjpeg warning)"] += 1
                continue
            theirs = opencv(data, colour, scale)
            same = theirs is not None and theirs.shape == ours.shape and bool((theirs == ours).all())
            counts["identical" if same else "different"] += 1
            if not same:
                differing.append(f"{path.name} scale 1/{scale} {'colour' if colour else 'grey'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dirs", type=Path, nargs="+",
                        default=[SHARED / "fracatlas" / "images", SHARED / "fracatlas-fullres" / "images"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "jpeg-decoders.json")
    args = parser.parse_args(argv)
    counts: Counter = Counter()
    differing: list[str] = []
    files = sorted(p for folder in args.dirs for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    for path in files:
        compare(path, counts, differing)
    report = {"files": len(files), "scales": list(SCALES), "decodes": dict(counts), "differing": differing[:50]}
    print(json.dumps(report, indent=2))
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())

"""How much the shipped model's probability moves when an upload is decoded at the size the app
needs (``analyse``: halved while the long side keeps twice the display size) instead of at full
size (as training and evaluation decode it): the largest |change| over a labelled split and over
the FracAtlas originals, each as stored and, with --formats, as the other formats made from it.

    python -m bench.decode_parity [--data-dir ../shared/data/fracatlas] [--split val]
        [--full-size-dir ../shared/data/fracatlas-fullres] [--formats stored png16 dicom jpeg2000]
        [--limit N] [--model model/] [--out parity.json]

Prints one line per (set, format): images, how many were decoded smaller at all, the largest and
the mean |change of probability|, the image with the largest, and how many verdicts flip at the
model's default operating point. Images the app decodes at full size anyway (every one of the
512-px FracAtlas copies) need no model call: their inputs are identical.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from pydicom.uid import JPEG2000Lossless

from bench.dx_files import dicom_file  # the DX file the full-size benchmark uploads
from fracture_web.config import defaults
from fracture_web.datasets import read_records
from fracture_web.imaging import decode_image, to_model_input
from fracture_web.inference import FractureModel
from fracture_web.pixels import InvalidImageError

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"


def _dicom(gray: np.ndarray) -> bytes:
    """12 bits in 16, MONOCHROME1, windowed over the full range: a CR plate's way."""
    return dicom_file(4095 - gray.astype(np.uint16) * 16, "MONOCHROME1", 12, PresentationLUTShape="INVERSE",
                      WindowCenter=2048, WindowWidth=4096)


#: Each format made from the stored file's 8-bit pixels ("stored" is the file itself).
FORMATS: dict[str, Callable[[np.ndarray], bytes]] = {
    "png16": lambda gray: cv2.imencode(".png", gray.astype(np.uint16) * 257)[1].tobytes(),
    "dicom": _dicom,
    "jpeg2000": lambda gray: dicom_file(gray.astype(np.uint16) * 16, "MONOCHROME2", 12, JPEG2000Lossless),
}


def upload(path: Path, fmt: str) -> bytes | None:
    """The file as stored, or its pixels written in ``fmt`` (None when OpenCV cannot read them)."""
    data = path.read_bytes()
    if fmt == "stored":
        return data
    gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    return None if gray is None else FORMATS[fmt](gray)


def probability_change(model: FractureModel, data: bytes, long_side: int) -> tuple[float, float, bool] | None:
    """(full-size probability, reduced-size probability, decoded smaller at all); None for a file
    the app refuses either way."""
    try:
        full, reduced = decode_image(data), decode_image(data, long_side)
    except InvalidImageError:
        return None
    inputs = [to_model_input(decoded.pixels, model.input_size) for decoded in (full, reduced)]
    if reduced.pixels.shape == full.pixels.shape and np.array_equal(*inputs):
        return 0.0, 0.0, False  # decoded at full size anyway: the same input, the same probability
    full_p, reduced_p = model.outputs(np.stack(inputs))["probability"]
    return float(full_p), float(reduced_p), True


def parity(model: FractureModel, paths: list[Path], fmt: str, long_side: int) -> dict:
    """The largest and mean |change| over ``paths`` in one format, and the verdicts that flip."""
    threshold = model.thresholds[model.default_operating_point]
    changes, worst, flips, reduced, refused = [], ("", 0.0), 0, 0, 0
    for path in paths:
        data = upload(path, fmt)
        result = None if data is None else probability_change(model, data, long_side)
        if result is None:
            refused += 1
            continue
        full_p, reduced_p, smaller = result
        changes.append(abs(reduced_p - full_p))
        reduced += smaller
        flips += (full_p >= threshold) != (reduced_p >= threshold)
        if changes[-1] > worst[1]:
            worst = (path.name, changes[-1])
    return {"images": len(changes), "refused": refused, "decoded_smaller": reduced,
            "max_abs_change": max(changes, default=0.0), "mean_abs_change": float(np.mean(changes or [0.0])),
            "worst": worst[0], "verdict_flips": flips, "threshold": threshold}


def image_sets(args: argparse.Namespace) -> dict[str, list[Path]]:
    """The labelled split and the originals that are on this machine, each cut to ``--limit``."""
    sets = {}
    if args.data_dir.is_dir():
        sets[f"{args.data_dir.name} {args.split}"] = read_records(args.data_dir).in_split(args.split).paths
    originals = args.full_size_dir / "images"
    if originals.is_dir():
        sets[f"{args.full_size_dir.name}"] = sorted(originals.glob("*.jpg"))
    return {name: paths[:args.limit] for name, paths in sets.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=SHARED / "fracatlas", help="labelled folder (labels.csv)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--full-size-dir", type=Path, default=SHARED / "fracatlas-fullres")
    parser.add_argument("--formats", nargs="+", default=["stored"], choices=["stored", *FORMATS])
    parser.add_argument("--limit", type=int, default=None, help="at most this many images per set")
    parser.add_argument("--model", type=Path, default=ROOT / "model")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    model = FractureModel(args.model)
    long_side = max(model.input_size, defaults()["DISPLAY_MAX_SIDE"])  # what analyse() asks for
    results = {}
    for name, paths in image_sets(args).items():
        for fmt in args.formats:
            r = results[f"{name} / {fmt}"] = parity(model, paths, fmt, long_side)
            print(f"{name} / {fmt}: {r['images']} images ({r['decoded_smaller']} decoded smaller, {r['refused']} "
                  f"refused): max |change| {r['max_abs_change']:.4f} ({r['worst'] or '-'}), mean "
                  f"{r['mean_abs_change']:.4f}, verdicts flipped {r['verdict_flips']}", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"model": str(args.model), "long_side": long_side, "results": results},
                                       indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Convert the shipped SavedModel to TensorFlow Lite for LiteRT, and check the files against it.

    python scripts/export_tflite.py [--model model/] [--variants float32 float16] \
        [--data-dir ../shared/data/fracatlas --split val] [--out model/tflite_parity.json]

Writes model_<variant>.tflite into the model folder (float32; float16 weights; or dynamic-range
int8 weights), each with the probability, heatmap and atypicality outputs. With --data-dir, runs
every image of the split through the SavedModel and each file (the app's own preprocessing) and
reports the largest output differences and each AUC; exits 1 when float32 differs from the
SavedModel by more than 1e-3 in probability.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from fracture_web.config import defaults
from fracture_web.datasets import DatasetError, read_records
from fracture_web.evaluation.parity import check_parity
from fracture_web.training.tflite import VARIANTS, convert, tflite_name

#: How far the float32 file's probabilities may be from the SavedModel's.
FLOAT32_TOLERANCE = 1e-3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path(defaults()["MODEL_DIR"]), help="model directory")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=["float32", "float16"])
    parser.add_argument("--data-dir", type=Path, help="labelled folder for the parity check")
    parser.add_argument("--split", help="only rows of labels.csv whose split column is this (e.g. val)")
    parser.add_argument("--out", type=Path, help="write the parity report as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    for variant in args.variants:
        path = args.model / tflite_name(variant)
        path.write_bytes(convert(args.model, variant))
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if not args.data_dir:
        return 0
    try:
        records = read_records(args.data_dir, args.split)
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = check_parity(args.model, records, {variant: tflite_name(variant) for variant in args.variants})
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    float32 = report["variants"].get("float32")
    return 1 if float32 and float32["max_probability_diff"] > FLOAT32_TOLERANCE else 0


if __name__ == "__main__":
    sys.exit(main())

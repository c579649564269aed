"""Convert the shipped SavedModel to TensorFlow Lite for LiteRT, and check the files against it.

    fracture-export-tflite [--model model/] [--variants float32 float16] \
        [--data-dir ../shared/data/fracatlas --split val]
    (from a checkout: python scripts/export_tflite.py, the same arguments)

Writes model_<variant>.tflite into the model folder (float32; float16 weights; or dynamic-range
int8 weights), each with every output of the SavedModel. Training's export already does this for
float32 and float16; run it to re-export or for another variant. With --data-dir, runs every image
of the split through the SavedModel and each file (the app's own preprocessing) and writes the
largest output differences, each AUC and each file's SHA-256 to tflite_parity.json beside them:
the report the default ``auto`` backend checks before it serves a file. Exits 1 when float32
differs from the SavedModel by more than 1e-3 in probability.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from fracture_web.cli.model_folder import model_folder_problem
from fracture_web.config import defaults
from fracture_web.datasets import DatasetError, read_records
from fracture_web.runtimes import PARITY_FILE, PARITY_TOLERANCE
from fracture_web.training.tflite import VARIANTS, export_tflite, tflite_name


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path(defaults()["MODEL_DIR"]), help="model directory")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=["float32", "float16"])
    parser.add_argument("--data-dir", type=Path, help="labelled folder for the parity check")
    parser.add_argument("--split", help="only rows of labels.csv whose split column is this (e.g. val)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if problem := model_folder_problem(args.model, saved_model=True):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        records = read_records(args.data_dir, args.split) if args.data_dir else None
        report = export_tflite(args.model, args.variants, records)
    except (DatasetError, OSError) as err:  # OSError: a SavedModel TensorFlow cannot read, a full disk
        print(f"error: {err}", file=sys.stderr)
        return 2
    for variant in args.variants:
        path = args.model / tflite_name(variant)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if report is None:
        return 0
    print(json.dumps(report, indent=2))
    print(f"wrote {args.model / PARITY_FILE}")
    float32 = report["variants"].get("float32")
    return 1 if float32 and float32["max_probability_diff"] > PARITY_TOLERANCE else 0


if __name__ == "__main__":
    sys.exit(main())

"""Convert the shipped SavedModel to TensorFlow Lite for LiteRT, and check the files against it.

    fracture-export-tflite [--model model/] [--variants float32 float16 int8] \
        [--data-dir ../shared/data/fracatlas [--split val]]
    (from a checkout: python scripts/export_tflite.py, the same arguments)

Writes model_<variant>.tflite into the model folder (float32; float16 weights; int8 weights and
activations, calibrated on the model's training split of --data-dir), each with every output of
the SavedModel. Training's export already does all three; run it to re-export. With --data-dir,
runs every image of the model's validation split (or of the rows whose split column is --split)
through the SavedModel and each file (the app's own preprocessing) and writes to
tflite_parity.json beside them the largest output differences, each AUC, each file's SHA-256, for
int8 what a reader would see (operating points, in-scope verdicts, findings on the outlines; the
file is removed where they stray) and each file's call timed: the report the default ``auto``
backend checks before it serves a file. Exits 1 when float32 differs from the SavedModel by more
than 1e-3 in probability.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from fracture_web.cli.model_folder import model_folder_problem
from fracture_web.config import defaults
from fracture_web.datasets import DatasetError, Records, read_records
from fracture_web.runtimes import PARITY_FILE, PARITY_TOLERANCE
from fracture_web.training.splits import split_train_val
from fracture_web.training.tflite import VARIANTS, export_tflite, tflite_name


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path(defaults()["MODEL_DIR"]), help="model directory")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--data-dir", type=Path, help="labelled folder for the parity check (and int8's calibration)")
    parser.add_argument("--split", help="check on the rows of labels.csv whose split column is this (e.g. val) "
                                        "instead of the model's validation split")
    return parser.parse_args(argv)


def model_split(model_dir: Path, data_dir: Path, split: str | None) -> tuple[Records, Records]:
    """The model's training and validation records of ``data_dir`` (its recipe's seed), the
    validation records being the ``split`` rows instead where one is named."""
    seed = json.loads((model_dir / "metadata.json").read_text())["training"]["config"]["seed"]
    train, val = split_train_val(read_records(data_dir), seed=seed)
    return train, read_records(data_dir, split) if split else val


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if problem := model_folder_problem(args.model, saved_model=True):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if "int8" in args.variants and args.data_dir is None:
        print("error: an int8 file is calibrated and checked on the data: give --data-dir", file=sys.stderr)
        return 2
    try:
        train, val = model_split(args.model, args.data_dir, args.split) if args.data_dir else (None, None)
        report = export_tflite(args.model, args.variants, val, train, args.data_dir)
    except (DatasetError, OSError) as err:  # OSError: a SavedModel TensorFlow cannot read, a full disk
        print(f"error: {err}", file=sys.stderr)
        return 2
    for variant in args.variants:
        path = args.model / tflite_name(variant)
        if path.is_file():
            print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if report is None:
        return 0
    print(json.dumps(report, indent=2))
    print(f"wrote {args.model / PARITY_FILE}")
    float32 = report["variants"].get("float32")
    return 1 if float32 and float32["max_probability_diff"] > PARITY_TOLERANCE else 0


if __name__ == "__main__":
    sys.exit(main())

"""Export the shipped SavedModel to ONNX for ONNX Runtime, and check the files against it.

    fracture-export-onnx [--model-dir model/] [--data-dir ../shared/data/fracatlas] [--no-int8]
    (from a checkout: python scripts/export_onnx.py, the same arguments)

Writes model.onnx (float32, every output of the SavedModel by name) into the model folder and,
unless --no-int8, model_int8.onnx (dynamic-range int8 weights), kept only
where its validation AUC stays within 0.005 and its findings' hit rate within 0.01 of the
SavedModel's. Runs every validation image through the SavedModel and each file (the app's own
preprocessing), times each runtime's call interleaved on this machine, and writes it all to
onnx_parity.json: the report the ``auto`` and ``onnx`` backends check before serving a file.
A labels.csv without a split column is used whole. Exits 1 when model.onnx differs
from the SavedModel by more than 1e-3 in probability.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from fracture_web.cli.model_folder import model_folder_problem
from fracture_web.config import PROJECT_ROOT, defaults
from fracture_web.datasets import DatasetError, Records, read_records
from fracture_web.runtimes import ONNX_PARITY_FILE, PARITY_TOLERANCE


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=Path(defaults()["MODEL_DIR"]), help="model directory")
    parser.add_argument("--data-dir", type=Path, default=PROJECT_ROOT.parent / "shared" / "data" / "fracatlas",
                        help="labelled folder (labels.csv with a split column, or one folder per class)")
    parser.add_argument("--split", default="val", help="rows checked against the SavedModel (default: %(default)s)")
    parser.add_argument("--no-int8", action="store_true", help="write the float32 file only")
    return parser.parse_args(argv)


def records_in(data_dir: Path, split: str) -> Records:
    """The rows of ``split``, or every row where the labels have no split column."""
    records = read_records(data_dir)
    return records.in_split(split) if "split" in records.columns else records


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if problem := model_folder_problem(args.model_dir, saved_model=True):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        val = records_in(args.data_dir, args.split)
        from fracture_web.onnx_export import export_onnx  # TensorFlow and tf2onnx load only now

        report = export_onnx(args.model_dir, val, args.data_dir, not args.no_int8)
    except (DatasetError, OSError) as err:  # OSError: a SavedModel TensorFlow cannot read, a full disk
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    print(f"wrote {args.model_dir / ONNX_PARITY_FILE}")
    return 1 if report["variants"]["float32"]["max_probability_diff"] > PARITY_TOLERANCE else 0


if __name__ == "__main__":
    sys.exit(main())

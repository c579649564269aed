"""Evaluate the shipped model on a labelled folder: AUC, operating points, calibration.

    python scripts/evaluate.py --data-dir DIR [--model model/] [--out metrics.json] [--plots DIR] [--batch-size 16]

DIR holds labels.csv (path,label[,body_part,hardware,...]) or Fractured/ + Non_fractured/.
Images go through the app's own preprocessing and model. Unreadable files are counted
and listed, not fatal. Exits 2 when the folder or model cannot be used.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from fracture_web.config import defaults
from fracture_web.evaluation import EvaluationError, evaluate, format_table, write_plots
from fracture_web.inference import FractureModel, ModelLoadError
from fracture_web.training.data import DatasetError, read_records
from fracture_web.training.metrics import to_json


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="labelled folder to evaluate on")
    parser.add_argument("--model", type=Path, default=Path(defaults()["MODEL_DIR"]), help="model directory")
    parser.add_argument("--out", type=Path, help="write the metrics as JSON here")
    parser.add_argument("--plots", type=Path, metavar="DIR", help="write roc.png and reliability.png here")
    parser.add_argument("--split", help="score only rows of labels.csv whose split column is this (e.g. val)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per model call (default 16)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        read_records(args.data_dir)  # cheap: refuse an unusable folder before loading TensorFlow
        model = FractureModel(args.model)
        evaluation = evaluate(args.data_dir, model, args.batch_size, args.split)
    except (DatasetError, EvaluationError, ModelLoadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_table(evaluation.report), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(to_json(evaluation.report) + "\n")
    if args.plots:
        write_plots(evaluation, args.plots)
    return 0


if __name__ == "__main__":
    sys.exit(main())

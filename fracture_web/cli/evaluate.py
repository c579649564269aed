"""Evaluate the shipped model on a labelled folder: AUC, operating points, calibration.

    fracture-evaluate --data-dir DIR [--model model/] [--out metrics.json] [--plots DIR] [--batch-size 16]
                      [--split val] [--robustness]
    (from a checkout: python scripts/evaluate.py, the same arguments)

DIR holds labels.csv (path,label[,body_part,hardware,...]) or Fractured/ + Non_fractured/.
Images go through the app's own preprocessing and model. Every file in the class folders is
tried whatever its name (a DICOM named IM0000 too); unreadable files are counted and listed, not
fatal, and hidden files or linked sub-folders left out are named on stderr. Exits 2 when the folder or model cannot be used, or when --plots is
asked for without matplotlib (a development requirement). Needs only the runtime install.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from fracture_web.cli.model_folder import model_folder_problem
from fracture_web.config import for_command_line
from fracture_web.datasets import DatasetError, read_records, skipped_note
from fracture_web.evaluation.diagnostic_accuracy import to_json
from fracture_web.evaluation.localisation import format_findings
from fracture_web.evaluation.plots import PlotsUnavailableError, pyplot, write_plots
from fracture_web.evaluation.report import add_site_tables, evaluate, format_table
from fracture_web.evaluation.robustness import format_robustness
from fracture_web.evaluation.scoring import EvaluationError
from fracture_web.inference import FractureModel, ModelLoadError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="labelled folder to evaluate on")
    parser.add_argument("--model", type=Path, default=Path(for_command_line(parser)["MODEL_DIR"]), help="model directory (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="write the metrics as JSON here")
    parser.add_argument("--plots", type=Path, metavar="DIR", help="write roc.png and reliability.png here")
    parser.add_argument("--split", help="score only rows of labels.csv whose split column is this (e.g. val)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per model call (default 16)")
    parser.add_argument("--robustness", action="store_true",
                        help="also score every image re-rendered under each site shift (about 20x the time)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if problem := out_problem(args.out) or out_problem(args.plots, folder=True):
        parser.error(problem)  # before the scoring (with --robustness, many minutes), not after it
    return args


def out_problem(out: Path | None, folder: bool = False) -> str | None:
    """Why the metrics file (or, with ``folder``, the plots folder) cannot be written there, or None;
    checked before the scoring so the work is not lost at the end. Nothing is made yet."""
    if out is None:
        return None
    if folder and out.exists() and not out.is_dir():
        return f"--plots {out} is a file; give a folder for roc.png and reliability.png"
    if not folder and out.is_dir():
        return f"--out {out} is a folder; give the path of a JSON file, e.g. {out / 'metrics.json'}"
    existing = (out if folder else out.parent).absolute()
    while not existing.exists():  # the folders still to make go in the nearest one that exists
        existing = existing.parent
    if not existing.is_dir():
        return f"{out} cannot be written: {existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{out} cannot be written: no permission to write in {existing}"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        records = read_records(args.data_dir, args.split)  # cheap: refuse an unusable folder before loading TensorFlow
        if note := skipped_note(records.skipped, args.data_dir):
            print(f"note: {note}", file=sys.stderr, flush=True)
        if args.plots:
            pyplot()  # and refuse plots without matplotlib before scoring anything
        if problem := model_folder_problem(args.model):
            raise ModelLoadError(problem)
        model = FractureModel(args.model)
        evaluation = evaluate(args.data_dir, model, args.batch_size, args.split)
        add_site_tables(evaluation, model, args.data_dir, args.robustness, args.batch_size)
    except (DatasetError, EvaluationError, ModelLoadError, PlotsUnavailableError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_table(evaluation.report), flush=True)
    for key, row in evaluation.report.get("localisation", {}).items():
        print(f"{key}: peak on or near an outline in {row['peak_hit_rate']:.1%} of {row['images']} fractured images; "
              f"{row['mass_inside']:.1%} of its mass inside the outlines")
    if "findings" in evaluation.report:
        print(format_findings(evaluation.report["findings"]), flush=True)
    if args.robustness:
        print("\n" + format_robustness(evaluation.report["robustness"]), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(to_json(evaluation.report) + "\n")
    if args.plots:
        write_plots(evaluation, args.plots)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Re-fit the model's calibration and operating points on this site's own labelled radiographs.

    fracture-calibrate --data-dir FOLDER --out DIR [--model model/] [--split NAME] [--force]
    (from a checkout: python scripts/calibrate_site.py, the same arguments)

FOLDER holds labels.csv (path,label with 1 = fractured) or Fractured/ + Non_fractured/, as for
fracture-evaluate: at least 20 readable non-fractured and 32 readable fractured images (about 100 of
each is better). The images go through the app's own preprocessing and model; Platt scaling and both
operating points are re-fitted by the training's rules (balanced: Youden's J; high_sensitivity: the
highest threshold whose one-sided 95% Wilson lower bound of sensitivity on the sample reaches 0.90,
a margin for the sample's size so that the promise holds on new images; the summary says what the
margin costs in specificity), and DIR becomes a complete model folder that serves them:

    FRACTURE_MODEL_DIR=DIR make run

Sensitivity and specificity are reported 5-fold cross-validated, with 95% CIs. Exits 2 when the
folder, the sample (too few fractured images for the margin: it says how many are needed) or the
model cannot be used; never overwrites a non-empty DIR (or the model itself) without --force. Needs
only the runtime install.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from fracture_web.config import for_command_line
from fracture_web.datasets import DatasetError, read_records
from fracture_web.evaluation.calibration import HIGH_SENSITIVITY, SampleTooSmallError, check_fractured, margin_cost
from fracture_web.evaluation.diagnostic_accuracy import to_json
from fracture_web.evaluation.model_card import render
from fracture_web.evaluation.scoring import EvaluationError, score_records
from fracture_web.evaluation.site import FOLDS, SITE_KEY, check_sample, fit_site, site_metadata, write_site_model
from fracture_web.inference import FractureModel, ModelLoadError
from fracture_web.probability import logit, sigmoid

#: The key of the high-sensitivity point's margin (rule and cost) in the site's calibration.
MARGIN_KEY = "high_sensitivity_margin"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="this site's labelled folder")
    parser.add_argument("--out", type=Path, required=True, help="the re-fitted model folder to write")
    parser.add_argument("--model", type=Path, default=Path(for_command_line(parser)["MODEL_DIR"]), help="model to re-fit (default: %(default)s)")
    parser.add_argument("--split", help="only rows of labels.csv whose split column is this")
    parser.add_argument("--batch-size", type=int, default=16, help="images per model call (default 16)")
    parser.add_argument("--force", action="store_true", help="overwrite a non-empty --out (even the model)")
    return parser.parse_args(argv)


def summary_lines(metadata: dict) -> list[str]:
    """What a person needs to see: the sample, the new thresholds and their cross-validated rates."""
    site = metadata[SITE_KEY]
    lines = [f"Re-fitted on {site['images']} images ({site['fractured']} fractured); "
             f"AUC on this sample {site['sample']['auc']:.3f} (95% CI {site['sample']['auc_ci95'][0]:.3f}-"
             f"{site['sample']['auc_ci95'][1]:.3f})",
             "operating point    threshold  (was)   sensitivity (95% CI)    specificity (95% CI)   cross-validated"]
    for name, point in metadata["operating_points"].items():
        was = site["development_operating_points"].get(name, float("nan"))
        sens, spec = point["sensitivity_ci95"], point["specificity_ci95"]
        lines.append(f"{name:<18} {point['threshold']:>9.3f}  ({was:.3f})  {point['sensitivity']:.3f} "
                     f"({sens[0]:.3f}-{sens[1]:.3f})     {point['specificity']:.3f} ({spec[0]:.3f}-{spec[1]:.3f})")
    return lines + margin_lines(site[MARGIN_KEY])


def margin_lines(margin: dict) -> list[str]:
    """The high-sensitivity point on the sample without the margin and with it, and the cost."""
    lines = [f"high_sensitivity keeps a margin: {margin['rule']} ({margin['target']:.2f}); on this sample:"]
    for name in ("without_margin", "with_margin"):
        point = margin[name]
        lines.append(f"  {name.replace('_', ' '):<15} threshold {point['threshold']:.3f}  sensitivity "
                     f"{point['sensitivity']:.3f} (lower bound {point['sensitivity_lower_bound']:.3f})  "
                     f"specificity {point['specificity']:.3f}")
    lines.append(f"  the margin costs {margin['specificity_cost']:.3f} specificity on this sample")
    return lines


def check_size(labels: np.ndarray) -> None:
    """Refuse a sample too small to re-fit: too few of a class, or too few fractured images for the
    high-sensitivity margin in every cross-validation fold."""
    check_sample(labels)
    check_fractured(labels, HIGH_SENSITIVITY, FOLDS)


def refitted_metadata(metadata: dict, labels: np.ndarray, probs: np.ndarray, columns: dict) -> dict:
    """The model's metadata re-fitted on the sample, with the high-sensitivity margin's rule and cost."""
    fit = fit_site(labels, probs, columns)
    updated = site_metadata(metadata, fit)
    refitted = sigmoid(fit.platt[0] * logit(probs) + fit.platt[1])  # as fit_site re-calibrates them
    updated[SITE_KEY][MARGIN_KEY] = margin_cost(labels, refitted, HIGH_SENSITIVITY)
    return updated


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        records = read_records(args.data_dir, args.split)
        check_size(records.labels)  # before scoring: a sample too small is refused in seconds
        model = FractureModel(args.model)
        scored, probs, unreadable, _warnings = score_records(records, model, args.batch_size)
        check_size(scored.labels)
        metadata = refitted_metadata(model.metadata, scored.labels, probs, scored.columns)
        write_site_model(args.model, args.out, metadata, args.force)
    except (DatasetError, EvaluationError, ModelLoadError, SampleTooSmallError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if (args.out / "metrics.json").is_file():  # the development validation report, copied with the model
        (args.out / "MODEL_CARD.md").write_text(render(metadata, json.loads((args.out / "metrics.json").read_text())))
    (args.out / "site_metrics.json").write_text(to_json(metadata[SITE_KEY]) + "\n")
    print("\n".join(summary_lines(metadata)))
    if unreadable:
        print(f"{len(unreadable)} unreadable images left out")
    print(f"Wrote {args.out}; serve it with: FRACTURE_MODEL_DIR={args.out} make run")
    return 0


if __name__ == "__main__":
    sys.exit(main())

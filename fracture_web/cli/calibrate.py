"""Re-fit the model's calibration and operating points on this site's own labelled radiographs.

    fracture-calibrate --data-dir FOLDER --out DIR [--model model/] [--split NAME] [--force]
    fracture-calibrate --from-reads --out DIR [--model model/] [--force]
    (from a checkout: python scripts/calibrate_site.py, the same arguments)

FOLDER holds labels.csv (path,label with 1 = fractured) or Fractured/ + Non_fractured/, as for
fracture-evaluate: at least 20 readable non-fractured and 32 readable fractured images (about 100 of
each is better). The images go through the app's own preprocessing and model.

--from-reads needs no images: it takes the analyses the app stored and the reads its readers gave
(the site page's; FRACTURE_DATABASE_URL, else instance/reads.sqlite3, as the app finds them). Only
analyses by the model being re-fitted (its version and calibration) count, and only the reads
"fracture" and "no fracture"; the summary says how many were used and why the others were left out.
The same numbers of each class are needed as from a folder.

Platt scaling and both operating points are re-fitted by the training's rules (balanced: Youden's J;
high_sensitivity: the highest threshold whose one-sided 95% Wilson lower bound of sensitivity on the
sample reaches 0.90, a margin for the sample's size so that the promise holds on new images; the
summary says what the margin costs in specificity), and DIR becomes a complete model folder that
serves them:

    FRACTURE_MODEL_DIR=DIR make run

Sensitivity and specificity are reported 5-fold cross-validated, with 95% CIs. Exits 2 when the
folder, the reads, the sample (too few fractured images for the margin: it says how many are needed;
labels that rank opposite to the model, as when 0 and 1 are swapped; an image listed twice; scores
that do not vary) or the model cannot be used; never overwrites a non-empty DIR (or the model itself)
without --force, and refuses a DIR that is a file or inside the model before scoring. DIR is written
whole beside itself and renamed into place: a failure leaves no half-written model folder.
Needs only the runtime install.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
from flask import Flask

from fracture_web.config import Settings, for_command_line
from fracture_web.datasets import DatasetError, check_distinct_files, read_records, skipped_note
from fracture_web.evaluation.diagnostic_accuracy import to_json
from fracture_web.evaluation.model_card import read_parity, render
from fracture_web.evaluation.scoring import EvaluationError, score_records
from fracture_web.evaluation.site import (MARGIN_KEY, SITE_KEY, check_out, check_size, fit_site, site_metadata,
                                          write_site_model)
from fracture_web.inference import FractureModel, ModelLoadError
from fracture_web.reads.statistics import refit_sample
from fracture_web.reads.store import ReadStore, StoreUnavailableError, database_url

#: A sample to re-fit on: the labels (1 = fractured), the served model's probabilities, subgroup columns.
Labelled = tuple[np.ndarray, np.ndarray, dict]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    settings = for_command_line(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", type=Path, help="this site's labelled folder")
    source.add_argument("--from-reads", action="store_true", help="the readers' reads the app stored "
                        "(FRACTURE_DATABASE_URL, else the instance folder's database)")
    parser.add_argument("--out", type=Path, required=True, help="the re-fitted model folder to write")
    parser.add_argument("--model", type=Path, default=Path(settings["MODEL_DIR"]),
                        help="model to re-fit (default: %(default)s)")
    parser.add_argument("--split", help="only rows of labels.csv whose split column is this (with --data-dir)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per model call (default 16)")
    parser.add_argument("--force", action="store_true", help="overwrite a non-empty --out (even the model)")
    args = parser.parse_args(argv)
    if args.from_reads and args.split:
        parser.error("--split goes with --data-dir (the reads have no splits)")
    args.database = reads_database(settings)
    return args


def reads_database(settings: Settings) -> str:
    """The database the web app keeps its reads in: ``DATABASE_URL``, else the SQLite file in the
    instance folder Flask gives the app (``web.reads`` opens it the same way)."""
    return database_url(settings["DATABASE_URL"], Flask("fracture_web").instance_path)


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


def folder_sample(args: argparse.Namespace) -> tuple[FractureModel, Labelled]:
    """The labelled folder scored through the model (a sample too small is refused before scoring)."""
    records = read_records(args.data_dir, args.split)
    if note := skipped_note(records.skipped, args.data_dir):
        print(f"note: {note}", file=sys.stderr)
    check_size(records.labels)  # before scoring: a sample too small is refused in seconds
    check_distinct_files(records)  # one image under two names would count twice
    model = FractureModel(args.model)
    scored, probs, unreadable, _warnings = score_records(records, model, args.batch_size)
    if unreadable:
        print(f"{len(unreadable)} unreadable images left out")
    return model, (scored.labels, probs, scored.columns)


def reads_sample(args: argparse.Namespace) -> tuple[FractureModel, Labelled]:
    """The readers' labels for the analyses the model gave as it is served now, and what was left out."""
    model = FractureModel(args.model)
    store = ReadStore.open(args.database)
    if store.engine.dialect.name == "sqlite" and not Path(store.engine.url.database or "").is_file():
        raise EvaluationError(f"No reads are stored: {store.engine.url.database} does not exist (set "
                              "FRACTURE_DATABASE_URL to the database the app keeps its reads in)")
    try:
        rows = store.all()
    finally:
        store.dispose()
    labels, probs, columns = refit_sample(rows, model.version, model.calibration)
    unread, unsure = sum(row.read is None for row in rows), sum(row.read == "unsure" for row in rows)
    print(f"From the reads: {len(labels)} of {len(rows) - unread} read analyses used (model {model.version}, "
          f"{model.calibration} calibration); left out: {unsure} read 'not sure', "
          f"{len(rows) - unread - unsure - len(labels)} of another model version or calibration "
          f"({unread} analyses not read yet)")
    return model, (labels, probs, columns)


def site_files(model_dir: Path, metadata: dict) -> dict[str, str]:
    """The files written beside metadata.json: site_metrics.json and the model card: rendered again
    with a *Re-fitted at this site* section when the model has its development validation report
    (metrics.json); else the model's own card, if it has one, under a note that its thresholds and
    probabilities are no longer the served ones."""
    files = {"site_metrics.json": to_json(metadata[SITE_KEY]) + "\n"}
    metrics, card = Path(model_dir) / "metrics.json", Path(model_dir) / "MODEL_CARD.md"
    if metrics.is_file():
        files["MODEL_CARD.md"] = render(metadata, json.loads(metrics.read_text()), read_parity(model_dir))
    elif card.is_file():
        files["MODEL_CARD.md"] = stale_card_note(metadata[SITE_KEY]) + card.read_text(encoding="utf-8", errors="replace")
    return files


def stale_card_note(site: dict) -> str:
    """What heads a model card that could not be rendered again after a site re-fit."""
    return (f"> **Re-fitted at a site on {site['fitted_at']}** on {site['images']} images "
            f"({site['fractured']} fractured): the probabilities, operating points and thresholds served now "
            "are those in `site_metrics.json` and `metadata.json`, not the ones this card gives below "
            "(the model folder had no `metrics.json` to render the card again from).\n\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        check_out(args.model, args.out, args.force)  # before scoring: a bad --out is refused in seconds
        model, (labels, probs, columns) = reads_sample(args) if args.from_reads else folder_sample(args)
        check_size(labels)
        metadata = site_metadata(model.metadata, fit_site(labels, probs, columns))
        write_site_model(args.model, args.out, metadata, args.force, site_files(args.model, metadata))
    except (DatasetError, EvaluationError, ModelLoadError, StoreUnavailableError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(metadata)))
    print(f"Wrote {args.out}; serve it with: FRACTURE_MODEL_DIR={args.out} make run")
    return 0


if __name__ == "__main__":
    sys.exit(main())

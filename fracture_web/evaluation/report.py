"""Evaluate a model on a labelled folder: the metrics report of the scored images, and that
report as a table for a person. No Flask, no argparse: ``scripts/evaluate.py`` is the CLI."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..datasets import Records
from ..orientation import ORIENTATIONS
from ..photo_render import KINDS as PHOTO_KINDS
from ..outlines import outlines_beside
from .diagnostic_accuracy import report
from .localisation import Located, findings_table, locate_records, pointing_table
from .robustness import robustness_table
from .scoring import EvaluationError, Scorer, score_folder

#: How many unreadable file names the printed table lists (the JSON lists them all).
MAX_NAMES_SHOWN = 10


@dataclass
class Evaluation:
    """The scored images, their probabilities, the files that could not be read, and the summary."""

    records: Records
    probs: np.ndarray
    unreadable: list[Path]
    report: dict


def evaluate(data_dir: Path, model: Scorer, batch_size: int = 16, split: str | None = None) -> Evaluation:
    """Score the folder and compute the metrics report at the model's own operating points."""
    scored = score_folder(data_dir, model, batch_size, split)
    return summarise(*scored, model=model, data_dir=Path(data_dir), split=split)


def summarise(records: Records, probs: np.ndarray, unreadable: list[Path], warnings: Counter, *,
              model: Scorer, data_dir: Path, split: str | None = None) -> Evaluation:
    """The metrics report of scored images (refusing empty or one-class results)."""
    _check_scorable(records, unreadable, data_dir)
    summary = report(records.labels, probs, model.thresholds, records.columns)
    summary.update(unreadable=len(unreadable), unreadable_files=[_name(p, data_dir) for p in unreadable],
                   warnings=dict(warnings), model_version=model.version, data_dir=str(data_dir), split=split)
    return Evaluation(records, probs, unreadable, summary)


def _check_scorable(records: Records, unreadable: list[Path], data_dir: Path) -> None:
    """Refuse to compute an AUC without readable images of both classes."""
    if len(records) == 0:
        raise EvaluationError(f"None of the {len(unreadable)} images in {data_dir} could be read")
    if len(np.unique(records.labels)) < 2:
        kind = "fractured" if records.labels[0] == 1 else "not fractured"
        raise EvaluationError(f"Only {kind} images in {data_dir} could be read ({len(unreadable)} unreadable); "
                              "both classes are needed for an AUC")


def _name(path: Path, data_dir: Path) -> str:
    """The file's path relative to the data folder (its bare name if it lies elsewhere)."""
    try:
        return str(Path(path).relative_to(data_dir))
    except ValueError:
        return Path(path).name


def format_table(summary: dict) -> str:
    """A human-readable summary: counts, AUC with CI, ECE, operating points, subgroup AUCs."""
    low, high = summary["auc_ci95"]
    lines = [f"Model {summary.get('model_version', '?')} on {summary.get('data_dir', '?')}",
             f"Images scored: {summary['n']} ({summary['positives']} fractured, "
             f"{summary['n'] - summary['positives']} not fractured)",
             _unreadable_line(summary),
             *(f"Warned {count}x: {text}" for text, count in summary.get("warnings", {}).items()),
             f"AUC {summary['auc']:.3f} (95% CI {low:.3f}-{high:.3f})    ECE {summary['ece']:.3f}", ""]
    lines += _operating_point_rows(summary["operating_points"])
    for key, title in (("by_body_part", "body part"), ("by_hardware", "hardware")):
        if summary.get(key):
            lines += ["", *_subgroup_rows(summary[key], title)]
    return "\n".join(lines)


def _unreadable_line(summary: dict) -> str:
    names = summary.get("unreadable_files", [])
    if not names:
        return "Unreadable: 0"
    shown = ", ".join(names[:MAX_NAMES_SHOWN])
    more = f" and {len(names) - MAX_NAMES_SHOWN} more" if len(names) > MAX_NAMES_SHOWN else ""
    return f"Unreadable: {len(names)} ({shown}{more})"


def _operating_point_rows(points: dict[str, dict]) -> list[str]:
    width = max([len("operating point"), *map(len, points)])
    rows = [f"{'operating point':<{width}}  threshold  sensitivity  specificity    PPV    NPV"]
    for name, p in points.items():
        rows.append(f"{name:<{width}}  {p['threshold']:>9.3f}  {_rate(p['sensitivity']):>11}  "
                    f"{_rate(p['specificity']):>11}  {_rate(p['ppv']):>5}  {_rate(p['npv']):>5}")
    return rows


def _subgroup_rows(groups: dict[str, dict], title: str) -> list[str]:
    width = max([len(title), *map(len, groups)])
    rows = [f"{title:<{width}}  {'n':>5}  positives    AUC"]
    for name, g in groups.items():
        auc = "--" if g["auc"] is None else f"{g['auc']:.3f}"
        rows.append(f"{name:<{width}}  {g['n']:>5}  {g['positives']:>9}  {auc:>5}")
    return rows


def _rate(value: float) -> str:
    """A rate to three decimals; '--' where it is undefined (no cases in the denominator)."""
    return "--" if value is None or not math.isfinite(value) else f"{value:.3f}"


def add_site_tables(evaluation: Evaluation, model: Scorer, data_dir: Path, robustness: bool = True,
                    batch_size: int = 16, located: list[Located] | None = None) -> None:
    """Add to the report what a new site wants to know: with ``robustness``, the scores under each
    site shift and each orientation; and, when the folder has outlines (``annotations.json``), where
    the maps point and, for a model with finding thresholds, where its findings land (``located``:
    the records already located, to spare a second pass)."""
    if robustness:
        evaluation.report["robustness"] = robustness_table(evaluation.records, model, batch_size=batch_size,
                                                           probs=evaluation.probs, orientations=ORIENTATIONS,
                                                           photos=PHOTO_KINDS)
    outlines = outlines_beside(data_dir)
    if outlines is None:
        return
    if located is None:
        located = locate_records(evaluation.records, outlines, Path(data_dir), model, model.input_size, model.box_scale)
    evaluation.report["localisation"] = pointing_table(located)
    if model.finding_levels is not None:
        threshold = model.thresholds[model.default_operating_point]
        evaluation.report["findings"] = findings_table(located, model.finding_levels, threshold, model.box_scale)

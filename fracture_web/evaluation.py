"""Score a labelled radiograph folder with the shipped model and summarise how it does.

The images go through the app's own preprocessing (``decode_image`` + ``to_model_input``)
and the app's own model class (:meth:`FractureModel.infer`), so the numbers describe what
a clinician would actually see. No Flask, no argparse: ``scripts/evaluate.py`` is the CLI.
"""
from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .imaging import InvalidImageError, decode_image, to_model_input
from .training.data import Records, read_records
from .training.metrics import report

log = logging.getLogger(__name__)

#: Equal-width probability bins of the reliability diagram (the same as the ECE's).
RELIABILITY_BINS = 10
#: How many unreadable file names the printed table lists (the JSON lists them all).
MAX_NAMES_SHOWN = 10


class EvaluationError(ValueError):
    """The folder cannot be evaluated (e.g. nothing readable, or only one class readable)."""


class Scorer(Protocol):
    """What evaluation needs from a model: :class:`~fracture_web.inference.FractureModel` fits."""

    input_size: int
    version: str
    thresholds: dict[str, float]

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class Evaluation:
    """The scored images, their probabilities, the files that could not be read, and the summary."""

    records: Records
    probs: np.ndarray
    unreadable: list[Path]
    report: dict


def score_folder(data_dir: Path, model: Scorer, batch_size: int = 16,
                 split: str | None = None) -> tuple[Records, np.ndarray, list[Path], Counter]:
    """Probability of fracture for every readable image listed in ``data_dir``.

    With ``split``, only the rows whose ``split`` column has that value (e.g. FracAtlas's
    ``val``) are scored. See :func:`score_records` for what is returned.
    """
    records = read_records(Path(data_dir))
    if split is not None:
        records = records.in_split(split)
    return score_records(records, model, batch_size)


def score_records(records: Records, model: Scorer,
                  batch_size: int = 16) -> tuple[Records, np.ndarray, list[Path], Counter]:
    """Score the images through the app's preprocessing and model, ``batch_size`` at a time.

    Returns the records of the readable images (in listing order), their probabilities,
    the paths that could not be read, and how often each preprocessing warning was given.
    Only ``batch_size`` inputs are held at once, so folders of full-size radiographs fit in memory.
    """
    if batch_size < 1:
        raise EvaluationError(f"batch size must be at least 1, not {batch_size}")
    readable = np.zeros(len(records), dtype=bool)
    unreadable: list[Path] = []
    warnings: Counter = Counter()
    batch: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    for i, path in enumerate(records.paths):
        try:
            decoded = decode_image(path.read_bytes())
            batch.append(to_model_input(decoded.pixels, model.input_size))
            warnings.update(decoded.warnings)
            readable[i] = True
        except (InvalidImageError, OSError) as err:
            log.warning("unreadable image %s: %s", path.name, getattr(err, "strerror", None) or err)
            unreadable.append(path)
        if len(batch) == batch_size or (i == len(records) - 1 and batch):
            scores.append(_infer(model, batch))
            batch = []
    probs = np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)
    return records.subset(readable), probs, unreadable, warnings


def _infer(model: Scorer, batch: list[np.ndarray]) -> np.ndarray:
    """Probabilities (B,) for one list of model inputs."""
    probs, _heatmaps = model.infer(np.stack(batch))
    return np.asarray(probs, dtype=np.float64).reshape(-1)


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


def reliability_bins(labels: np.ndarray, probs: np.ndarray,
                     bins: int = RELIABILITY_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin: mean predicted probability, observed fraction fractured, count.

    Empty bins hold NaN means and a zero count. Bin edges match the ECE's.
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    mean_pred = np.full(bins, np.nan)
    observed = np.full(bins, np.nan)
    for b in np.flatnonzero(counts):
        mean_pred[b] = probs[which == b].mean()
        observed[b] = labels[which == b].mean()
    return mean_pred, observed, counts


def write_plots(evaluation: Evaluation, out_dir: Path) -> list[Path]:
    """Write ``roc.png`` and ``reliability.png`` into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels, probs = evaluation.records.labels, evaluation.probs
    roc = plot_roc(labels, probs, evaluation.report["operating_points"], out_dir / "roc.png")
    reliability = plot_reliability(labels, probs, out_dir / "reliability.png")
    return [roc, reliability]


def plot_roc(labels: np.ndarray, probs: np.ndarray, points: dict[str, dict], path: Path) -> Path:
    """ROC curve with each operating point marked at its (1 - specificity, sensitivity)."""
    import matplotlib
    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(labels, probs)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=f"ROC (AUC {roc_auc_score(labels, probs):.3f})")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    for name, p in points.items():
        if math.isfinite(p["sensitivity"]) and math.isfinite(p["specificity"]):
            ax.plot(1 - p["specificity"], p["sensitivity"], "o",
                    label=f"{name} (threshold {p['threshold']:.3f})")
    ax.set(xlabel="1 - specificity (false-positive rate)", ylabel="sensitivity (true-positive rate)",
           xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), title="ROC curve")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_reliability(labels: np.ndarray, probs: np.ndarray, path: Path, bins: int = RELIABILITY_BINS) -> Path:
    """Reliability diagram: observed fraction vs mean predicted probability per bin, counts below."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean_pred, observed, counts = reliability_bins(labels, probs, bins)
    filled = counts > 0
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect calibration")
    top.plot(mean_pred[filled], observed[filled], "o-", label="model")
    top.set(ylabel="observed fraction fractured", ylim=(-0.02, 1.02), title="Reliability diagram")
    top.legend(loc="upper left", fontsize="small")
    width = 1.0 / bins
    bottom.bar(np.arange(bins) * width, counts, width=width, align="edge", edgecolor="black")
    bottom.set(xlabel="predicted probability", ylabel="images", xlim=(0, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)

"""ROC curve and reliability diagram as PNG files.

matplotlib is a development requirement, not a runtime one: it is imported only when a plot is
drawn, and its absence is a :class:`PlotsUnavailableError` that says how to install it.
"""
from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType

import numpy as np

from .diagnostic_accuracy import CALIBRATION_BINS, calibration_bins, roc_auc, roc_curve
from .report import Evaluation


class PlotsUnavailableError(RuntimeError):
    """matplotlib is not installed (it comes with requirements-dev.txt)."""


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the file-only Agg backend; :class:`PlotsUnavailableError` without it."""
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only: never needs a display
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise PlotsUnavailableError("plots need matplotlib, which the runtime install leaves out: "
                                    "pip install -r requirements-dev.txt") from err
    return plt


def write_plots(evaluation: Evaluation, out_dir: Path) -> list[Path]:
    """Write ``roc.png`` and ``reliability.png`` into ``out_dir``; returns their paths."""
    pyplot()  # before making the folder: nothing written when plots cannot be drawn
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels, probs = evaluation.records.labels, evaluation.probs
    roc = plot_roc(labels, probs, evaluation.report["operating_points"], out_dir / "roc.png")
    reliability = plot_reliability(labels, probs, out_dir / "reliability.png")
    return [roc, reliability]


def plot_roc(labels: np.ndarray, probs: np.ndarray, points: dict[str, dict], path: Path) -> Path:
    """ROC curve with each operating point marked at its (1 - specificity, sensitivity)."""
    plt = pyplot()
    fpr, tpr, _ = roc_curve(labels, probs)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=f"ROC (AUC {roc_auc(labels, probs):.3f})")
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


def plot_reliability(labels: np.ndarray, probs: np.ndarray, path: Path, bins: int = CALIBRATION_BINS) -> Path:
    """Reliability diagram: observed fraction vs mean predicted probability per bin, counts below."""
    plt = pyplot()
    mean_pred, observed, counts = calibration_bins(labels, probs, bins)
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

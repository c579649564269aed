"""Diagnostic accuracy of a binary classifier, in numpy: ROC curve and AUC with a bootstrap CI, rates
at an operating point with Wilson intervals, calibration bins and expected calibration error,
subgroups, and the summary report as strict JSON. (Not to be confused with ``fracture_web.metrics``,
the service's Prometheus metrics.)

No scikit-learn: :func:`roc_curve` and :func:`roc_auc` follow ``sklearn.metrics.roc_curve`` and
``roc_auc_score`` step by step (same sort, same corner points, same trapezoid sum), so they
return the same floats, bit for bit (tests/test_evaluate.py checks it).
"""
from __future__ import annotations

import json
import math

import numpy as np

#: Equal-width probability bins of the ECE and of the reliability diagram.
CALIBRATION_BINS = 10


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False- and true-positive rates at each distinct score, highest first, and those thresholds.

    Starts at (0, 0) with an infinite threshold; points collinear with their neighbours are dropped
    (they are never optimal and do not change the area), as scikit-learn does by default.
    """
    scores = np.asarray(scores)
    order = np.argsort(scores, kind="stable")[::-1]  # order within ties does not matter: only their ends count
    ranked, positive = scores[order], (np.asarray(labels)[order] == 1).astype(np.float64)
    ends = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # last index of each distinct score
    tps = np.cumsum(positive)[ends]
    fps = 1 + ends - tps
    thresholds = ranked[ends].astype(np.float64)
    if len(fps) > 2:
        corners = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        tps, fps, thresholds = tps[corners], fps[corners], thresholds[corners]
    tps, fps, thresholds = np.r_[0.0, tps], np.r_[0.0, fps], np.r_[np.inf, thresholds]
    return fps / fps[-1], tps / tps[-1], thresholds


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the trapezoid rule.

    Equal to the Mann-Whitney U statistic with average ranks for ties, divided by
    positives x negatives: the chance that a random fractured image scores above a random
    other one, ties counting half. Needs both classes.
    """
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def auc_with_ci(labels: np.ndarray, scores: np.ndarray, n_boot: int = 1000,
                seed: int = 0) -> tuple[float, tuple[float, float]]:
    """ROC AUC and its 95% percentile-bootstrap interval (resamples with one class skipped)."""
    auc = roc_auc(labels, scores)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(labels), len(labels))
        if labels[idx].min() != labels[idx].max():
            boots.append(roc_auc(labels[idx], scores[idx]))
    low, high = np.percentile(boots, [2.5, 97.5])
    return auc, (float(low), float(high))


def confusion_rates(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity, PPV and NPV of ``probs >= threshold``."""
    pred = probs >= threshold
    tp = int(np.sum(pred & (labels == 1)))
    fp = int(np.sum(pred & (labels == 0)))
    tn = int(np.sum(~pred & (labels == 0)))
    fn = int(np.sum(~pred & (labels == 1)))
    ratio = lambda a, b: float(a / b) if b else float("nan")  # noqa: E731
    return {"threshold": float(threshold), "sensitivity": ratio(tp, tp + fn),
            "specificity": ratio(tn, tn + fp), "ppv": ratio(tp, tp + fp), "npv": ratio(tn, tn + fn),
            "sensitivity_ci95": wilson_interval(tp, tp + fn), "specificity_ci95": wilson_interval(tn, tn + fp),
            "tp": tp, "fp": fp, "tn": tn, "fn": fn}


def wilson_interval(successes: int, total: int, z: float = 1.959964) -> list[float]:
    """95% Wilson score interval of a proportion (NaNs when there is nothing to count)."""
    if total == 0:
        return [float("nan"), float("nan")]
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def calibration_bins(labels: np.ndarray, probs: np.ndarray,
                     bins: int = CALIBRATION_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width probability bin: mean predicted probability, observed fraction fractured, count.

    Empty bins hold NaN means and a zero count. The one binning of the ECE and the reliability diagram.
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


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """ECE over equal-width probability bins: sum of |accuracy - confidence| weighted by bin size."""
    mean_pred, observed, counts = calibration_bins(labels, probs, bins)
    ece = 0.0
    for b in np.flatnonzero(counts):
        ece += counts[b] / len(probs) * abs(observed[b] - mean_pred[b])
    return float(ece)


def subgroup_aucs(labels: np.ndarray, probs: np.ndarray, groups: list[str],
                  thresholds: dict[str, float] | None = None) -> dict[str, dict]:
    """AUC per subgroup value (e.g. body part), where the subgroup holds both classes,
    and sensitivity/specificity at each threshold given."""
    groups_arr = np.array(groups)
    out = {}
    for value in sorted(set(groups)):
        mask = groups_arr == value
        both = 0 < labels[mask].sum() < mask.sum()
        out[value] = {"n": int(mask.sum()), "positives": int(labels[mask].sum()),
                      "auc": roc_auc(labels[mask], probs[mask]) if both else None}
        for name, threshold in (thresholds or {}).items():
            rates = confusion_rates(labels[mask], probs[mask], threshold)
            out[value][name] = {"sensitivity": rates["sensitivity"], "specificity": rates["specificity"]}
    return out


def report(labels: np.ndarray, probs: np.ndarray, thresholds: dict[str, float],
           columns: dict[str, list[str]] | None = None) -> dict:
    """The evaluation summary: AUC with CI, each operating point, ECE, and subgroups."""
    auc, ci = auc_with_ci(labels, probs)
    result = {"n": int(len(labels)), "positives": int(labels.sum()), "auc": auc, "auc_ci95": list(ci),
              "ece": expected_calibration_error(labels, probs),
              "operating_points": {name: confusion_rates(labels, probs, t) for name, t in thresholds.items()}}
    columns = columns or {}
    if "body_part" in columns:
        result["by_body_part"] = subgroup_aucs(labels, probs, columns["body_part"], thresholds)
    if "hardware" in columns:
        result["by_hardware"] = subgroup_aucs(
            labels, probs, ["with_hardware" if h == "1" else "without_hardware" for h in columns["hardware"]],
            thresholds)
    return result


def to_json(summary: dict) -> str:
    """The report as strict JSON: undefined rates (NaN, e.g. PPV with no positive calls) become null."""
    return json.dumps(_finite(summary), indent=2, allow_nan=False)


def _finite(value):
    """A copy of ``value`` with every non-finite float replaced by None."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

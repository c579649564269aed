"""Scores for a binary classifier: AUC with a bootstrap CI, operating points,
calibration (Platt scaling) and expected calibration error. numpy + scikit-learn."""
from __future__ import annotations

import json
import math

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve


def auc_with_ci(labels: np.ndarray, scores: np.ndarray, n_boot: int = 1000,
                seed: int = 0) -> tuple[float, tuple[float, float]]:
    """ROC AUC and its 95% percentile-bootstrap interval."""
    auc = float(roc_auc_score(labels, scores))
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(labels), len(labels))
        if labels[idx].min() != labels[idx].max():
            boots.append(roc_auc_score(labels[idx], scores[idx]))
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


def choose_operating_points(labels: np.ndarray, probs: np.ndarray,
                            min_sensitivity: float = 0.90) -> dict[str, float]:
    """Thresholds: ``balanced`` maximises Youden's J; ``high_sensitivity`` is the
    highest threshold whose sensitivity is at least ``min_sensitivity``."""
    fpr, tpr, thresholds = roc_curve(labels, probs)
    finite = np.isfinite(thresholds)
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]
    balanced = thresholds[int(np.argmax(tpr - fpr))]
    high_sens = thresholds[tpr >= min_sensitivity].max()
    return {"balanced": float(balanced), "high_sensitivity": float(high_sens)}


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Platt scaling: p = sigmoid(a * logit + b), fitted by unregularised logistic regression."""
    model = LogisticRegression(C=1e6, max_iter=1000).fit(logits.reshape(-1, 1), labels)
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, numerically stable."""
    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> float:
    """ECE over equal-width probability bins: sum of |accuracy - confidence| weighted by bin size."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(labels[mask].mean() - probs[mask].mean())
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
                      "auc": float(roc_auc_score(labels[mask], probs[mask])) if both else None}
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

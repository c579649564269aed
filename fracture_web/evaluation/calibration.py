"""From scores to what the app serves: Platt scaling of the probability and the thresholds of the
operating points, fitted the same way in training and at a site. numpy only (so a site can
re-fit from the serving install).

The high-sensitivity point keeps a margin for the sample's size: a threshold that just reaches
the target on the fitting sample lands below it on new images about half the time, so the point
is the highest threshold whose one-sided 95% Wilson lower bound of sensitivity reaches the target.
"""
from __future__ import annotations

import logging
import math

import numpy as np

from ..probability import sigmoid
from .diagnostic_accuracy import confusion_rates, roc_curve, wilson_interval

log = logging.getLogger(__name__)

#: The smallest sensitivity the ``high_sensitivity`` operating point is fitted to keep.
HIGH_SENSITIVITY = 0.90
#: The normal quantile of a one-sided 95% bound.
ONE_SIDED_95 = 1.6448536269514722
#: Validation images the in-scope check may flag: its threshold is this quantile of their distances.
IN_SCOPE_QUANTILE = 0.99
#: The rule that places the ``high_sensitivity`` point, in words (stored in the metadata).
HIGH_SENSITIVITY_RULE = "highest threshold whose one-sided 95% Wilson lower bound of sensitivity reaches the target"


class SampleTooSmallError(ValueError):
    """Too few fractured images for any threshold's lower bound of sensitivity to reach the target."""


def fit_platt(scores: np.ndarray, labels: np.ndarray, iterations: int = 100) -> tuple[float, float]:
    """Platt scaling: p = sigmoid(a * score + b), the maximum-likelihood (a, b) by Newton's method,
    fitted to Platt's targets ((N+ + 1) / (N+ + 2) for a fractured image, 1 / (N- + 2) for another)
    rather than to 1 and 0: on a sample the model separates (a small site's, often) the plain fit's
    slope grows without bound, its probabilities saturate and its thresholds sit a hair below 1,
    which new images then miss. (A 1e-6 ridge keeps the Newton steps finite.)"""
    x = np.column_stack([np.asarray(scores, np.float64), np.ones(len(scores))])
    y = np.asarray(labels, np.float64)
    positives, negatives = float(y.sum()), float(len(y) - y.sum())
    targets = np.where(y == 1, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    weights = np.zeros(2)
    for _ in range(iterations):
        p = sigmoid(x @ weights)
        gradient = x.T @ (p - targets) + 1e-6 * weights
        hessian = (x * (p * (1 - p))[:, None]).T @ x + 1e-6 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(weights[0]), float(weights[1])


def choose_operating_points(labels: np.ndarray, probs: np.ndarray,
                            min_sensitivity: float = HIGH_SENSITIVITY) -> dict[str, float]:
    """Thresholds: ``balanced`` maximises Youden's J; ``high_sensitivity`` follows
    :data:`HIGH_SENSITIVITY_RULE` (see :func:`high_sensitivity_threshold`)."""
    fpr, tpr, thresholds = roc_curve(labels, probs)
    finite = np.isfinite(thresholds)
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]
    balanced = thresholds[int(np.argmax(tpr - fpr))]
    high_sens = high_sensitivity_threshold(labels, probs, min_sensitivity)
    return {"balanced": float(balanced), "high_sensitivity": high_sens}


def matched_sensitivity_threshold(labels: np.ndarray, probs: np.ndarray, sensitivity: float) -> float:
    """The highest threshold at which ``probs`` call at least ``sensitivity`` of the fractured images
    fractured: where another model's operating point found as many of them."""
    fractured = np.sort(np.asarray(probs)[np.asarray(labels) == 1])[::-1]
    needed = max(1, math.ceil(round(sensitivity * len(fractured), 9)))
    return float(fractured[needed - 1])


def sensitivity_lower_bound(detected: np.ndarray | int, fractured: int) -> np.ndarray:
    """One-sided 95% Wilson lower bound of sensitivity for ``detected`` of ``fractured`` images."""
    counts = np.atleast_1d(detected)
    return np.array([wilson_interval(int(k), fractured, ONE_SIDED_95)[0] for k in counts])


def high_sensitivity_threshold(labels: np.ndarray, probs: np.ndarray, target: float = HIGH_SENSITIVITY,
                               margin: bool = True) -> float:
    """The highest threshold whose sensitivity on the sample reaches ``target``: its lower bound
    with ``margin``, the plain proportion without. When no lower bound reaches it (too few
    fractured images), the threshold that keeps every fractured image, with a warning."""
    thresholds, detected = counts_by_threshold(labels, probs)
    fractured = int(detected[-1])
    sensitivity = sensitivity_lower_bound(detected, fractured) if margin else detected / fractured
    reaching = np.flatnonzero(sensitivity >= target)
    if len(reaching) == 0:
        log.warning("%d fractured images cannot show sensitivity >= %.2f at 95%% confidence (needs %d); "
                    "the high-sensitivity point keeps every fractured image instead",
                    fractured, target, fractured_needed(target))
        return float(thresholds[np.argmax(detected == fractured)])
    return float(thresholds[reaching[0]])


def counts_by_threshold(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every distinct probability, highest first, and the fractured images at or above it (every
    one, not only the ROC curve's corners: the rule needs each count)."""
    probs = np.asarray(probs, np.float64)
    order = np.argsort(probs, kind="stable")[::-1]
    ranked, positive = probs[order], np.asarray(labels)[order] == 1
    ends = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # last index of each distinct score
    return ranked[ends], np.cumsum(positive)[ends]


def fractured_needed(target: float = HIGH_SENSITIVITY, folds: int = 1) -> int:
    """Fractured images a sample needs before a threshold's lower bound can reach ``target``
    (all of them detected); with ``folds``, so that every cross-validation fold's fitting part has them."""
    needed = 1
    while sensitivity_lower_bound(needed, needed)[0] < target:
        needed += 1
    total = needed
    while folds > 1 and total - math.ceil(total / folds) < needed:  # the largest fold held out
        total += 1
    return total


def check_fractured(labels: np.ndarray, target: float = HIGH_SENSITIVITY, folds: int = 1) -> None:
    """Refuse a sample with too few fractured images for the margin rule (see :func:`fractured_needed`)."""
    fractured, needed = int(np.sum(np.asarray(labels) == 1)), fractured_needed(target, folds)
    if fractured < needed:
        raise SampleTooSmallError(
            f"The sample has {fractured} fractured images; the high-sensitivity point needs at least {needed} "
            f"(so that sensitivity >= {target:.2f} holds at 95% confidence"
            f"{f' in each of {folds} cross-validation folds' if folds > 1 else ''}). "
            f"Add {needed - fractured} or more fractured images and run it again.")


def margin_cost(labels: np.ndarray, probs: np.ndarray, target: float = HIGH_SENSITIVITY) -> dict:
    """The high-sensitivity point without the margin and with it, on the sample: threshold,
    sensitivity (with its lower bound) and specificity, and the specificity the margin costs."""
    points = {}
    for name, margin in (("without_margin", False), ("with_margin", True)):
        threshold = high_sensitivity_threshold(labels, probs, target, margin)
        rates = confusion_rates(np.asarray(labels), np.asarray(probs, np.float64), threshold)
        lower_bound = sensitivity_lower_bound(rates["tp"], rates["tp"] + rates["fn"])[0]
        points[name] = {"threshold": threshold, "sensitivity": rates["sensitivity"],
                        "sensitivity_lower_bound": float(lower_bound), "specificity": rates["specificity"]}
    return {"rule": HIGH_SENSITIVITY_RULE, "target": target, **points,
            "specificity_cost": points["without_margin"]["specificity"] - points["with_margin"]["specificity"]}


def stratified_folds(labels: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """A fold number (0 .. folds-1) per sample, each class spread evenly over the folds."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(labels), np.int64)
    for value in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == value))
        fold[members] = np.arange(len(members)) % folds
    return fold


def cross_validated_rates(labels: np.ndarray, scores: np.ndarray, folds: int = 5,
                          seed: int = 0) -> dict[str, dict]:
    """Sensitivity and specificity (with Wilson CIs) of each operating point on samples that did not
    fit it: per fold, Platt scaling and thresholds are fitted on the other folds and applied to this
    one; the held-out verdicts of all folds are then counted together."""
    fold = stratified_folds(labels, folds, seed)
    verdicts: dict[str, np.ndarray] = {}
    for k in range(folds):
        fit, held = fold != k, fold == k
        slope, intercept = fit_platt(scores[fit], labels[fit])
        thresholds = choose_operating_points(labels[fit], sigmoid(slope * scores[fit] + intercept))
        held_probs = sigmoid(slope * scores[held] + intercept)
        for name, threshold in thresholds.items():
            verdicts.setdefault(name, np.zeros(len(labels), bool))[held] = held_probs >= threshold
    return {name: _rates_of_verdicts(labels, called) for name, called in verdicts.items()}


def _rates_of_verdicts(labels: np.ndarray, called: np.ndarray) -> dict:
    """Sensitivity, specificity, PPV, NPV, their counts and CIs of given yes/no verdicts."""
    rates = confusion_rates(labels, called.astype(np.float64), 0.5)  # 1.0 >= 0.5: called; 0.0: not
    del rates["threshold"]
    return rates

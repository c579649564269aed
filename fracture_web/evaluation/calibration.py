"""From scores to what the app serves: Platt scaling of the probability and the thresholds of the
operating points, fitted the same way in training and at a site. numpy only (so a site can
re-fit from the serving install)."""
from __future__ import annotations

import numpy as np

from ..probability import sigmoid
from .diagnostic_accuracy import confusion_rates, roc_curve

#: The smallest sensitivity the ``high_sensitivity`` operating point is fitted to keep.
HIGH_SENSITIVITY = 0.90


def fit_platt(scores: np.ndarray, labels: np.ndarray, iterations: int = 100) -> tuple[float, float]:
    """Platt scaling: p = sigmoid(a * score + b), the maximum-likelihood (a, b) by Newton's method
    (a 1e-6 ridge keeps it finite when the classes separate)."""
    x = np.column_stack([np.asarray(scores, np.float64), np.ones(len(scores))])
    y = np.asarray(labels, np.float64)
    weights = np.zeros(2)
    for _ in range(iterations):
        p = sigmoid(x @ weights)
        gradient = x.T @ (p - y) + 1e-6 * weights
        hessian = (x * (p * (1 - p))[:, None]).T @ x + 1e-6 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(weights[0]), float(weights[1])


def choose_operating_points(labels: np.ndarray, probs: np.ndarray,
                            min_sensitivity: float = HIGH_SENSITIVITY) -> dict[str, float]:
    """Thresholds: ``balanced`` maximises Youden's J; ``high_sensitivity`` is the
    highest threshold whose sensitivity is at least ``min_sensitivity``."""
    fpr, tpr, thresholds = roc_curve(labels, probs)
    finite = np.isfinite(thresholds)
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]
    balanced = thresholds[int(np.argmax(tpr - fpr))]
    high_sens = thresholds[tpr >= min_sensitivity].max()
    return {"balanced": float(balanced), "high_sensitivity": float(high_sens)}


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

"""The logistic function, its inverse, and Platt re-calibration of a probability. numpy only;
shared by the model (a site's re-fitted calibration) and the calibration fitting itself."""
from __future__ import annotations

import numpy as np

#: Probabilities are kept this far from 0 and 1 before taking their logit.
EPSILON = 1e-7


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, numerically stable."""
    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


def logit(probs: np.ndarray) -> np.ndarray:
    """The inverse of :func:`sigmoid`, for probabilities clipped to [EPSILON, 1 - EPSILON]."""
    p = np.clip(np.asarray(probs, np.float64), EPSILON, 1 - EPSILON)
    return np.log(p) - np.log1p(-p)


def recalibrate(probs: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Platt scaling applied to probabilities: ``sigmoid(slope * logit(p) + intercept)``, float32."""
    return sigmoid(slope * logit(probs) + intercept).astype(np.float32)

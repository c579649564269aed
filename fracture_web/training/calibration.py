"""From the network's validation logits to what the app serves: Platt scaling of the
probability and the operating points' thresholds, by the same rules a site re-fits them with
(:mod:`fracture_web.evaluation.calibration`)."""
from __future__ import annotations

import numpy as np

from ..datasets import Split
from ..evaluation.calibration import choose_operating_points, fit_platt, margin_cost
from ..evaluation.diagnostic_accuracy import expected_calibration_error, report
from ..probability import sigmoid


def calibrate(val: Split, logits: np.ndarray) -> dict:
    """Platt scaling and operating points on the validation split, with its metrics."""
    slope, intercept = fit_platt(logits, val.labels)
    probs = sigmoid(slope * logits + intercept)
    thresholds = choose_operating_points(val.labels, probs)
    metrics = report(val.labels, probs, thresholds, val.records.columns)
    metrics["ece_uncalibrated"] = expected_calibration_error(val.labels, sigmoid(logits))
    metrics["high_sensitivity_margin"] = margin_cost(val.labels, probs)
    return {"platt": [slope, intercept], "thresholds": thresholds, "validation": metrics}

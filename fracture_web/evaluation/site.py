"""Re-fit a model's calibration and operating points on a site's own labelled radiographs.

The ranking a model learnt travels between hospitals better than its thresholds do: another
site's scanners, processing and case mix move every probability. A site scores a labelled
sample through the model (the app's own path), or takes the probabilities its readers have read
(``reads``), re-fits Platt scaling and both operating points by the training's rules (the
high-sensitivity point with a margin for the sample's size), and gets a complete model folder that
serves them. The sensitivity and specificity it reports are cross-validated: each image is judged by
thresholds fitted without it.
numpy only: it runs in the serving install.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..probability import logit, sigmoid
from .calibration import (HIGH_SENSITIVITY, HIGH_SENSITIVITY_RULE, SampleTooSmallError, check_fractured,
                          choose_operating_points, cross_validated_rates, fit_platt, margin_cost)
from .diagnostic_accuracy import expected_calibration_error, report, to_json
from .scoring import EvaluationError

#: Readable images of each class a sample needs before its operating points are worth fitting.
MIN_PER_CLASS = 20
#: Folds of the cross-validated estimate.
FOLDS = 5
#: The key of the site's calibration in metadata.json (read by ``fracture_web.inference``).
SITE_KEY = "site_calibration"
#: The key of the high-sensitivity point's margin (its rule and what it costs) in the site's calibration.
MARGIN_KEY = "high_sensitivity_margin"


class SiteSampleError(EvaluationError):
    """The labelled sample cannot support a re-fit (too few readable images of a class)."""


@dataclass(frozen=True)
class SiteFit:
    """A site's re-fitted calibration: Platt (slope, intercept) on the logit of the model's own
    probability, the thresholds on the re-calibrated probability, how the sample did, and the
    high-sensitivity point without and with its margin (``calibration.margin_cost``)."""

    platt: tuple[float, float]
    thresholds: dict[str, float]
    cross_validated: dict[str, dict]
    sample: dict
    margin: dict


def check_sample(labels: np.ndarray) -> None:
    """Refuse a sample with fewer than :data:`MIN_PER_CLASS` readable images of either class."""
    fractured = int(np.sum(labels == 1))
    normal = int(np.sum(labels == 0))
    if fractured < MIN_PER_CLASS or normal < MIN_PER_CLASS:
        raise SiteSampleError(
            f"The sample has {fractured} fractured and {normal} non-fractured readable images; re-fitting "
            f"needs at least {MIN_PER_CLASS} of each (more is better: about 100 of each gives thresholds "
            "that hold to within a few percentage points).")


def check_size(labels: np.ndarray) -> None:
    """Refuse a sample too small to re-fit: too few of a class (:func:`check_sample`), or too few
    fractured images for the high-sensitivity margin in every cross-validation fold."""
    check_sample(labels)
    try:
        check_fractured(labels, HIGH_SENSITIVITY, FOLDS)
    except SampleTooSmallError as err:
        raise SiteSampleError(str(err)) from None


def fit_site(labels: np.ndarray, probs: np.ndarray, columns: dict | None = None) -> SiteFit:
    """Re-fit on a site's labels and the model's probabilities for them (as it serves them now)."""
    labels = np.asarray(labels, np.int64)
    check_sample(labels)
    scores = logit(probs)
    slope, intercept = fit_platt(scores, labels)
    refitted = sigmoid(slope * scores + intercept)
    thresholds = choose_operating_points(labels, refitted, HIGH_SENSITIVITY)
    sample = report(labels, refitted, thresholds, columns)
    # The re-fit is monotone, so the AUC is unchanged; what it changes is the calibration.
    sample["ece_before"] = expected_calibration_error(labels, np.asarray(probs, np.float64))
    return SiteFit((slope, intercept), thresholds, cross_validated_rates(labels, scores, FOLDS), sample,
                   margin_cost(labels, refitted, HIGH_SENSITIVITY))


def site_metadata(metadata: dict, fit: SiteFit, now: datetime | None = None) -> dict:
    """The model's metadata with the site's calibration and operating points in place.

    A model that was already re-fitted gets the two calibrations composed into one, so the
    stored Platt always applies to the network's own (development-calibrated) probability.
    """
    slope, intercept = fit.platt
    previous = metadata.get(SITE_KEY)
    if previous:
        old_slope, old_intercept = previous["platt"]
        slope, intercept = slope * old_slope, slope * old_intercept + intercept
    updated = json.loads(json.dumps(metadata))  # a deep copy
    updated["operating_points"] = {name: {"threshold": threshold, **fit.cross_validated[name]}
                                   for name, threshold in fit.thresholds.items()}
    updated[SITE_KEY] = {
        "platt": [slope, intercept],
        "fitted_at": (now or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
        "images": fit.sample["n"], "fractured": fit.sample["positives"],
        "method": f"Platt scaling on the logit of the model's probability; balanced = Youden's J, "
                  f"high_sensitivity = the {HIGH_SENSITIVITY_RULE} ({HIGH_SENSITIVITY:.2f}); "
                  f"rates {FOLDS}-fold cross-validated",
        "cross_validated": fit.cross_validated,
        MARGIN_KEY: fit.margin,
        "development_operating_points": {name: point["threshold"]
                                         for name, point in metadata["operating_points"].items()},
        "sample": fit.sample,
    }
    return updated


def write_site_model(model_dir: Path, out_dir: Path, metadata: dict, force: bool = False) -> None:
    """Copy the model folder to ``out_dir`` with the site's metadata.json; refuse to overwrite a
    non-empty folder, or the model itself, unless ``force``."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    same = out_dir.exists() and out_dir.resolve() == model_dir.resolve()
    if not force and (same or (out_dir.exists() and any(out_dir.iterdir()))):
        raise EvaluationError(f"{out_dir} is not empty{' (it is the model being re-fitted)' if same else ''}; "
                              "choose another --out or pass --force to overwrite it")
    if not same:
        shutil.copytree(model_dir, out_dir, dirs_exist_ok=True)
    (out_dir / "metadata.json").write_text(to_json(metadata) + "\n")

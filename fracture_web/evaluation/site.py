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
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..probability import logit, recalibrate, sigmoid
from .calibration import (HIGH_SENSITIVITY, HIGH_SENSITIVITY_RULE, SampleTooSmallError, check_fractured,
                          choose_operating_points, cross_validated_rates, fit_platt, margin_cost)
from .diagnostic_accuracy import expected_calibration_error, report, roc_auc, to_json
from .scoring import EvaluationError

#: Readable images of each class a sample needs before its operating points are worth fitting.
MIN_PER_CLASS = 20
#: Folds of the cross-validated estimate.
FOLDS = 5
#: The key of the site's calibration in metadata.json (read by ``fracture_web.inference``).
SITE_KEY = "site_calibration"
#: The key of the high-sensitivity point's margin (its rule and what it costs) in the site's calibration.
MARGIN_KEY = "high_sensitivity_margin"
#: The share of a sample's images that must have a probability of their own: the same few values
#: over and over mean the same images listed many times, not a sample of the site.
MIN_DISTINCT_SHARE = 0.5
#: Probabilities this close to 0 or 1 (where a confident model saturates) may repeat.
SATURATED = 1e-6


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


def check_informative(labels: np.ndarray, probs: np.ndarray) -> None:
    """Refuse a sample whose probabilities do not vary (nothing to rank), that repeats a few values
    (the same images listed many times), or whose labels rank opposite to the model (an AUC at most
    0.5 on the model's own probability: most often 0 and 1 swapped)."""
    if not np.all(np.isfinite(probs)):
        raise SiteSampleError("Some of the sample's probabilities are not numbers; score the images again.")
    values, counts = np.unique(probs, return_counts=True)
    if len(values) == 1:
        raise SiteSampleError(
            f"The model gives every image of the sample the same probability ({values[0]:.1%}), so there is "
            "no ranking to re-fit; is one image listed many times? Use a sample of different images.")
    # A confident model saturates at 0 or 1 for many images; the values between must be an image's own.
    inside = (values > SATURATED) & (values < 1 - SATURATED)
    if np.sum(inside) < MIN_DISTINCT_SHARE * np.sum(counts[inside]):
        raise SiteSampleError(
            f"The sample's {len(probs)} images have only {len(values)} different probabilities ({counts.max()} "
            f"share {values[np.argmax(counts)]:.1%}): are the same images listed many times? Use a sample of "
            "different images, each once.")
    auc = roc_auc(labels, probs)
    if auc <= 0.5:
        raise SiteSampleError(swapped_message(f"an AUC of {auc:.3f} on the model's own probability, at most 0.5"))


def swapped_message(evidence: str) -> str:
    """The refusal of labels that rank opposite to the model."""
    return (f"The labels rank opposite to the model ({evidence}): are 0 and 1 swapped "
            "(1 must mean fractured)? Check the labels; a re-fit on them would invert every verdict.")


def check_fit(slope: float, intercept: float, thresholds: dict[str, float]) -> None:
    """Refuse a re-fit that would invert the verdicts (a slope not positive), or whose thresholds are
    not numbers in (0, 1) or lie above the highest probability the re-fitted model can serve."""
    if not (np.isfinite(slope) and np.isfinite(intercept)) or slope <= 0:
        raise SiteSampleError(swapped_message(f"a Platt slope of {slope:.3g}, which must be positive"))
    ceiling = float(recalibrate(np.array([1.0]), slope, intercept)[0])  # as the model serves it (float32)
    for name, threshold in thresholds.items():
        if not (np.isfinite(threshold) and 0 < threshold < 1 and threshold <= ceiling):
            raise SiteSampleError(
                f"The re-fitted {name} threshold ({threshold!r}) is one that no image could reach; the "
                "sample's probabilities are degenerate (are a few images listed many times?). Use a sample "
                "of more, and different, images.")


def fit_site(labels: np.ndarray, probs: np.ndarray, columns: dict | None = None) -> SiteFit:
    """Re-fit on a site's labels and the model's probabilities for them (as it serves them now);
    :class:`SiteSampleError` for a sample that cannot support it (see :func:`check_informative`,
    :func:`check_fit`)."""
    labels, probs = np.asarray(labels, np.int64), np.asarray(probs, np.float64)
    check_sample(labels)
    check_informative(labels, probs)
    scores = logit(probs)
    slope, intercept = fit_platt(scores, labels)
    refitted = sigmoid(slope * scores + intercept)
    thresholds = choose_operating_points(labels, refitted, HIGH_SENSITIVITY)
    check_fit(slope, intercept, thresholds)
    sample = report(labels, refitted, thresholds, columns)
    # The re-fit is monotone (its slope is positive), so the AUC is unchanged; what it changes is the calibration.
    sample["ece_before"] = expected_calibration_error(labels, probs)
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


def check_out(model_dir: Path, out_dir: Path, force: bool = False) -> None:
    """Refuse an ``out_dir`` that cannot take the new model folder, before any image is scored: a file,
    a folder inside the model (or holding it), a non-empty folder or the model itself without
    ``force``, or a place this user cannot write."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EvaluationError(f"{out_dir} is a file, not a folder; choose another --out")
    model, out = model_dir.resolve(), out_dir.resolve()
    same = out == model
    if model in out.parents or out in model.parents:
        raise EvaluationError(f"{out_dir} is {'inside' if model in out.parents else 'a folder above'} the model "
                              f"{model_dir}; choose an --out beside it, not in it")
    if not force and (same or (out_dir.exists() and any(out_dir.iterdir()))):
        raise EvaluationError(f"{out_dir} is not empty{' (it is the model being re-fitted)' if same else ''}; "
                              "choose another --out or pass --force to overwrite it")
    parent = next(folder for folder in (out, *out.parents) if folder.exists())
    if not parent.is_dir() or not os.access(parent if parent != out else out.parent, os.W_OK | os.X_OK):
        raise EvaluationError(f"{out_dir} cannot be written here ({parent} is not a folder this user can "
                              "write in); choose another --out")


def write_site_model(model_dir: Path, out_dir: Path, metadata: dict, force: bool = False,
                     files: dict[str, str] | None = None) -> None:
    """Write ``out_dir``: a copy of the model folder with the site's metadata.json and ``files`` (name ->
    text: the model card, site_metrics.json). It is written whole in a temporary folder beside it and
    renamed into place, so a failure (a full disk) leaves the earlier ``out_dir`` as it was, never a
    half-written model the app could serve. Refuses what :func:`check_out` refuses."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    check_out(model_dir, out_dir, force)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        shutil.copytree(model_dir, partial, dirs_exist_ok=True)
        for name, text in {"metadata.json": to_json(metadata) + "\n", **(files or {})}.items():
            (partial / name).write_text(text)
        _swap_into_place(partial, out_dir)
    except OSError as err:
        shutil.rmtree(partial, ignore_errors=True)
        raise EvaluationError(f"Could not write {out_dir} ({getattr(err, 'strerror', None) or err}); "
                              "it was left as it was. Free some space or choose another --out") from None


def _swap_into_place(partial: Path, out_dir: Path) -> None:
    """Rename the finished ``partial`` folder to ``out_dir``, the old one (empty, or overwritten with
    --force) moved aside first and removed after."""
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        out_dir.rename(old / out_dir.name)
    try:
        partial.rename(out_dir)
    except OSError:
        if old is not None:
            (old / out_dir.name).rename(out_dir)  # put the earlier folder back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

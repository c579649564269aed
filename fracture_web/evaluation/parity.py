"""Do the exported files answer as the SavedModel does? Every output of each file and of the
SavedModel on the same preprocessed images: the largest differences and each AUC; for a quantised
file, also what a reader would see change: sensitivity and specificity at each operating point,
the in-scope verdicts and the findings on the radiologists' outlines.

Needs TensorFlow for the SavedModel and each export's runtime; the files themselves are written by
``fracture_web.training.tflite`` (``scripts/export_tflite.py``) and ``fracture_web.onnx_export``
(``scripts/export_onnx.py``). :func:`time_calls` times the runtimes against one another.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..datasets import Records, load_split
from ..inference import FractureModel
from ..outlines import outlines_beside
from ..findings import FindingLevels
from ..probability import logit, recalibrate
from ..runtimes import Runner, calibrated, file_digest, parity_problem
from .calibration import IN_SCOPE_QUANTILE, fit_platt, matched_sensitivity_threshold
from .diagnostic_accuracy import confusion_rates, expected_calibration_error, roc_auc
from .localisation import findings_table, locate_records
from .scoring import BatchModel, batched_outputs

#: What a variant's report keeps of its findings on the outlined validation images.
FINDING_FIGURES = ("finding_hit_rate", "top_finding_hit_rate", "definite_precision", "definite_per_normal_image")


def output_differences(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray],
                       labels: np.ndarray) -> dict:
    """Largest difference of each of a variant's outputs from the SavedModel's, and its AUC."""
    differences = {f"max_{name}_diff": float(np.max(np.abs(candidate[name] - reference[name])))
                   for name in reference if name in candidate}
    return {**differences, "auc": roc_auc(labels, candidate["probability"])}


def verdict_figures(outputs: dict[str, np.ndarray], labels: np.ndarray, thresholds: dict[str, float]) -> dict:
    """Sensitivity and specificity at each operating point, and which images are in scope."""
    rates = {name: confusion_rates(labels, outputs["probability"], threshold) for name, threshold in thresholds.items()}
    return {"operating_points": {name: {key: rate[key] for key in ("sensitivity", "specificity")}
                                 for name, rate in rates.items()},
            "in_scope": (outputs["atypicality"] <= 1.0).tolist() if "atypicality" in outputs else None}


class ServedCall:
    """A runtime's bare call with the file's own calibration (``calibration``, a quantised file's)
    and the model's site re-fit, as ``FractureModel.outputs`` gives it, so an export is scored
    exactly as the app would serve it."""

    def __init__(self, run: Callable[[np.ndarray], dict[str, np.ndarray]], model: FractureModel,
                 calibration: dict | None = None) -> None:
        self.run, self.site_platt, self.calibration = run, model.site_platt, calibration

    def outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = calibrated(self.run(batch.astype(np.float32, copy=False)), self.calibration)
        if self.site_platt:
            outputs["probability"] = recalibrate(outputs["probability"], *self.site_platt)
        return outputs


def finding_figures(model: BatchModel, reference: FractureModel, records: Records, data_dir: Path | None,
                    thresholds: dict[str, float]) -> dict | None:
    """``FINDING_FIGURES`` of ``findings_table`` on the outlined images of ``records`` when ``model``
    answers with ``reference``'s finding levels and box scale at ``thresholds``; None where
    ``data_dir`` has no outlines or the model no finding levels."""
    outlines = outlines_beside(data_dir) if data_dir is not None else None
    if outlines is None or reference.finding_levels is None:
        return None
    located = locate_records(records, outlines, Path(data_dir), model, reference.input_size, reference.box_scale)
    levels = FindingLevels(reference.finding_levels.definite, reference.finding_levels.possible, min(thresholds.values()))
    table = findings_table(located, levels, thresholds[reference.default_operating_point], reference.box_scale)
    return {name: table[name] for name in FINDING_FIGURES}


def check_runtime_parity(model_dir: Path, records: Records, data_dir: Path | None,
                         candidates: dict[str, tuple[str, Runner]], quantised: frozenset[str] = frozenset(),
                         batch_size: int = 16) -> dict:
    """The parity report of exports (``{variant: (file name, bare call)}``) against the SavedModel in
    ``model_dir`` on ``records`` (of ``data_dir``; unreadable images left out): per variant the
    file's name and SHA-256 (what the ``auto`` backend checks before serving it), the largest
    difference of each output and the AUC, and for the ``quantised`` variants the verdicts and
    findings beside the SavedModel's (:func:`verdict_figures`, :func:`finding_figures`) and whether
    they pass (``runtimes.parity_problem``); quantised files that do not pass are removed."""
    reference = FractureModel(model_dir, backend="tensorflow")
    split = load_split(records, reference.input_size)
    expected = batched_outputs(reference, split.images, batch_size)
    figures = verdict_figures(expected, split.labels, reference.thresholds)
    report = {"model_version": reference.version, "images": len(split.labels),
              "savedmodel_auc": roc_auc(split.labels, expected["probability"]),
              "savedmodel_operating_points": figures["operating_points"], "variants": {}}
    if quantised:
        report["savedmodel_findings"] = finding_figures(reference, reference, split.records, data_dir,
                                                        reference.thresholds)
    for variant, (file_name, run) in candidates.items():
        outputs = batched_outputs(ServedCall(run, reference), split.images, batch_size)
        checked = {"file": file_name, "sha256": file_digest(Path(model_dir) / file_name),
                   **output_differences(expected, outputs, split.labels)}
        if variant in quantised:
            calibration = fit_file_calibration(outputs, split.labels, {
                name: point["sensitivity"] for name, point in figures["operating_points"].items()})
            served = ServedCall(run, reference, calibration)
            own = verdict_figures(calibrated(outputs, calibration), split.labels, calibration["thresholds"])
            checked |= {"calibration": calibration, **quantised_figures(own, figures, finding_figures(
                served, reference, split.records, data_dir, calibration["thresholds"]))}
            problem = parity_problem(checked, report)
            checked |= {"accepted": problem is None, "problem": problem}
            if problem is not None:
                (Path(model_dir) / file_name).unlink()
        report["variants"][variant] = checked
    return report


def fit_file_calibration(outputs: dict[str, np.ndarray], labels: np.ndarray, sensitivities: dict[str, float]) -> dict:
    """A quantised file's own calibration on its validation ``outputs``: Platt scaling on the logit of
    its probability (training's fit); at each operating point the highest threshold at which it finds
    as many of the fractured images as the SavedModel does there (``sensitivities``), so that a
    reader's chance of a missed fracture stays the same and its specificity shows what it costs;
    and the in-scope distance's scale that flags the same share of the images (``IN_SCOPE_QUANTILE``).
    With the re-calibrated probability's expected calibration error."""
    slope, intercept = fit_platt(logit(outputs["probability"]), labels)
    probs = recalibrate(outputs["probability"], slope, intercept)  # as served, to the last bit
    thresholds = {name: matched_sensitivity_threshold(labels, probs, sensitivity)
                  for name, sensitivity in sensitivities.items()}
    scale = float(np.quantile(outputs["atypicality"], IN_SCOPE_QUANTILE)) if "atypicality" in outputs else 1.0
    return {"platt": [slope, intercept], "thresholds": thresholds, "scope_scale": scale,
            "ece": expected_calibration_error(labels, probs)}


def quantised_figures(own: dict, reference: dict, findings: dict | None) -> dict:
    """What a quantised variant's report adds: its sensitivity and specificity at each operating point,
    the share of images whose in-scope verdict it shares with the SavedModel, and its findings."""
    agreement = (None if own["in_scope"] is None or reference["in_scope"] is None
                 else float(np.mean(np.equal(own["in_scope"], reference["in_scope"]))))
    return {"quantised": True, "operating_points": own["operating_points"], "in_scope_agreement": agreement,
            "findings": findings}


def time_calls(calls: dict[str, Runner], image: np.ndarray, rounds: int = 30) -> dict[str, float]:
    """Each call's p50 in milliseconds on one image, the calls taking turns round by round (after
    three untimed rounds) so that a busy moment of the machine falls on all alike."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for round_number in range(-3, rounds):
        for name, call in calls.items():
            started = time.perf_counter()
            call(image[np.newaxis])
            if round_number >= 0:
                times[name].append(time.perf_counter() - started)
    return {name: float(np.median(seconds) * 1000) for name, seconds in times.items()}

"""Do the TensorFlow Lite files answer as the SavedModel does? Every output of each file and of
the SavedModel on the same preprocessed images: the largest differences, and each AUC.

Needs TensorFlow for the SavedModel and ``ai-edge-litert`` for the files; the files themselves
are written by ``fracture_web.training.tflite`` (``scripts/export_tflite.py`` does both).
:func:`check_runtime_parity` does the same for exports served by another runtime (ONNX Runtime,
``fracture_web.onnx_export``), with each one's findings' hit rate beside its AUC.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..datasets import Records, load_split
from ..inference import FractureModel
from ..outlines import outlines_beside
from ..probability import recalibrate
from .diagnostic_accuracy import roc_auc
from .localisation import findings_table, locate_records
from .scoring import BatchModel, batched_outputs


def output_differences(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray],
                       labels: np.ndarray) -> dict:
    """Largest difference of each of a variant's outputs from the SavedModel's, and its AUC."""
    differences = {f"max_{name}_diff": float(np.max(np.abs(candidate[name] - reference[name])))
                   for name in reference if name in candidate}
    return {**differences, "auc": roc_auc(labels, candidate["probability"])}


def check_parity(model_dir: Path, records: Records, tflite_files: dict[str, str], batch_size: int = 16) -> dict:
    """The parity report of each ``{variant: file name}`` in ``model_dir`` against its SavedModel:
    per variant the file's name and SHA-256 (what the ``auto`` backend checks before serving it),
    the largest difference of each output and the AUC.

    The images go through the app's preprocessing once; unreadable ones are left out.
    """
    reference = FractureModel(model_dir, backend="tensorflow")
    split = load_split(records, reference.input_size)
    expected = batched_outputs(reference, split.images, batch_size)
    report = {"model_version": reference.version, "images": len(split.labels),
              "savedmodel_auc": roc_auc(split.labels, expected["probability"]), "variants": {}}
    for variant, file_name in tflite_files.items():
        lite = FractureModel(model_dir, backend="litert", tflite_file=file_name)
        digest = hashlib.sha256((Path(model_dir) / file_name).read_bytes()).hexdigest()
        report["variants"][variant] = {"file": file_name, "sha256": digest, **output_differences(
            expected, batched_outputs(lite, split.images, batch_size), split.labels)}
    return report


class ServedCall:
    """A runtime's bare call with the model's own recalibration, as ``FractureModel.outputs`` gives it,
    so an export is scored exactly as the app would serve it."""

    def __init__(self, run: Callable[[np.ndarray], dict[str, np.ndarray]], model: FractureModel) -> None:
        self.run, self.site_platt = run, model.site_platt

    def outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.run(batch.astype(np.float32, copy=False))
        if self.site_platt:
            outputs["probability"] = recalibrate(outputs["probability"], *self.site_platt)
        return outputs


def finding_hit_rate(model: BatchModel, reference: FractureModel, records: Records, data_dir: Path) -> float | None:
    """The share of outlined fractured images with a finding on an outline (``findings_table``'s
    ``finding_hit_rate``) when ``model`` answers with ``reference``'s finding levels and threshold;
    None where ``data_dir`` has no outlines or the model no finding levels."""
    outlines = outlines_beside(data_dir)
    if outlines is None or reference.finding_levels is None:
        return None
    located = locate_records(records, outlines, Path(data_dir), model, reference.input_size, reference.box_scale)
    threshold = reference.thresholds[reference.default_operating_point]
    return findings_table(located, reference.finding_levels, threshold, reference.box_scale)["finding_hit_rate"]


def check_runtime_parity(model_dir: Path, records: Records, data_dir: Path,
                         candidates: dict[str, tuple[str, Callable[[np.ndarray], dict[str, np.ndarray]]]],
                         batch_size: int = 16) -> dict:
    """The parity report of exports served by other runtimes (``{variant: (file name, bare call)}``)
    against the SavedModel in ``model_dir``, as :func:`check_parity` writes it for .tflite files, plus
    each one's findings' hit rate on the outlined images of ``data_dir`` (None without outlines)."""
    reference = FractureModel(model_dir, backend="tensorflow")
    split = load_split(records, reference.input_size)
    expected = batched_outputs(reference, split.images, batch_size)
    report = {"model_version": reference.version, "images": len(split.labels),
              "savedmodel_auc": roc_auc(split.labels, expected["probability"]),
              "savedmodel_finding_hit_rate": finding_hit_rate(reference, reference, split.records, data_dir),
              "variants": {}}
    for variant, (file_name, run) in candidates.items():
        served = ServedCall(run, reference)
        digest = hashlib.sha256((Path(model_dir) / file_name).read_bytes()).hexdigest()
        report["variants"][variant] = {
            "file": file_name, "sha256": digest,
            **output_differences(expected, batched_outputs(served, split.images, batch_size), split.labels),
            "finding_hit_rate": finding_hit_rate(served, reference, split.records, data_dir)}
    return report

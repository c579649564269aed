"""Do the TensorFlow Lite files answer as the SavedModel does? Every output of each file and of
the SavedModel on the same preprocessed images: the largest differences, and each AUC.

Needs TensorFlow for the SavedModel and ``ai-edge-litert`` for the files; the files themselves
are written by ``fracture_web.training.tflite`` (``scripts/export_tflite.py`` does both).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..datasets import Records, load_split
from ..inference import FractureModel
from .diagnostic_accuracy import roc_auc
from .scoring import batched_outputs


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

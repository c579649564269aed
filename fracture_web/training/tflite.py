"""The shipped SavedModel as TensorFlow Lite files for LiteRT.

The conversion keeps the ``serving_default`` signature with every output, so the app serves
either file through the same code. Needs TensorFlow; the files' parity with the SavedModel is
checked by :mod:`fracture_web.evaluation.parity`, and :func:`export_tflite` does both, as training's
export and ``scripts/export_tflite.py`` need.
"""
from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from ..datasets import Records
from ..evaluation.parity import check_parity
from ..runtimes import PARITY_FILE, SIGNATURE

#: Variants: float32 (parity with the SavedModel), float16 weights (half the file),
#: dynamic-range int8 weights (a quarter; slower on x86 and further from the SavedModel).
VARIANTS = ("float32", "float16", "int8")


def tflite_name(variant: str) -> str:
    """File name of a variant inside the model folder, e.g. ``model_float16.tflite``."""
    return f"model_{variant}.tflite"


def convert(model_dir: Path, variant: str) -> bytes:
    """The SavedModel's ``serving_default`` as a ``.tflite`` flatbuffer for one image at a time."""
    with tempfile.TemporaryDirectory() as staging:
        converter = frozen_converter(model_dir, Path(staging))
        if variant != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # alone: dynamic-range int8 weights
        if variant == "float16":
            converter.target_spec.supported_types = [tf.float16]
        return converter.convert()


def frozen_converter(model_dir: Path, staging: Path) -> tf.lite.TFLiteConverter:
    """A TFLite converter of the SavedModel's ``serving_default`` for one image at a time, staged in
    ``staging`` (which must outlive the conversion).

    The signature reads its weights from resource variables, which TFLite would keep as
    (uninitialised) variables; freezing them to constants first gives a self-contained graph
    that LiteRT's XNNPACK delegate runs whole.
    """
    loaded = tf.saved_model.load(str(model_dir))
    signature = loaded.signatures[SIGNATURE]
    frozen = convert_variables_to_constants_v2(signature)
    size = signature.structured_input_signature[1]["image"].shape[1]

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 1], tf.float32, name="image")])
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        # The frozen function returns the outputs flattened in the signature's (sorted) key order.
        return tf.nest.pack_sequence_as(signature.structured_outputs, frozen(image))

    module = tf.Module()
    module.serve = serve
    tf.saved_model.save(module, str(staging), signatures={SIGNATURE: serve})
    return tf.lite.TFLiteConverter.from_saved_model(str(staging), signature_keys=[SIGNATURE])


def export_tflite(model_dir: Path, variants: Sequence[str], records: Records | None = None) -> dict | None:
    """Write ``model_<variant>.tflite`` beside the SavedModel for each variant; with ``records``
    (the validation images), check each file against the SavedModel on them and write the report
    to ``PARITY_FILE``, which is what lets the ``auto`` backend serve a file. Returns the report."""
    files = {variant: tflite_name(variant) for variant in variants}
    for variant, name in files.items():
        (Path(model_dir) / name).write_bytes(convert(model_dir, variant))
    if records is None:
        return None
    report = check_parity(model_dir, records, files)
    (Path(model_dir) / PARITY_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report

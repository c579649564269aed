"""The shipped SavedModel as TensorFlow Lite files for LiteRT.

The conversion keeps the ``serving_default`` signature with all three outputs (probability,
heatmap, atypicality), so the app serves either file through the same code. Needs TensorFlow;
the files' parity with the SavedModel is checked by :mod:`fracture_web.evaluation.parity`.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from ..runtimes import SIGNATURE

#: Variants: float32 (parity with the SavedModel), float16 weights (half the file),
#: dynamic-range int8 weights (a quarter; slower on x86 and further from the SavedModel).
VARIANTS = ("float32", "float16", "int8")


def tflite_name(variant: str) -> str:
    """File name of a variant inside the model folder, e.g. ``model_float16.tflite``."""
    return f"model_{variant}.tflite"


def convert(model_dir: Path, variant: str) -> bytes:
    """The SavedModel's ``serving_default`` as a ``.tflite`` flatbuffer for one image at a time.

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
    with tempfile.TemporaryDirectory() as staging:
        tf.saved_model.save(module, staging, signatures={SIGNATURE: serve})
        converter = tf.lite.TFLiteConverter.from_saved_model(staging, signature_keys=[SIGNATURE])
        if variant != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # alone: dynamic-range int8 weights
        if variant == "float16":
            converter.target_spec.supported_types = [tf.float16]
        return converter.convert()

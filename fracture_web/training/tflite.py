"""The shipped SavedModel as TensorFlow Lite files for LiteRT.

The conversion keeps the ``serving_default`` signature with every output, so the app serves
any file through the same code. Needs TensorFlow; the files' parity with the SavedModel is
checked by :mod:`fracture_web.evaluation.parity`, and :func:`export_tflite` does both, as training's
export and ``scripts/export_tflite.py`` need.
"""
from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from ..datasets import Records, load_split
from ..evaluation.model_card import render_folder
from ..evaluation.parity import check_runtime_parity, time_calls
from ..runtimes import PARITY_FILE, SIGNATURE, available_cores, load_litert

#: Variants: float32 (parity with the SavedModel), float16 weights (half the file), int8 (weights and
#: activations: a quarter of the file and about half the call on x86, served only where its parity
#: report vouches for what a reader would see).
VARIANTS = ("float32", "float16", "int8")
#: Variants judged by what a reader sees rather than by their probabilities' distance.
QUANTISED = frozenset({"int8"})
#: The ops after the networks (the heads' arithmetic: the logits' slicing, calibration, map scaling,
#: resizing, the in-scope distance) that stay float32 in the int8 file. Quantised, the heatmap's
#: division by its peak fails on maps that round to zero, and the in-scope distance and the logits
#: are clipped to the range the calibration images reached.
FLOAT_OPS = ("DIV", "LOGISTIC", "MAX", "REDUCE_MAX", "RESIZE_BILINEAR", "SUB", "MUL", "ADD", "ADD_N", "MEAN", "SUM",
             "SQRT", "BATCH_MATMUL", "FULLY_CONNECTED", "CONCATENATION", "RESHAPE", "STRIDED_SLICE", "SELECT_V2",
             "EQUAL")
#: Every how-manyth training image calibrates the int8 file's activation ranges.
CALIBRATION_STEP = 25


def tflite_name(variant: str) -> str:
    """File name of a variant inside the model folder, e.g. ``model_float16.tflite``."""
    return f"model_{variant}.tflite"


def convert(model_dir: Path, variant: str, calibration: np.ndarray | None = None) -> bytes:
    """The SavedModel's ``serving_default`` as a ``.tflite`` flatbuffer for one image at a time;
    int8 needs ``calibration`` images (model inputs) to set its activations' ranges."""
    with tempfile.TemporaryDirectory() as staging:
        converter = frozen_converter(model_dir, Path(staging))
        if variant == "float32":
            return converter.convert()
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if variant == "float16":
            converter.target_spec.supported_types = [tf.float16]
            return converter.convert()
        if calibration is None:
            raise ValueError("an int8 file needs calibration images")
        return _int8(converter, calibration)


def _int8(converter: tf.lite.TFLiteConverter, calibration: np.ndarray) -> bytes:
    """Post-training int8 quantisation calibrated on ``calibration``, ``FLOAT_OPS`` kept in float32."""
    def samples() -> Iterator[list[np.ndarray]]:
        return ([calibration[i:i + 1]] for i in range(len(calibration)))

    converter.representative_dataset = samples
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(FLOAT_OPS))
    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=samples,
                                                          debug_options=options)
    return debugger.get_nondebug_quantized_model()


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


def export_tflite(model_dir: Path, variants: Sequence[str], val: Records | None = None,
                  train: Records | None = None, data_dir: Path | None = None) -> dict | None:
    """Write ``model_<variant>.tflite`` beside the SavedModel for each variant (int8 calibrated on
    every ``CALIBRATION_STEP``-th image of the training records ``train``); with ``val`` (the
    validation records of ``data_dir``), check each file against the SavedModel on them, remove a
    quantised file that falls short, time the files kept interleaved, and write the report to
    ``PARITY_FILE``, which is what lets the ``auto`` backend serve a file. Returns the report."""
    model_dir = Path(model_dir)
    size = int(json.loads((model_dir / "metadata.json").read_text())["input_size"])
    calibration = None
    if QUANTISED & set(variants):
        if train is None:
            raise ValueError("an int8 file is calibrated on training images: give the training records")
        calibration = load_split(train.subset(np.arange(len(train)) % CALIBRATION_STEP == 0), size).images
    files = {variant: tflite_name(variant) for variant in variants}
    for variant, name in files.items():
        (model_dir / name).write_bytes(convert(model_dir, variant, calibration))
    if val is None:
        return None
    threads = available_cores()
    report = check_runtime_parity(model_dir, val, data_dir, {
        variant: (name, load_litert(model_dir / name, threads)) for variant, name in files.items()},
        quantised=QUANTISED & set(variants))
    kept = {name: load_litert(model_dir / name, threads) for name in files.values() if (model_dir / name).is_file()}
    report["call_ms"] = time_calls(kept, load_split(val.subset(np.arange(len(val)) == 0), size).images[0])
    report["threads"] = threads
    (model_dir / PARITY_FILE).write_text(json.dumps(report, indent=2) + "\n")
    if (model_dir / "metrics.json").is_file():  # the card tells which files may be served, and how they do
        (model_dir / "MODEL_CARD.md").write_text(render_folder(model_dir))
    return report

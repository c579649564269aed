"""The shipped SavedModel as ONNX files for ONNX Runtime, checked against it and timed beside it.

The float32 file keeps the ``serving_default`` signature's input (``image``) and every output by
name, with a batch of any size. The int8 file (dynamic-range: int8 weights) is kept only where what
a reader sees on the validation images stays close to the SavedModel's (``runtimes.parity_problem``). The report,
``ONNX_PARITY_FILE``, also holds each runtime's call as timed interleaved on this machine: what the
``auto`` backend ranks the runtimes by. Needs TensorFlow, tf2onnx and onnxruntime
(requirements-export.txt).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .datasets import Records, load_images
from .evaluation.parity import check_runtime_parity, time_calls
from .runtimes import (FLOAT_TFLITE_FILE, ONNX_FILE, ONNX_PARITY_FILE, SAVEDMODEL_CALL, SIGNATURE, available_cores,
                       load_litert, load_onnx, load_savedmodel)

log = logging.getLogger(__name__)

#: The quantised file, written beside ``ONNX_FILE`` and kept only when it passes.
INT8_FILE = "model_int8.onnx"
#: The ONNX operator set written (ONNX Runtime runs it; tf2onnx converts every op of the network to it).
OPSET = 17


def convert(model_dir: Path) -> bytes:
    """The SavedModel's ``serving_default`` as an ONNX model, with its weights frozen to constants
    (as for TensorFlow Lite) and the same input and output names."""
    import tensorflow as tf
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    loaded = tf.saved_model.load(str(model_dir))  # kept while converting: the signature reads its variables
    signature = loaded.signatures[SIGNATURE]
    frozen = convert_variables_to_constants_v2(signature)
    size = signature.structured_input_signature[1]["image"].shape[1]
    spec = (tf.TensorSpec([None, size, size, 1], tf.float32, name="image"),)

    @tf.function(input_signature=spec)
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        # The frozen function returns the outputs flattened in the signature's (sorted) key order.
        return tf.nest.pack_sequence_as(signature.structured_outputs, frozen(image))

    model, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=OPSET)
    return whole_pixel_resizes(model).SerializeToString()


def whole_pixel_resizes(model):
    """The ONNX model with each constant-scale ``Resize`` giving the size TensorFlow resized to.

    tf2onnx writes a resize to a fixed size as float scales (an ensemble member of 320 px under a
    384-px input: 320/384, 0.8333333 in float32), and ONNX takes the output size as the input
    size times the scale, truncated: 319, a pixel short, and ONNX Runtime refuses the graph. Each
    such scale is raised to the nearest float32 that gives the intended size (the sampling moves by
    under a millionth of a pixel); a scale shared with other nodes is copied first.
    """
    import onnx
    from onnx import numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {info.name: [dim.dim_value for dim in info.type.tensor_type.shape.dim]
              for info in (*inferred.graph.value_info, *inferred.graph.input)}
    constants = {tensor.name: tensor for tensor in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Resize" or len(node.input) < 3 or node.input[2] not in constants:
            continue
        scales = numpy_helper.to_array(constants[node.input[2]]).astype(np.float32)
        exact = np.array([_exact_scale(scale, dim) for scale, dim in zip(scales, shapes.get(node.input[0], []))],
                         np.float32)
        if len(exact) == len(scales) and not np.array_equal(exact, scales):
            name = f"{node.name}_whole_pixel_scales"
            model.graph.initializer.append(numpy_helper.from_array(exact, name))
            node.input[2] = name
    used = {name for node in model.graph.node for name in node.input}
    for tensor in [tensor for name, tensor in constants.items() if name not in used]:
        model.graph.initializer.remove(tensor)
    return model


def _exact_scale(scale: np.float32, dim: int) -> np.float32:
    """The smallest float32 from ``scale`` up whose product with ``dim``, in double precision and
    truncated as ONNX's shape inference takes it, is the rounded size ``dim * scale`` meant
    (``scale`` itself for an unknown ``dim``)."""
    if dim <= 0:
        return scale
    target = round(dim * float(scale))
    while np.floor(dim * float(scale)) < target:
        scale = np.nextafter(scale, np.float32(np.inf))
    return scale


def quantise(float_path: Path, int8_path: Path) -> None:
    """Write the dynamic-range int8 version of ``float_path``: int8 weights (per channel), activations
    quantised per call. Static (calibrated) quantisation was tried: ONNX Runtime's MinMax calibrator
    keeps every activation of every calibration image in memory, gigabytes at 384 px."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(float_path), str(int8_path), per_channel=True, weight_type=QuantType.QInt8)


def timed_calls(model_dir: Path, files: list[str], image: np.ndarray, threads: int) -> dict[str, float]:
    """The p50 of the SavedModel's call, the float LiteRT file's where there is one, and each ONNX
    file's, timed interleaved (:func:`time_calls`) with the cores the app would give them."""
    calls = {SAVEDMODEL_CALL: load_savedmodel(model_dir, threads),
             **{file: load_onnx(model_dir / file, threads) for file in files}}
    if (model_dir / FLOAT_TFLITE_FILE).is_file():
        calls[FLOAT_TFLITE_FILE] = load_litert(model_dir / FLOAT_TFLITE_FILE, threads)
    return time_calls(calls, image)


def export_onnx(model_dir: Path, val: Records, data_dir: Path, int8: bool = True) -> dict:
    """Write ``ONNX_FILE`` (and with ``int8``, ``INT8_FILE`` where it passes) beside the
    SavedModel, check them on the validation records ``val`` of ``data_dir``, time each runtime, and
    write the report to ``ONNX_PARITY_FILE``. Returns the report."""
    model_dir = Path(model_dir)
    threads, size = available_cores(), int(json.loads((model_dir / "metadata.json").read_text())["input_size"])
    (model_dir / ONNX_FILE).write_bytes(convert(model_dir))
    files = {"float32": ONNX_FILE}
    if int8:
        quantise(model_dir / ONNX_FILE, model_dir / INT8_FILE)
        files["int8"] = INT8_FILE
    report = check_runtime_parity(model_dir, val, data_dir, {
        variant: (file, load_onnx(model_dir / file, threads)) for variant, file in files.items()},
        quantised=frozenset(files) - {"float32"})
    for variant in report["variants"].values():
        if variant.get("problem"):
            log.warning("%s export refused: %s", variant["file"], variant["problem"])
    kept = [v["file"] for v in report["variants"].values() if (model_dir / v["file"]).is_file()]
    image = load_images(val.subset(np.arange(len(val)) == 0), size)[0][0]  # the first validation image
    report["call_ms"] = timed_calls(model_dir, kept, image, threads)
    report["threads"] = threads
    (model_dir / ONNX_PARITY_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report

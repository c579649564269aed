"""What would an int8 model call cost and change? A measurement for a later issue, not a served file.

    python -m bench.quantised_call --model model/ --reference OLD_LITE0_MODEL --out benchmarks/quantised-call.json

The served SavedModel is converted to a ``.tflite`` file with int8 weights and activations (the
converter's post-training quantisation, calibrated on every 25th training image), except for the
heads' arithmetic after the networks (division, sigmoid, means, resizing, the in-scope distance),
which stays float32: quantised, the heatmap's division by its peak fails on maps that round to
zero. The float32 ``.tflite`` the app serves, the int8 file and, with ``--reference``, another
model folder's float32 file are called interleaved through LiteRT on validation images (p50 in
ms); then every validation image goes through the float32 and the int8 file: their AUC, the largest
and median difference in probability, and the correlation of their fracture maps. The int8
probability is the float32 model's calibration applied to quantised logits: a served int8 file
would be calibrated and checked on its own outputs.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.compare_models import interleaved_calls
from bench.report import emit
from fracture_web.config import DEFAULT_TFLITE_FILE, PROJECT_ROOT
from fracture_web.datasets import Records, load_split, read_records
from fracture_web.evaluation.diagnostic_accuracy import roc_auc
from fracture_web.inference import read_metadata
from fracture_web.runtimes import available_cores, load_litert
from fracture_web.training.splits import split_train_val

DATA = PROJECT_ROOT.parent / "shared" / "data" / "fracatlas"
FLOAT_OPS = ["DIV", "LOGISTIC", "MAX", "REDUCE_MAX", "RESIZE_BILINEAR", "SUB", "MUL", "ADD", "MEAN", "SUM",
             "SQRT", "BATCH_MATMUL", "FULLY_CONNECTED", "CONCATENATION"]


def int8_tflite(model_dir: Path, representative: np.ndarray) -> bytes:
    """The SavedModel's signature as int8 ``.tflite`` bytes, ``FLOAT_OPS`` kept in float32."""
    import tensorflow as tf

    from fracture_web.training.tflite import frozen_converter

    def samples():
        return ([representative[i:i + 1]] for i in range(len(representative)))

    with tempfile.TemporaryDirectory() as staging:
        converter = frozen_converter(model_dir, Path(staging))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = samples
        options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=FLOAT_OPS)
        debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=samples,
                                                              debug_options=options)
        return debugger.get_nondebug_quantized_model()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=PROJECT_ROOT / "model")
    parser.add_argument("--reference", type=Path, help="another model folder whose float32 call to time alongside")
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, help="write the report here as JSON")
    args = parser.parse_args(argv)
    metadata = read_metadata(args.model)
    train, val = split_train_val(read_records(args.data_dir), seed=metadata["training"]["config"]["seed"])
    size = metadata["input_size"]
    representative = load_split(Records(train.paths[::25], train.labels[::25]), size).images
    with tempfile.TemporaryDirectory() as folder:
        int8 = Path(folder) / "model_int8.tflite"
        int8.write_bytes(int8_tflite(args.model, representative))
        threads = available_cores()
        runners = {"float32": load_litert(args.model / DEFAULT_TFLITE_FILE, threads),
                   "int8": load_litert(int8, threads)}
        if args.reference:
            runners["reference float32"] = load_litert(args.reference / DEFAULT_TFLITE_FILE, threads)
        images = load_split(val, size)
        sample = [image[np.newaxis] for image in images.images[:8]]
        calls = interleaved_calls(runners, {name: sample for name in runners}, args.rounds)
        timing = {name: round(float(np.median(ms)), 2) for name, ms in calls.items()}
        outputs = {name: runners[name](images.images) for name in ("float32", "int8")}
    difference = np.abs(outputs["int8"]["probability"] - outputs["float32"]["probability"])
    result = {
        "model": metadata["model_version"], "machine": {"cpu": platform.machine(), "cores_usable": available_cores()},
        "runtime": f"litert, {threads} threads", "image_size": size, "p50_ms": timing,
        "reference": read_metadata(args.reference)["model_version"] if args.reference else None,
        "validation_images": int(len(images.labels)),
        "auc": {name: round(float(roc_auc(images.labels, out["probability"])), 4) for name, out in outputs.items()},
        "probability_difference": {"max": round(float(difference.max()), 4), "median": round(float(np.median(difference)), 4)},
        "fracture_map_correlation": round(float(np.corrcoef(outputs["int8"]["fracture_map"].ravel(),
                                                            outputs["float32"]["fracture_map"].ravel())[0, 1]), 4),
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

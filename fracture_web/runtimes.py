"""Run the exported network: the SavedModel through TensorFlow, or a ``.tflite`` file through LiteRT.

Both take a (B, S, S, 1) float32 batch and return ``{"probability", "heatmap", "atypicality", ...}`` as
numpy arrays. Each runtime is imported only when chosen, so a slim install (``requirements-slim.txt``,
LiteRT only) never needs TensorFlow. No Flask.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: The runtimes a model can be served with (the ``BACKEND`` setting); ``auto`` picks one per model folder.
BACKENDS = ("auto", "tensorflow", "litert")
#: The signature both runtimes call, as exported by ``fracture_web.training.export``.
SIGNATURE = "serving_default"
#: The report, beside the .tflite files, of how each answers against the SavedModel
#: (``fracture_web.evaluation.parity``, written by training's export and scripts/export_tflite.py).
PARITY_FILE = "tflite_parity.json"
#: Largest probability difference from the SavedModel on the validation images for which a .tflite
#: file may stand in for it (the float32 export differs by about 5e-6).
PARITY_TOLERANCE = 1e-3

Runner = Callable[[np.ndarray], dict[str, np.ndarray]]


class ModelLoadError(RuntimeError):
    """The model directory is missing, incomplete or unreadable (or its runtime is not installed)."""


def available_cores(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPU cores this process may use: the cores it may run on, capped by a container's CPU quota
    (``docker run --cpus 2`` on a 64-core host means 2; more threads than that only wait their turn)."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return max(1, min(cores, math.ceil(int(quota) / int(period))))


def resolve_backend(backend: str, model_dir: Path, tflite_file: str, model_version: str) -> str:
    """The runtime to serve with: ``backend`` itself, or for ``auto`` LiteRT where the .tflite file is
    a verified stand-in for this SavedModel (:func:`stand_in_problem`) and LiteRT is installed, else TensorFlow.

    Under gunicorn on 2 cores, LiteRT (XNNPACK) answered sooner than TensorFlow in every case of an
    interleaved comparison (docs/performance.md) with a quarter of the memory per worker, and the same
    answers to 1e-5."""
    if backend != "auto":
        return backend
    problem = stand_in_problem(model_dir, tflite_file, model_version)
    if problem is None:
        if importlib.util.find_spec("ai_edge_litert") is not None:
            return "litert"
        problem = "LiteRT (ai-edge-litert) is not installed"
    log.info("serving the SavedModel through TensorFlow: %s", problem)
    return "tensorflow"


def stand_in_problem(model_dir: Path, tflite_file: str, model_version: str) -> str | None:
    """Why ``tflite_file`` may not stand in for the SavedModel in ``model_dir``, or None when it may:
    the parity report names this model version and this very file (by its SHA-256), and its
    probabilities stayed within ``PARITY_TOLERANCE`` of the SavedModel's."""
    path = Path(model_dir) / tflite_file
    try:
        report = json.loads((Path(model_dir) / PARITY_FILE).read_text())
        checked = next(v for v in report["variants"].values() if v.get("file") == tflite_file)
        if report["model_version"] != model_version:
            return f"{PARITY_FILE} is about model {report['model_version']}, not {model_version}"
        if checked["sha256"] != hashlib.sha256(path.read_bytes()).hexdigest():
            return f"{tflite_file} changed after its parity check"
        if not checked["max_probability_diff"] <= PARITY_TOLERANCE:
            return f"{tflite_file} differs from the SavedModel by {checked['max_probability_diff']:.2g} in probability"
    except StopIteration:
        return f"{PARITY_FILE} does not report on {tflite_file}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        return f"no usable parity report for {tflite_file} ({err.__class__.__name__}: {err})"
    return None


def load_savedmodel(model_dir: Path, threads: int) -> Runner:
    """The SavedModel's ``serving_default``; ``threads`` cores work on one call (intra-op).

    Latency first: a clinic sends few images at once, so one image uses every core and
    TensorFlow runs one op at a time (inter-op 1) instead of queuing ops from a second pool.
    """
    import tensorflow as tf  # imported here so the LiteRT backend never loads TensorFlow

    _set_tensorflow_threads(tf, threads)
    try:
        serve = tf.saved_model.load(str(model_dir)).signatures[SIGNATURE]
    except (OSError, ValueError, KeyError, tf.errors.OpError) as err:
        raise ModelLoadError(f"SavedModel in {model_dir} cannot be loaded: {err}") from err

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = serve(image=tf.constant(batch, tf.float32))
        return {name: tensor.numpy() for name, tensor in outputs.items()}
    return run


def _set_tensorflow_threads(tf, threads: int) -> None:
    """Set TensorFlow's thread pools; they are fixed once TensorFlow has started, so a second
    model in the same process (tests) keeps the first one's settings."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        log.debug("TensorFlow already started; thread settings unchanged")


def load_litert(path: Path, threads: int) -> Runner:
    """The ``.tflite`` file's ``serving_default`` through LiteRT (XNNPACK on ``threads`` cores).

    A LiteRT interpreter is not thread-safe, so calls from gunicorn's threads take turns;
    each call already uses every core. The file takes one image per call; a batch is run image by image.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as err:
        raise ModelLoadError("The litert backend needs the ai-edge-litert package "
                               "(pip install -r requirements-slim.txt)") from err
    try:
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        runner = interpreter.get_signature_runner(SIGNATURE)
    except (OSError, ValueError, RuntimeError) as err:
        raise ModelLoadError(f"{path} cannot be loaded by LiteRT: {err}") from err
    lock = threading.Lock()

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = []
        for image in np.asarray(batch, np.float32):
            with lock:
                outputs.append(runner(image=image[np.newaxis]))  # copies of the output tensors
        return {name: np.concatenate([out[name] for out in outputs]) for name in outputs[0]}
    return run


"""Run the exported network: the SavedModel through TensorFlow, a ``.tflite`` file through LiteRT,
or an ``.onnx`` file through ONNX Runtime.

Each takes a (B, S, S, 1) float32 batch and return ``{"probability", "heatmap", "atypicality", ...}`` as
numpy arrays. Each runtime is imported only when chosen, so a slim install (``requirements-slim.txt``,
LiteRT and ONNX Runtime) never needs TensorFlow. No Flask.
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
BACKENDS = ("auto", "tensorflow", "litert", "onnx")
#: The signature both runtimes call, as exported by ``fracture_web.training.export``.
SIGNATURE = "serving_default"
#: The report, beside the .tflite files, of how each answers against the SavedModel
#: (``fracture_web.evaluation.parity``, written by training's export and scripts/export_tflite.py).
PARITY_FILE = "tflite_parity.json"
#: Largest probability difference from the SavedModel on the validation images for which a .tflite
#: file may stand in for it (the float32 export differs by about 5e-6).
PARITY_TOLERANCE = 1e-3
#: The report, beside the .onnx files, of how each answers against the SavedModel and how long each
#: runtime's call took on the machine that wrote it (``fracture_web.onnx_export``, scripts/export_onnx.py).
ONNX_PARITY_FILE = "onnx_parity.json"
#: The float32 ONNX export: what the ``onnx`` backend serves unless its report vouches for a faster file.
ONNX_FILE = "model.onnx"
#: A quantised (int8) variant may stand in where its AUC and its findings' hit rate on the validation
#: images stay this close to the SavedModel's (its probabilities differ by more than PARITY_TOLERANCE).
QUANTISED_AUC_TOLERANCE = 0.005
QUANTISED_HIT_RATE_TOLERANCE = 0.01
#: The key of the SavedModel's call among the timed calls of a parity report.
SAVEDMODEL_CALL = "savedmodel"

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
    """The runtime to serve with: ``backend`` itself, or for ``auto`` the fastest installed runtime
    whose file a parity report vouches for (:func:`stand_in_problem`), TensorFlow where none is
    (a vouched export gives the SavedModel's answers with a fraction of its memory, and needs no
    TensorFlow in a slim install).

    How fast each runtime is comes from ``ONNX_PARITY_FILE``: scripts/export_onnx.py times every
    runtime's call interleaved on one machine. Without it, LiteRT where it is vouched for: under
    gunicorn on 2 cores it answered sooner than TensorFlow in every case of an interleaved
    comparison (docs/performance.md) with a quarter of the memory per worker."""
    if backend != "auto":
        return backend
    model_dir = Path(model_dir)
    onnx = onnx_file(model_dir, model_version)
    candidates = {"litert": (tflite_file, stand_in_problem(model_dir, tflite_file, model_version)),
                  "onnx": (onnx, stand_in_problem(model_dir, onnx, model_version, ONNX_PARITY_FILE))}
    call_ms = _call_ms(model_dir, model_version)
    ranked = sorted(candidates, key=lambda name: call_ms.get(candidates[name][0], math.inf))
    for name in ranked:
        file, problem = candidates[name]
        if problem is None:
            if importlib.util.find_spec(RUNTIME_PACKAGES[name]) is not None:
                return name
            problem = f"{RUNTIME_PACKAGES[name]} is not installed"
        log.info("not serving %s through %s: %s", file, name, problem)
    return "tensorflow"


#: The package each runtime other than TensorFlow is imported from.
RUNTIME_PACKAGES = {"litert": "ai_edge_litert", "onnx": "onnxruntime"}


def _call_ms(model_dir: Path, model_version: str) -> dict[str, float]:
    """Each runtime's call in milliseconds (keyed by file, the SavedModel's by ``SAVEDMODEL_CALL``) as
    the ONNX parity report of this model version measured them; empty without one."""
    try:
        report = json.loads((model_dir / ONNX_PARITY_FILE).read_text())
        return {str(k): float(v) for k, v in report["call_ms"].items()} if report["model_version"] == model_version else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def onnx_file(model_dir: Path, model_version: str) -> str:
    """The ONNX file the ``onnx`` backend serves: of the files the ONNX parity report vouches for,
    the one whose call was fastest; ``ONNX_FILE`` without such a report."""
    try:
        report = json.loads((Path(model_dir) / ONNX_PARITY_FILE).read_text())
        files = [variant["file"] for variant in report["variants"].values()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ONNX_FILE
    vouched = [file for file in files if stand_in_problem(model_dir, file, model_version, ONNX_PARITY_FILE) is None]
    call_ms = _call_ms(Path(model_dir), model_version)
    return min(vouched, key=lambda file: call_ms.get(file, math.inf), default=ONNX_FILE)


def stand_in_problem(model_dir: Path, file: str, model_version: str, parity_file: str = PARITY_FILE) -> str | None:
    """Why ``file`` (a .tflite or .onnx export) may not stand in for the SavedModel in ``model_dir``,
    or None when it may: the parity report ``parity_file`` names this model version and this very
    file (by its SHA-256), and the file answered as the SavedModel did (:func:`parity_problem`)."""
    path = Path(model_dir) / file
    try:
        report = json.loads((Path(model_dir) / parity_file).read_text())
        checked = next(v for v in report["variants"].values() if v.get("file") == file)
        if report["model_version"] != model_version:
            return f"{parity_file} is about model {report['model_version']}, not {model_version}"
        if checked["sha256"] != hashlib.sha256(path.read_bytes()).hexdigest():
            return f"{file} changed after its parity check"
        return parity_problem(checked, report)
    except StopIteration:
        return f"{parity_file} does not report on {file}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        return f"no usable parity report for {file} ({err.__class__.__name__}: {err})"


def parity_problem(checked: dict, report: dict) -> str | None:
    """Why a variant's parity figures fall short, or None: a float export's probabilities within
    ``PARITY_TOLERANCE`` of the SavedModel's; a quantised one's AUC and findings' hit rate within
    ``QUANTISED_AUC_TOLERANCE`` and ``QUANTISED_HIT_RATE_TOLERANCE`` of the SavedModel's."""
    file = checked["file"]
    if not checked.get("quantised"):
        if not checked["max_probability_diff"] <= PARITY_TOLERANCE:
            return f"{file} differs from the SavedModel by {checked['max_probability_diff']:.2g} in probability"
        return None
    if not abs(checked["auc"] - report["savedmodel_auc"]) <= QUANTISED_AUC_TOLERANCE:
        return f"{file}'s AUC is {checked['auc']:.4f}, the SavedModel's {report['savedmodel_auc']:.4f}"
    if not abs(checked["finding_hit_rate"] - report["savedmodel_finding_hit_rate"]) <= QUANTISED_HIT_RATE_TOLERANCE:
        return (f"{file}'s findings hit {checked['finding_hit_rate']:.3f} of the fractures, "
                f"the SavedModel's {report['savedmodel_finding_hit_rate']:.3f}")
    return None


def load_runtime(model_dir: Path, backend: str, tflite_file: str, model_version: str, threads: int) -> Runner:
    """The call of ``backend`` (``tensorflow``, ``litert`` or ``onnx``) on ``model_dir``'s export;
    ``ModelLoadError`` when it cannot be loaded."""
    exports = {"litert": (tflite_file, "scripts/export_tflite.py", load_litert),
               "onnx": (onnx_file(model_dir, model_version), "scripts/export_onnx.py", load_onnx)}
    if backend not in exports:
        return load_savedmodel(model_dir, threads)
    file, script, load = exports[backend]
    path = Path(model_dir) / file
    if not path.is_file():
        raise ModelLoadError(f"No {backend} model at {path} (make one with {script})")
    return load(path, threads)


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


def load_onnx(path: Path, threads: int) -> Runner:
    """The ``.onnx`` file through ONNX Runtime's CPU provider, ``threads`` cores on one call (intra-op),
    its nodes run one at a time (sequential), as TensorFlow is run. A session may be called from
    several threads at once; it takes a batch of any size. Its threads do not spin waiting for the
    next call: spinning would take the cores from the other workers and from the rest of the request."""
    try:
        import onnxruntime
    except ImportError as err:
        raise ModelLoadError("The onnx backend needs the onnxruntime package "
                               "(pip install -r requirements.txt)") from err
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except (OSError, ValueError, RuntimeError) as err:  # onnxruntime's errors derive from RuntimeError
        raise ModelLoadError(f"{path} cannot be loaded by ONNX Runtime: {err}") from err
    names = [output.name for output in session.get_outputs()]

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, {"image": np.asarray(batch, np.float32)})))
    return run

"""Run the exported network: the SavedModel through TensorFlow, a ``.tflite`` file through LiteRT,
or an ``.onnx`` file through ONNX Runtime.

Each takes a (B, S, S, 1) float32 batch and return ``{"probability", "heatmap", "atypicality", ...}`` as
numpy arrays. Each runtime is imported only when chosen, so a slim install (``requirements-slim.txt``,
LiteRT and ONNX Runtime) never needs TensorFlow. No Flask.
"""
from __future__ import annotations

import functools
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

from .probability import recalibrate

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
#: A quantised (int8) variant may stand in where, with its own calibration (:func:`file_calibration`), what
#: a reader sees on the validation images is no worse than with the SavedModel by more than these (its
#: probabilities differ by more than PARITY_TOLERANCE): its AUC; its sensitivity and specificity at every
#: operating point; how often its findings (any, and the top one) land on the radiologists' outlines;
#: and it must give the SavedModel's in-scope verdict on nearly every image.
QUANTISED_AUC_TOLERANCE = 0.005
QUANTISED_RATE_TOLERANCE = 0.02
QUANTISED_HIT_RATE_TOLERANCE = 0.01
QUANTISED_SCOPE_AGREEMENT = 0.99
#: The ``TFLITE_FILE`` setting that lets the parity report choose: the fastest file it vouches for.
FASTEST_TFLITE = "auto"
#: The float32 ``.tflite`` export: what LiteRT serves when the parity report vouches for no faster file.
FLOAT_TFLITE_FILE = "model_float32.tflite"
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


def resolve_backend(backend: str, model_dir: Path, tflite_setting: str, model_version: str) -> str:
    """The runtime to serve with: ``backend`` itself, or for ``auto`` the fastest installed runtime
    whose file a parity report vouches for (:func:`stand_in_problem`), TensorFlow where none is
    (a vouched export gives the SavedModel's answers with a fraction of its memory, and needs no
    TensorFlow in a slim install).

    How fast each runtime is comes from the parity reports: scripts/export_tflite.py times the
    ``.tflite`` files, scripts/export_onnx.py every runtime, each interleaved on one machine. Without
    timings, LiteRT where it is vouched for: under gunicorn on 2 cores it answered sooner than
    TensorFlow in every case of an interleaved comparison (docs/performance.md) with a quarter of
    the memory per worker."""
    if backend != "auto":
        return backend
    model_dir = Path(model_dir)
    candidates = {name: served_file(model_dir, name, tflite_setting, model_version) for name in RUNTIME_PACKAGES}
    call_ms = _call_ms(model_dir, model_version)
    for name in sorted(candidates, key=lambda name: call_ms.get(candidates[name], math.inf)):
        problem = stand_in_problem(model_dir, candidates[name], model_version, PARITY_FILES[name])
        if problem is None:
            if importlib.util.find_spec(RUNTIME_PACKAGES[name]) is not None:
                return name
            problem = f"{RUNTIME_PACKAGES[name]} is not installed"
        log.info("not serving %s through %s: %s", candidates[name], name, problem)
    return "tensorflow"


#: The package each runtime other than TensorFlow is imported from.
RUNTIME_PACKAGES = {"litert": "ai_edge_litert", "onnx": "onnxruntime"}
#: The parity report that vouches for each runtime's files.
PARITY_FILES = {"litert": PARITY_FILE, "onnx": ONNX_PARITY_FILE}


def served_file(model_dir: Path, backend: str, tflite_setting: str, model_version: str) -> str | None:
    """The file in ``model_dir`` that ``backend`` serves: for ``litert`` the ``tflite_setting`` file,
    or for ``FASTEST_TFLITE`` the fastest ``.tflite`` file its parity report vouches for (else
    ``FLOAT_TFLITE_FILE``); for ``onnx`` the fastest vouched ``.onnx`` file (else ``ONNX_FILE``);
    None for ``tensorflow`` (the SavedModel)."""
    if backend == "litert":
        return (fastest_vouched(Path(model_dir), model_version, PARITY_FILE, FLOAT_TFLITE_FILE)
                if tflite_setting == FASTEST_TFLITE else tflite_setting)
    if backend == "onnx":
        return fastest_vouched(Path(model_dir), model_version, ONNX_PARITY_FILE, ONNX_FILE)
    return None


def _call_ms(model_dir: Path, model_version: str) -> dict[str, float]:
    """Each export's call in milliseconds (the SavedModel's keyed by ``SAVEDMODEL_CALL``) as the parity
    reports of this model version timed them, the ONNX report's where both timed a file; empty
    without them."""
    calls: dict[str, float] = {}
    for parity_file in (PARITY_FILE, ONNX_PARITY_FILE):
        try:
            report = json.loads((model_dir / parity_file).read_text())
            if report["model_version"] == model_version:
                calls |= {str(k): float(v) for k, v in report["call_ms"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return calls


def fastest_vouched(model_dir: Path, model_version: str, parity_file: str, default: str) -> str:
    """Of the files the report ``parity_file`` vouches for, the one whose call was fastest (the first
    reported where none was timed); ``default`` where it vouches for none."""
    try:
        report = json.loads((model_dir / parity_file).read_text())
        files = [variant["file"] for variant in report["variants"].values()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return default
    vouched = [file for file in files if stand_in_problem(model_dir, file, model_version, parity_file) is None]
    call_ms = _call_ms(model_dir, model_version)
    return min(vouched, key=lambda file: call_ms.get(file, math.inf), default=default)


def file_digest(path: Path) -> str:
    """The SHA-256 of the file at ``path``, as the parity reports record it. Choosing and loading a
    runtime asks for the same files' digests several times: each is hashed once while the file
    keeps its size and modification time (:func:`_digest`)."""
    stat = Path(path).stat()
    return _digest(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _digest(path: str, size: int, modified_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


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
        if checked["sha256"] != file_digest(path):
            return f"{file} changed after its parity check"
        return parity_problem(checked, report)
    except StopIteration:
        return f"{parity_file} does not report on {file}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        return f"no usable parity report for {file} ({err.__class__.__name__}: {err})"


def parity_problem(checked: dict, report: dict) -> str | None:
    """Why a variant's parity figures fall short, or None: a float export's probabilities within
    ``PARITY_TOLERANCE`` of the SavedModel's; a quantised one's figures within the ``QUANTISED_*``
    tolerances of the SavedModel's (:func:`quantised_problems`)."""
    file = checked["file"]
    if not checked.get("quantised"):
        if not checked["max_probability_diff"] <= PARITY_TOLERANCE:
            return f"{file} differs from the SavedModel by {checked['max_probability_diff']:.2g} in probability"
        return None
    problems = quantised_problems(checked, report)
    return f"{file}: " + "; ".join(problems) if problems else None


def quantised_problems(checked: dict, report: dict) -> list[str]:
    """Each way a quantised variant's AUC, verdicts (at its own operating points) or findings fall
    short of the SavedModel's by more than the ``QUANTISED_*`` tolerances."""
    problems = []
    if not checked["auc"] >= report["savedmodel_auc"] - QUANTISED_AUC_TOLERANCE:
        problems.append(f"AUC {checked['auc']:.4f} against the SavedModel's {report['savedmodel_auc']:.4f}")
    for point, expected in report["savedmodel_operating_points"].items():
        for rate, value in expected.items():
            own = checked["operating_points"][point][rate]
            if not own >= value - QUANTISED_RATE_TOLERANCE:
                problems.append(f"{rate} {own:.3f} at {point} against {value:.3f}")
    agreement = checked.get("in_scope_agreement")
    if agreement is not None and not agreement >= QUANTISED_SCOPE_AGREEMENT:
        problems.append(f"the same in-scope verdict on only {agreement:.1%} of the images")
    expected, own = report.get("savedmodel_findings"), checked.get("findings")
    if expected is None or own is None:
        return [*problems, "no outlines to measure its findings on"]
    for figure in ("finding_hit_rate", "top_finding_hit_rate"):
        if not own[figure] >= expected[figure] - QUANTISED_HIT_RATE_TOLERANCE:
            problems.append(f"{figure.replace('_', ' ')} {own[figure]:.3f} against {expected[figure]:.3f}")
    return problems


def file_calibration(model_dir: Path, backend: str, file: str | None, model_version: str) -> dict | None:
    """The served export's own calibration, or None: a quantised file's Platt scaling (``platt``),
    operating points (``thresholds``) and in-scope scale (``scope_scale``), fitted on the validation
    images by its parity check and kept in the report that vouches for this very file. A float
    export answers as the SavedModel, whose calibration is in its graph."""
    if file is None or backend not in PARITY_FILES:
        return None
    try:
        report = json.loads((Path(model_dir) / PARITY_FILES[backend]).read_text())
        variant = next(v for v in report["variants"].values() if v.get("file") == file)
        if (report["model_version"] != model_version or "calibration" not in variant
                or variant["sha256"] != file_digest(Path(model_dir) / file)):
            return None
        return variant["calibration"]
    except (StopIteration, OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def calibrated(outputs: dict[str, np.ndarray], calibration: dict | None) -> dict[str, np.ndarray]:
    """``outputs`` with an export's own calibration (:func:`file_calibration`) applied: its Platt
    scaling to the probability, its scale to the in-scope distance."""
    if calibration is None:
        return outputs
    outputs = dict(outputs)
    slope, intercept = calibration["platt"]
    outputs["probability"] = recalibrate(outputs["probability"], slope, intercept)
    if "atypicality" in outputs:
        outputs["atypicality"] = (outputs["atypicality"] / calibration["scope_scale"]).astype(np.float32)
    return outputs


def load_runtime(model_dir: Path, backend: str, file: str | None, threads: int) -> Runner:
    """The call of ``backend`` (``tensorflow``, ``litert`` or ``onnx``) on ``model_dir``'s SavedModel
    or its export ``file`` (:func:`served_file`); ``ModelLoadError`` when it cannot be loaded."""
    exports = {"litert": ("scripts/export_tflite.py", load_litert), "onnx": ("scripts/export_onnx.py", load_onnx)}
    if backend not in exports:
        return load_savedmodel(model_dir, threads)
    script, load = exports[backend]
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

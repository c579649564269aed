"""The shipped model and its metadata: image array in, ``Prediction`` out.

The network runs on TensorFlow (the SavedModel) or LiteRT (a ``.tflite`` export), see
:mod:`fracture_web.runtimes`; no Flask. One ``FractureModel`` per process, loaded once and
warmed up; calling it from several threads is safe.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .runtimes import BACKENDS, ModelLoadError, Runner, available_cores, load_litert, load_savedmodel

log = logging.getLogger(__name__)

LABELS = ("not_fractured", "fractured")


class UnknownOperatingPointError(ValueError):
    """An operating point that the model's metadata does not define."""


@dataclass(frozen=True)
class Prediction:
    """One verdict: the label, the calibrated probability and the threshold it was compared with."""

    label: str
    probability: float
    threshold: float
    operating_point: str
    model_version: str
    heatmap: np.ndarray  # (h, w) float32 in [0, 1], over the square model input
    atypicality: float = 0.0  # feature distance from the training images / threshold; > 1 is out of scope

    @property
    def fractured(self) -> bool:
        """True when the verdict is 'fractured'."""
        return self.label == LABELS[1]

    @property
    def in_scope(self) -> bool:
        """False when the image is unlike the radiographs the model was trained on."""
        return self.atypicality <= 1.0


def read_metadata(model_dir: Path) -> dict:
    """Read ``metadata.json`` beside the SavedModel."""
    path = Path(model_dir) / "metadata.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ModelLoadError(f"No model found: {path} is missing (set FRACTURE_MODEL_DIR)") from err
    except (OSError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"Model metadata {path} is unreadable: {err}") from err


#: The LiteRT file served by default, written by scripts/export_tflite.py beside the SavedModel.
DEFAULT_TFLITE_FILE = "model_float32.tflite"


class FractureModel:
    """A loaded model with its operating points; call :meth:`predict` with a model input.

    ``backend`` is ``"tensorflow"`` (the SavedModel in ``model_dir``) or ``"litert"`` (the
    ``tflite_file`` in ``model_dir``); ``threads`` is how many cores one image may use
    (default: all this process may run on).
    """

    def __init__(self, model_dir: Path, default_operating_point: str | None = None, *,
                 backend: str = "tensorflow", tflite_file: str = DEFAULT_TFLITE_FILE,
                 threads: int | None = None) -> None:
        self.metadata = read_metadata(model_dir)
        self.backend = backend
        self._call_runtime = _load_runtime(Path(model_dir), backend, tflite_file, threads or available_cores())
        try:
            self.input_size = int(self.metadata["input_size"])
            self.version = str(self.metadata["model_version"])
            self.thresholds = {name: float(point["threshold"])
                               for name, point in self.metadata["operating_points"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ModelLoadError(f"Model metadata in {model_dir} lacks or garbles {err}") from err
        self.default_operating_point = self.resolve(default_operating_point
                                                    or self.metadata["default_operating_point"])

    def resolve(self, operating_point: str | None) -> str:
        """The operating point's name, the default when none is given."""
        name = operating_point or self.default_operating_point
        if name not in self.thresholds:
            raise UnknownOperatingPointError(
                f"Unknown operating point {name!r}; choose one of {', '.join(self.thresholds)}.")
        return name

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw outputs for a (B, S, S, 1) float32 batch: probabilities (B,) and heatmaps (B, h, w)."""
        outputs = self.outputs(batch)
        return outputs["probability"], outputs["heatmap"]

    def outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the network for a (B, S, S, 1) batch: probability, heatmap, atypicality."""
        return self._call_runtime(batch.astype(np.float32, copy=False))

    def predict(self, model_input: np.ndarray, operating_point: str | None = None) -> Prediction:
        """Verdict for one (S, S, 1) model input at the chosen operating point."""
        name = self.resolve(operating_point)
        outputs = self.outputs(model_input[np.newaxis])
        probability, threshold = float(outputs["probability"][0]), self.thresholds[name]
        label = LABELS[int(probability >= threshold)]
        atypicality = float(outputs["atypicality"][0]) if "atypicality" in outputs else 0.0
        return Prediction(label, probability, threshold, name, self.version, outputs["heatmap"][0], atypicality)

    def warm_up(self, runs: int = 3) -> None:
        """Run a blank image a few times so the first real request pays neither for graph tracing
        nor for the runtime's first allocations."""
        blank = np.zeros((1, self.input_size, self.input_size, 1), np.float32)
        for _ in range(runs):
            self.infer(blank)


def _load_runtime(model_dir: Path, backend: str, tflite_file: str, threads: int) -> Runner:
    """The runtime's call for ``backend``; ``ModelLoadError`` when it cannot be loaded."""
    if backend not in BACKENDS:
        raise ModelLoadError(f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    if backend == "litert":
        path = model_dir / tflite_file
        if not path.is_file():
            raise ModelLoadError(f"No LiteRT model at {path} (make one with scripts/export_tflite.py)")
        return load_litert(path, threads)
    return load_savedmodel(model_dir, threads)

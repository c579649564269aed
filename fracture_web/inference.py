"""The shipped SavedModel and its metadata: image array in, ``Prediction`` out.

TensorFlow only; no Flask. One ``FractureModel`` per process, loaded once and
warmed up; calling a loaded signature is thread-safe.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

LABELS = ("not_fractured", "fractured")


class ModelLoadError(RuntimeError):
    """The model directory is missing, incomplete or unreadable."""


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


class FractureModel:
    """A loaded SavedModel with its operating points; call :meth:`predict` with a model input."""

    def __init__(self, model_dir: Path, default_operating_point: str | None = None) -> None:
        import tensorflow as tf  # imported here so that importing this module stays cheap

        self.metadata = read_metadata(model_dir)
        try:
            self._serve = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
        except (OSError, ValueError, KeyError, tf.errors.OpError) as err:
            raise ModelLoadError(f"SavedModel in {model_dir} cannot be loaded: {err}") from err
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
        outputs = self._call(batch)
        return outputs["probability"], outputs["heatmap"]

    def _call(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self._serve(image=batch.astype(np.float32, copy=False))
        return {name: tensor.numpy() for name, tensor in outputs.items()}

    def predict(self, model_input: np.ndarray, operating_point: str | None = None) -> Prediction:
        """Verdict for one (S, S, 1) model input at the chosen operating point."""
        name = self.resolve(operating_point)
        outputs = self._call(model_input[np.newaxis])
        probability, threshold = float(outputs["probability"][0]), self.thresholds[name]
        label = LABELS[int(probability >= threshold)]
        atypicality = float(outputs["atypicality"][0]) if "atypicality" in outputs else 0.0
        return Prediction(label, probability, threshold, name, self.version, outputs["heatmap"][0], atypicality)

    def warm_up(self) -> None:
        """Run one blank image so the first real request does not pay for graph tracing."""
        self.infer(np.zeros((1, self.input_size, self.input_size, 1), np.float32))

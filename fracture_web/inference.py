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

from .config import DEFAULT_BACKEND, DEFAULT_TFLITE_FILE
from .findings import Finding, FindingLevels, box_scale_from_metadata, locate
from .pixels import InvalidImageError
from .probability import recalibrate
from .runtimes import (BACKENDS, ModelLoadError, available_cores, calibrated, file_calibration, load_runtime,
                       resolve_backend, served_file)

log = logging.getLogger(__name__)

#: The verdict in words, by whether it is positive: the one wording of the page, the command
#: line and the DICOM results (burned-in text and SR finding).
VERDICTS = {True: "Fracture suspected", False: "No fracture detected"}
#: What a prediction read back without its heatmap has in its place (the node's readings do not draw it).
NO_HEATMAP = np.zeros((0, 0), np.float32)


class UnknownOperatingPointError(ValueError):
    """An operating point that the model's metadata does not define."""


class ModelOutputError(InvalidImageError):
    """The network answered this image with NaN or infinity: it is refused like an unreadable image
    (no verdict, and a study's other views go on without it)."""


@dataclass(frozen=True)
class Prediction:
    """One verdict: the label, the calibrated probability and the threshold it was compared with.

    ``label`` is one of the model's own label names (``metadata.json``); ``fractured`` says
    whether it is the positive one (``probability >= threshold``).
    """

    label: str
    fractured: bool
    probability: float
    threshold: float
    operating_point: str
    model_version: str
    heatmap: np.ndarray  # (h, w) float32 in [0, 1], over the square model input
    atypicality: float = 0.0  # feature distance from the training images / threshold; > 1 is out of scope
    calibration: str = "development"  # or "site": the operating points were re-fitted on this site's images
    findings: tuple[Finding, ...] = ()  # suspected fractures, highest score first (see fracture_web.findings)

    def as_dict(self, rounded: bool = False) -> dict:
        """The prediction written out, heatmap aside: the one shape of the JSON API (which leaves out
        ``fractured`` and ``atypicality``), the node's readings, the archive's rows and the audit line.
        Floats are exact, so :meth:`from_dict` gives back the same prediction; ``rounded`` rounds them
        as the API reports them (probability to 6 decimals, findings as :meth:`Finding.as_dict`)."""
        return {"label": self.label, "fractured": self.fractured,
                "probability": round(self.probability, 6) if rounded else self.probability,
                "threshold": self.threshold, "operating_point": self.operating_point,
                "model_version": self.model_version, "atypicality": self.atypicality, "calibration": self.calibration,
                "findings": [finding.as_dict() if rounded else {"box": list(finding.box), "score": finding.score,
                                                                  "level": finding.level}
                             for finding in self.findings]}

    @classmethod
    def from_dict(cls, facts: dict, heatmap: np.ndarray | None = None) -> Prediction:
        """A prediction written out by :meth:`as_dict` (with an empty heatmap unless one is given)."""
        findings = tuple(Finding(tuple(f["box"]), f["score"], f["level"]) for f in facts["findings"])
        return cls(facts["label"], facts["fractured"], facts["probability"], facts["threshold"],
                   facts["operating_point"], facts["model_version"], NO_HEATMAP if heatmap is None else heatmap,
                   facts["atypicality"], facts["calibration"], findings)

    @property
    def verdict(self) -> str:
        """The verdict in words for a person ("Fracture suspected" or "No fracture detected")."""
        return VERDICTS[self.fractured]

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


def read_labels(metadata: dict) -> tuple[str, str]:
    """The model's (negative, positive) label names from its metadata; ``ValueError`` unless
    ``labels`` lists two different names."""
    labels = metadata["labels"]
    if (not isinstance(labels, list) or len(labels) != 2 or len(set(labels)) != 2
            or not all(isinstance(name, str) and name for name in labels)):
        raise ValueError(f"'labels' (two different names, negative then positive, not {labels!r})")
    return labels[0], labels[1]


def read_thresholds(metadata: dict) -> dict[str, float]:
    """Each operating point's threshold from the metadata; ``ValueError`` for one that is not a finite
    number (a NaN compares false with every probability, so every verdict would read "no fracture").
    0 and above 1 stay allowed: points that every image, or none, passes are deliberate (tests use them)."""
    thresholds = {name: float(point["threshold"]) for name, point in metadata["operating_points"].items()}
    for name, threshold in thresholds.items():
        if not (np.isfinite(threshold) and threshold >= 0):
            raise ValueError(f"'operating_points' (the {name} threshold must be a number from 0 to 1, "
                             f"not {threshold!r})")
    return thresholds


class FractureModel:
    """A loaded model with its operating points; call :meth:`predict` with a model input.

    ``backend`` is ``"tensorflow"`` (the SavedModel in ``model_dir``), ``"litert"`` (the
    ``tflite_file`` in ``model_dir``; ``"auto"``: the fastest one its parity report vouches for),
    ``"onnx"`` or ``"auto"`` (the fastest export verified to stand in for the SavedModel, see
    :func:`fracture_web.runtimes.resolve_backend`); ``self.backend`` is the one chosen and
    ``self.served_file`` the export it serves (None for the SavedModel). ``threads`` is how many cores one image may use (default: all this process may run on).
    """

    def __init__(self, model_dir: Path, default_operating_point: str | None = None, *,
                 backend: str = DEFAULT_BACKEND, tflite_file: str = DEFAULT_TFLITE_FILE,
                 threads: int | None = None) -> None:
        self.metadata = read_metadata(model_dir)
        try:
            self.input_size = int(self.metadata["input_size"])
            self.version = str(self.metadata["model_version"])
            self.labels = read_labels(self.metadata)
            self.thresholds = read_thresholds(self.metadata)
            own_default = str(self.metadata["default_operating_point"])
            self.site_platt = _site_platt(self.metadata)
            # None only between export and validation, where training chooses the levels.
            self.finding_levels = (FindingLevels.from_metadata(self.metadata, self.thresholds)
                                   if "findings" in self.metadata else None)
            self.box_scale = box_scale_from_metadata(self.metadata)
        except KeyError as err:
            raise ModelLoadError(f"Model metadata in {model_dir} lacks or garbles {err}") from err
        except (TypeError, ValueError, AttributeError) as err:
            raise ModelLoadError(f"Model metadata in {model_dir} lacks or garbles a value: {err}") from err
        if backend not in BACKENDS:
            raise ModelLoadError(f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
        self.backend = resolve_backend(backend, Path(model_dir), tflite_file, self.version)
        self.served_file = served_file(Path(model_dir), self.backend, tflite_file, self.version)
        self.file_calibration = file_calibration(Path(model_dir), self.backend, self.served_file, self.version)
        if self.file_calibration is not None and self.site_platt is None:  # a site's re-fit comes first
            self.thresholds = {name: float(self.file_calibration["thresholds"][name]) for name in self.thresholds}
            if self.finding_levels is not None:
                self.finding_levels = FindingLevels.from_metadata(self.metadata, self.thresholds)
        self._call_runtime = load_runtime(Path(model_dir), self.backend, self.served_file, threads or available_cores())
        self.default_operating_point = self.resolve(default_operating_point or own_default)

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

    @property
    def calibration(self) -> str:
        """Where the probability's calibration and the operating points were fitted: ``"development"``
        (the training data's validation split) or ``"site"`` (re-fitted on a site's own labelled images)."""
        return "site" if self.site_platt else "development"

    def outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the network for a (B, S, S, 1) batch: probability, heatmap, cam, fracture map
        and atypicality. The served file's own calibration (a quantised file's), then a site's
        re-fitted calibration, when the metadata has one, are applied."""
        outputs = calibrated(self._call_runtime(batch.astype(np.float32, copy=False)), self.file_calibration)
        if self.site_platt:
            outputs["probability"] = recalibrate(outputs["probability"], *self.site_platt)
        return outputs

    def predict(self, model_input: np.ndarray, operating_point: str | None = None,
                image_shape: tuple[int, int] | None = None) -> Prediction:
        """Verdict and findings for one (S, S, 1) model input at the chosen operating point.

        ``image_shape`` is the (height, width) of the image letterboxed into ``model_input``: the
        findings' boxes are in its pixels (in the model input's, without it)."""
        return self.read(self.outputs(model_input[np.newaxis]), operating_point, image_shape)

    def read(self, outputs: dict[str, np.ndarray], operating_point: str | None = None,
             image_shape: tuple[int, int] | None = None) -> Prediction:
        """The verdict and findings in one image's network outputs (a batch of one), as :meth:`predict`."""
        name = self.resolve(operating_point)
        _check_finite(outputs)
        probability, threshold = float(outputs["probability"][0]), self.thresholds[name]
        fractured = probability >= threshold
        atypicality = float(outputs["atypicality"][0]) if "atypicality" in outputs else 0.0
        findings = () if self.finding_levels is None else locate(
            outputs["fracture_map"][0], image_shape or (self.input_size,) * 2, self.input_size,
            probability, fractured, self.finding_levels, self.box_scale)
        return Prediction(self.labels[int(fractured)], fractured, probability, threshold, name, self.version,
                          outputs["heatmap"][0], atypicality, self.calibration, findings)

    def warm_up(self, runs: int = 3) -> None:
        """Run a blank image a few times so the first real request pays neither for graph tracing
        nor for the runtime's first allocations."""
        blank = np.zeros((1, self.input_size, self.input_size, 1), np.float32)
        for _ in range(runs):
            self.infer(blank)


def _check_finite(outputs: dict[str, np.ndarray]) -> None:
    """Refuse an answer whose probability, heatmap, fracture map or atypicality is NaN or infinite:
    a NaN compares false with every threshold, so it would read as "no fracture"."""
    broken = [name for name in ("probability", "heatmap", "fracture_map", "atypicality")
              if name in outputs and not np.isfinite(outputs[name]).all()]
    if broken:
        raise ModelOutputError(f"The model could not read this image: its {broken[0].replace('_', ' ')} came out "
                               "as NaN or infinity, so no verdict is given. Check the image, or send it again.")


def _site_platt(metadata: dict) -> tuple[float, float] | None:
    """The (slope, intercept) a site re-fitted on the logit of the model's probability, or None."""
    site = metadata.get("site_calibration")
    if site is None:
        return None
    slope, intercept = (float(v) for v in site["platt"])
    if not (np.isfinite(slope) and np.isfinite(intercept) and slope > 0):
        raise ValueError(f"'site_calibration' (its platt slope must be a positive number and its intercept "
                         f"finite, not {[slope, intercept]!r}; a slope not above 0 inverts every verdict)")
    return slope, intercept


def load_model(model_dir: Path | str, operating_point: str | None = None, *, backend: str = DEFAULT_BACKEND,
               tflite_file: str = DEFAULT_TFLITE_FILE, threads: int | None = None) -> FractureModel:
    """The model as a server runs it: loaded from its settings and warmed up, once per process.

    Shared by the web app, the DICOM node and the command line. Raises ``ModelLoadError`` for
    a missing or broken model and ``UnknownOperatingPointError`` for an operating point it lacks.
    """
    model = FractureModel(Path(model_dir), operating_point, backend=backend, tflite_file=tflite_file,
                          threads=threads)
    if model.finding_levels is None:
        raise ModelLoadError(f"The model in {model_dir} has no finding thresholds ('findings' in metadata.json): "
                             "export it again with scripts/train_model.py --export-only ... --data-dir ...")
    model.warm_up()
    log.info("model %s loaded from %s (%s)", model.version, model_dir, model.backend)
    return model


"""Score labelled images through the app's own preprocessing and model class.

The images go through ``decode_image`` + ``to_model_input`` and :meth:`FractureModel.outputs`,
so the numbers describe what a clinician would actually see. :func:`batched_outputs` is the one
place inputs are fed to a model in batches (scoring here, the TFLite parity check too).
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Protocol

import numpy as np

from ..datasets import Records, read_records
from ..findings import BoxScale, FindingLevels
from ..imaging import decode_image, to_model_input
from ..pixels import InvalidImageError

log = logging.getLogger(__name__)


#: Re-renders a decoded [0, 1] image (given with its index in the records) before scoring.
Transform = Callable[[np.ndarray, int], np.ndarray]


class EvaluationError(ValueError):
    """The folder cannot be evaluated (e.g. nothing readable, or only one class readable)."""


class BatchModel(Protocol):
    """Anything with the model's batch call: :class:`~fracture_web.inference.FractureModel` fits."""

    def outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...


class Scorer(BatchModel, Protocol):
    """What evaluation needs from a model: its batch call, input size, version, thresholds and
    default operating point, its finding thresholds (None before training has chosen them) and
    the scale of its finding boxes."""

    input_size: int
    version: str
    thresholds: dict[str, float]
    default_operating_point: str
    finding_levels: FindingLevels | None
    box_scale: BoxScale


def batched_outputs(model: BatchModel, inputs: Iterable[np.ndarray], batch_size: int = 16) -> dict[str, np.ndarray]:
    """Every output of ``model`` for every input, ``batch_size`` inputs per call.

    ``inputs`` may be an array of inputs or any iterable of them (a generator keeps only one
    batch in memory). Returns an empty dict when there are no inputs.
    """
    if batch_size < 1:
        raise EvaluationError(f"batch size must be at least 1, not {batch_size}")
    stream, parts = iter(inputs), []
    while batch := list(islice(stream, batch_size)):
        parts.append(model.outputs(np.stack(batch)))
    return {name: np.concatenate([part[name] for part in parts]) for name in (parts[0] if parts else ())}


def score_folder(data_dir: Path, model: Scorer, batch_size: int = 16,
                 split: str | None = None) -> tuple[Records, np.ndarray, list[Path], Counter]:
    """Probability of fracture for every readable image listed in ``data_dir``.

    With ``split``, only the rows whose ``split`` column has that value (e.g. FracAtlas's
    ``val``) are scored. See :func:`score_records` for what is returned.
    """
    return score_records(read_records(Path(data_dir), split), model, batch_size)


def score_records(records: Records, model: Scorer, batch_size: int = 16,
                  transform: Transform | None = None) -> tuple[Records, np.ndarray, list[Path], Counter]:
    """Score the images through the app's preprocessing and model, ``batch_size`` at a time.

    Returns the records of the readable images (in listing order), their probabilities,
    the paths that could not be read, and how often each preprocessing warning was given.
    Only ``batch_size`` inputs are held at once, so folders of full-size radiographs fit in memory.
    ``transform`` re-renders each decoded image before it becomes a model input (the robustness
    table's site shifts); it gets the image and its index in ``records``.
    """
    readable = np.zeros(len(records), dtype=bool)
    unreadable: list[Path] = []
    warnings: Counter = Counter()
    inputs = _model_inputs(records, model.input_size, readable, unreadable, warnings, transform)
    outputs = batched_outputs(model, inputs, batch_size)
    probs = np.asarray(outputs.get("probability", ()), dtype=np.float64).reshape(-1)
    return records.subset(readable), probs, unreadable, warnings


def _model_inputs(records: Records, size: int, readable: np.ndarray, unreadable: list[Path],
                  warnings: Counter, transform: Transform | None = None) -> Iterator[np.ndarray]:
    """The model input of each readable image, in order; marks ``readable``, collects the rest."""
    for i, path in enumerate(records.paths):
        try:
            decoded = decode_image(path.read_bytes())
            pixels = decoded.pixels if transform is None else transform(decoded.pixels, i)
            model_input = to_model_input(pixels, size)
        except (InvalidImageError, OSError) as err:
            log.warning("unreadable image %s: %s", path.name, getattr(err, "strerror", None) or err)
            unreadable.append(path)
            continue
        warnings.update(decoded.warnings)
        readable[i] = True
        yield model_input

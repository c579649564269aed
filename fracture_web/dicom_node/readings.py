"""One received radiograph as its study's report needs it, and as the node keeps it on disk.

A :class:`Reading` is the image's identity (patient, study, series and instance: no pixels, no other
header attributes), the model's prediction without its heatmap, the analysis's warnings and when
the image arrived, stored as one small JSON document whose prediction is written out as everywhere
else (:meth:`~fracture_web.inference.Prediction.as_dict`). Pure (pydicom, json); no disk, no network.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

from pydicom import Dataset

from ..inference import NO_HEATMAP, Prediction
from .header import identity


@dataclass(frozen=True)
class Reading:
    """An analysed radiograph of a study: its identity, the prediction (no heatmap), the warnings
    and its arrival time."""

    source: Dataset
    prediction: Prediction
    warnings: tuple[str, ...]
    received: float  # seconds since the epoch

    @classmethod
    def of(cls, source: Dataset, prediction: Prediction, warnings: Sequence[str], received: float) -> Reading:
        """The reading of a received image, keeping only what the report needs of it."""
        return cls(identity(source), replace(prediction, heatmap=NO_HEATMAP), tuple(warnings), received)

    def to_json(self) -> str:
        """The reading as a JSON document (floats written exactly)."""
        return json.dumps({"received": self.received, "source": self.source.to_json_dict(),
                           "prediction": self.prediction.as_dict(), "warnings": list(self.warnings)})

    @classmethod
    def from_json(cls, text: str) -> Reading:
        """A reading written by :meth:`to_json`."""
        stored = json.loads(text)
        return cls(Dataset.from_json(stored["source"]), Prediction.from_dict(stored["prediction"]),
                   tuple(stored["warnings"]), stored["received"])


def readings_json(readings: Sequence[Reading]) -> str:
    """Readings as one JSON list (for a person to look at a study that could not be reported)."""
    return json.dumps([json.loads(reading.to_json()) for reading in readings])

"""One received radiograph as its study's report needs it, and as the node keeps it on disk.

A :class:`Reading` is the image's identity (patient, study, series and instance: no pixels, no other
header attributes), the model's prediction without its heatmap, the analysis's warnings and when
the image arrived, stored as one small JSON document. Pure (pydicom, json); no disk, no network.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from pydicom import Dataset

from ..analysis import Analysis
from ..findings import Finding
from ..inference import Prediction
from .header import identity

#: What a stored prediction has in place of its heatmap: the report does not draw it.
NO_HEATMAP = np.zeros((0, 0), np.float32)


@dataclass(frozen=True)
class Reading:
    """An analysed radiograph of a study: its identity, its analysis (no images) and its arrival time."""

    source: Dataset
    analysis: Analysis
    received: float  # seconds since the epoch

    @classmethod
    def of(cls, source: Dataset, analysis: Analysis, received: float) -> Reading:
        """The reading of a received image, keeping only what the report needs of it."""
        kept = Analysis(replace(analysis.prediction, heatmap=NO_HEATMAP), tuple(analysis.warnings))
        return cls(identity(source), kept, received)

    def to_json(self) -> str:
        """The reading as a JSON document (floats written exactly)."""
        p = self.analysis.prediction
        prediction = {"label": p.label, "fractured": p.fractured, "probability": p.probability,
                      "threshold": p.threshold, "operating_point": p.operating_point,
                      "model_version": p.model_version, "atypicality": p.atypicality, "calibration": p.calibration,
                      "findings": [{"box": list(f.box), "score": f.score, "level": f.level} for f in p.findings]}
        return json.dumps({"received": self.received, "source": self.source.to_json_dict(),
                           "prediction": prediction, "warnings": list(self.analysis.warnings)})

    @classmethod
    def from_json(cls, text: str) -> Reading:
        """A reading written by :meth:`to_json`."""
        stored = json.loads(text)
        facts = dict(stored["prediction"])
        findings = tuple(Finding(tuple(f["box"]), f["score"], f["level"]) for f in facts.pop("findings"))
        prediction = Prediction(**facts, heatmap=NO_HEATMAP, findings=findings)
        return cls(Dataset.from_json(stored["source"]), Analysis(prediction, tuple(stored["warnings"])),
                   stored["received"])



def readings_json(readings: Sequence[Reading]) -> str:
    """Readings as one JSON list (for a person to look at a study that could not be reported)."""
    return json.dumps([json.loads(reading.to_json()) for reading in readings])

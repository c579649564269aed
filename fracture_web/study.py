"""Several views of one examination -> one study verdict.

A radiographic study is read as one: it is "fractured" when any readable view is, and its
probability is the largest view probability. With one threshold for every view the two agree
(the largest probability reaches the threshold exactly when some view does), so the study's
verdict, probability and threshold read together like a single image's. Pure; no Flask.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .inference import VERDICTS, Prediction


class EmptyStudyError(ValueError):
    """A study with no readable view has no verdict."""


class MixedPatientsError(ValueError):
    """A study's files name different patients: one verdict would be drawn over both."""


@dataclass(frozen=True)
class StudyVerdict:
    """The study-level result: the label of the most suspicious view and the largest probability."""

    label: str
    fractured: bool
    probability: float
    threshold: float
    operating_point: str
    model_version: str
    views: int  # readable views the verdict was drawn from

    @property
    def verdict(self) -> str:
        """The verdict in words, as for a single image."""
        return VERDICTS[self.fractured]

    def as_dict(self) -> dict:
        """The study's fields as the studies API reports them (beside ``images`` and ``warnings``)."""
        return {"label": self.label, "probability": round(self.probability, 6), "threshold": self.threshold,
                "operating_point": self.operating_point, "model_version": self.model_version}


def combine(predictions: Sequence[Prediction]) -> StudyVerdict:
    """The study verdict of the readable views' predictions (all at one operating point)."""
    if not predictions:
        raise EmptyStudyError("None of the study's images could be analysed.")
    if len({(p.operating_point, p.threshold, p.model_version) for p in predictions}) > 1:
        raise ValueError("a study's views must be scored by one model at one operating point")
    if not all(math.isfinite(p.probability) for p in predictions):
        # max() over a NaN depends on the order of the views; the model refuses such views itself
        raise ValueError("a study's views must have real probabilities (not NaN or infinity)")
    top = max(predictions, key=lambda p: p.probability)
    return StudyVerdict(top.label, top.fractured, top.probability, top.threshold, top.operating_point,
                        top.model_version, len(predictions))

"""The site's own accuracy from the stored reads: sensitivity, specificity, PPV and NPV with Wilson
intervals per operating point and per body part, the reliability of the probability, the fractured
share over time against the range the validation split expects, and the sample a re-fit takes.

Pure numpy over :class:`~fracture_web.reads.store.StoredAnalysis` rows; the rates and intervals are
those of ``evaluation.diagnostic_accuracy``, the expected range that of the drift signal in ``metrics``.
A read of "unsure" counts as read but not as a label.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..evaluation.diagnostic_accuracy import calibration_bins, confusion_rates, wilson_interval
from ..evaluation.calibration import HIGH_SENSITIVITY, fractured_needed
from ..evaluation.site import FOLDS, MIN_PER_CLASS
from ..metrics import expected_share
from .store import StoredAnalysis

#: The reads that are labels, and the label each gives.
LABEL_OF = {"fractured": 1, "not_fractured": 0}


@dataclass(frozen=True)
class Sample:
    """The analyses with a definite read: the reader's label (1 = fractured), the model's probability,
    and the body part (``"unknown"`` where the header did not say)."""

    labels: np.ndarray
    probs: np.ndarray
    body_parts: tuple[str, ...]

    @property
    def fractured(self) -> int:
        return int(self.labels.sum())

    @property
    def not_fractured(self) -> int:
        return int(len(self.labels) - self.labels.sum())

    def where(self, mask: np.ndarray) -> Sample:
        return Sample(self.labels[mask], self.probs[mask], tuple(np.asarray(self.body_parts, object)[mask]))


@dataclass(frozen=True)
class Rates:
    """Sensitivity, specificity, PPV and NPV at one threshold, each with its 95% Wilson interval
    (NaN where nothing was counted), and the four counts."""

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int
    sensitivity: float
    specificity: float
    ppv: float
    npv: float
    sensitivity_ci95: tuple[float, float]
    specificity_ci95: tuple[float, float]
    ppv_ci95: tuple[float, float]
    npv_ci95: tuple[float, float]


def sample(rows: Iterable[StoredAnalysis], model_version: str | None = None,
           calibration: str | None = None) -> Sample:
    """The definitely read analyses, only those of ``model_version`` and ``calibration`` when given
    (a probability means something else under another model or calibration)."""
    chosen = [row for row in rows if row.read in LABEL_OF
              and model_version in (None, row.model_version) and calibration in (None, row.calibration)]
    return Sample(np.array([LABEL_OF[row.read] for row in chosen], np.int64),
                  np.array([row.probability for row in chosen], np.float64),
                  tuple(row.body_part or "unknown" for row in chosen))


def rates(labels: np.ndarray, probs: np.ndarray, threshold: float) -> Rates:
    """The four rates of ``probs >= threshold`` against ``labels`` (``confusion_rates``), with intervals."""
    found = confusion_rates(labels, probs, threshold)
    tp, fp, tn, fn = (found[key] for key in ("tp", "fp", "tn", "fn"))
    return Rates(threshold, tp, fp, tn, fn, found["sensitivity"], found["specificity"], found["ppv"], found["npv"],
                 tuple(found["sensitivity_ci95"]), tuple(found["specificity_ci95"]),
                 tuple(wilson_interval(tp, tp + fp)), tuple(wilson_interval(tn, tn + fn)))


def rates_by_point(labels: np.ndarray, probs: np.ndarray, thresholds: Mapping[str, float]) -> dict[str, Rates]:
    """The rates at each operating point's threshold."""
    return {name: rates(labels, probs, threshold) for name, threshold in thresholds.items()}


def rates_by_body_part(reads: Sample, thresholds: Mapping[str, float]) -> dict[str, dict[str, Rates]]:
    """The rates at each operating point, per body part (sorted by name)."""
    parts = np.asarray(reads.body_parts, object)
    return {part: rates_by_point(reads.labels[parts == part], reads.probs[parts == part], thresholds)
            for part in sorted(set(reads.body_parts))}


@dataclass(frozen=True)
class ReliabilityBin:
    """One probability bin: the mean probability the model gave, the share the readers called fractured, how many."""

    mean_probability: float
    observed: float
    count: int


def reliability(reads: Sample) -> list[ReliabilityBin]:
    """The non-empty bins of the reliability plot (``calibration_bins``, the evaluation's binning)."""
    if not len(reads.labels):
        return []
    mean_pred, observed, counts = calibration_bins(reads.labels, reads.probs)
    return [ReliabilityBin(float(mean_pred[b]), float(observed[b]), int(counts[b])) for b in np.flatnonzero(counts)]


@dataclass(frozen=True)
class ShareWindow:
    """The fractured share of a run of consecutive analyses and the range validation expects for that many."""

    first: int  # 1-based number of its first analysis
    last: int
    share: float
    low: float
    high: float

    @property
    def outside(self) -> bool:
        return not self.low <= self.share <= self.high


def share_over_time(rows: Sequence[StoredAnalysis], threshold: float, counts: Mapping[str, int],
                    window: int) -> list[ShareWindow]:
    """The share of analyses at or above ``threshold`` in consecutive windows of ``window`` analyses
    (the last one may be shorter), each beside ``metrics.expected_share`` for its size."""
    called = np.array([row.probability >= threshold for row in rows], bool)
    out = []
    for start in range(0, len(called), window):
        part = called[start:start + window]
        low, high = expected_share(counts, len(part))
        out.append(ShareWindow(start + 1, start + len(part), float(part.mean()), low, high))
    return out


def needed_to_refit() -> tuple[int, int]:
    """The fractured and not-fractured reads a re-fit needs (the site re-fit's own refusals:
    ``MIN_PER_CLASS`` of each, and enough fractured ones for the high-sensitivity margin)."""
    return fractured_needed(HIGH_SENSITIVITY, FOLDS), MIN_PER_CLASS


def enough_to_refit(reads: Sample) -> bool:
    """Whether the reads are enough for a re-fit (:func:`needed_to_refit`)."""
    fractured, not_fractured = needed_to_refit()
    return reads.fractured >= fractured and reads.not_fractured >= not_fractured


def refit_sample(rows: Iterable[StoredAnalysis], model_version: str,
                 calibration: str) -> tuple[np.ndarray, np.ndarray, dict[str, list[str]]]:
    """What a re-fit from the reads takes (``evaluation.site.fit_site(labels, probs, columns)``): the
    readers' labels, the probabilities the served model gave (its version and calibration only:
    the re-fit composes onto them), and the body parts as its subgroup column. The probability is
    the same whatever the operating point, so one sample serves every point the re-fit chooses."""
    reads = sample(rows, model_version, calibration)
    return reads.labels, reads.probs, {"body_part": list(reads.body_parts)}

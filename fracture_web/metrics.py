"""What operations staff watch, as Prometheus metrics: requests, refusals, verdicts, latency and
where it goes (each stage of an analysis), the DICOM queue, and a drift signal that needs no labels.

No Flask: the web layer and the DICOM node's processes record into the same metric objects.
Under gunicorn (or any set of processes) ``PROMETHEUS_MULTIPROC_DIR`` names a folder, empty at
start, where each process writes its values and ``exposition`` sums them; ``gunicorn.conf.py``
makes one. Without it (the development server, tests) the values live in this process.

The drift signal: the share of ``fractured`` verdicts over the last N images, against the range
the validation split leads one to expect for N images at the default operating point. A new
scanner, a changed export or a wrong window moves that share long before anyone has labels.
"""
from __future__ import annotations

import logging
import math
import threading
from collections import deque
from typing import TYPE_CHECKING

from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest, multiprocess)

from .config import prometheus_multiproc_dir
from .refusals import LABELS

if TYPE_CHECKING:
    from .inference import FractureModel, Prediction
    from .timings import StageTimings

log = logging.getLogger(__name__)

#: Why a request was refused: the reasons of the table of refusals, a fixed set (a handful of series).
REFUSAL_REASONS = LABELS
#: The validation counts the expected drift range is derived from (``metadata.json``, per operating point).
COUNTS = ("tp", "fp", "tn", "fn")
#: Normal quantile of the expected range: 99% of windows of a model seeing validation-like images fall inside.
Z_99 = 2.576

REQUESTS = Counter("fracture_requests", "Prediction requests received, by endpoint.", ["endpoint"])
REFUSALS = Counter("fracture_refusals", "Requests refused, by reason.", ["reason"])
VERDICTS = Counter("fracture_verdicts", "Images analysed, by verdict label and operating point.",
                   ["label", "operating_point"])
OUT_OF_SCOPE = Counter("fracture_out_of_scope_warnings", "Images unlike the radiographs the model was trained on.")
ANALYSIS_SECONDS = Histogram("fracture_analysis_seconds", "Time to analyse one request's upload(s), by endpoint.",
                             ["endpoint"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
# One series per stage (``timings.STAGES``): from half a millisecond (encoding a JSON verdict) to
# seconds (decoding a 32 MB DICOM on a busy machine).
STAGE_SECONDS = Histogram("fracture_stage_seconds", "Time in each stage of an analysis: decode, model, findings, render, "
                          "encode (one observation per image, encode one per answer).", ["stage"],
                          buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2))
QUEUE_DEPTH = Gauge("fracture_queue_depth", "DICOM images received and not yet analysed and sent.",
                    multiprocess_mode="mostrecent")
SEND_FAILURES = Counter("fracture_send_failures", "Failed attempts to send results to the PACS, by kind.", ["kind"])
#: Why a DICOM result (or the makings of one) was set aside for a person to look at; a fixed set.
DEAD_LETTER_REASONS = ("report_failed", "result_unreadable", "refused", "aborted", "analysis_failed", "delivery_failed")
DEAD_LETTERS = Counter("fracture_dead_letters", "DICOM results set aside (dead letter) instead of sent, by reason.",
                       ["reason"])
DEAD_LETTERS_DROPPED = Counter("fracture_dead_letters_dropped", "Dead letters dropped from the broker's capped list "
                               "to make room for newer ones, by the reason they were set aside.", ["reason"])
# Each process keeps its own window (a sample of the traffic it serves); "mostrecent" exports the
# window of the process that analysed the latest image: one series to alert on, never stale.
FRACTURED_SHARE = Gauge("fracture_fractured_share_recent", "Share of fractured verdicts over the last N images.",
                        multiprocess_mode="mostrecent")
EXPECTED_LOW = Gauge("fracture_fractured_share_expected_low", "Lowest share expected from validation for N images.",
                     multiprocess_mode="mostrecent")
EXPECTED_HIGH = Gauge("fracture_fractured_share_expected_high", "Highest share expected from validation for N images.",
                      multiprocess_mode="mostrecent")


def record_request(endpoint: str) -> None:
    """Count one prediction request to ``endpoint`` (e.g. "page", "predict", "studies")."""
    REQUESTS.labels(endpoint).inc()


def record_refusal(reason: str) -> None:
    """Count one refused request; ``reason`` is one of ``REFUSAL_REASONS`` (``ValueError`` otherwise)."""
    if reason not in REFUSAL_REASONS:
        raise ValueError(f"unknown refusal reason {reason!r}")
    REFUSALS.labels(reason).inc()


def record_analysis(endpoint: str, seconds: float) -> None:
    """Time one request's analysis (all its images), from decoding to the verdict."""
    ANALYSIS_SECONDS.labels(endpoint).observe(seconds)


def record_stages(timings: StageTimings) -> None:
    """Observe each stage an analysis went through, with its seconds (``StageTimings.entries``)."""
    for stage, seconds in timings.entries:
        STAGE_SECONDS.labels(stage).observe(seconds)


def record_prediction(prediction: Prediction, drift: DriftMonitor | None = None) -> None:
    """Count one analysed image: its verdict, an out-of-scope warning, and its place in the drift window."""
    VERDICTS.labels(prediction.label, prediction.operating_point).inc()
    if not prediction.in_scope:
        OUT_OF_SCOPE.inc()
    if drift is not None:
        drift.add(prediction.probability >= drift.threshold)


def record_queue_depth(n: int) -> None:
    """The number of DICOM images waiting to be analysed or sent, as the node or a worker sees it now."""
    QUEUE_DEPTH.set(n)


def record_send_failure(kind: str) -> None:
    """Count one failed send to the PACS; ``kind`` is short and fixed (e.g. "c_store", "stow_rs")."""
    SEND_FAILURES.labels(kind).inc()


def record_dead_letter(reason: str) -> None:
    """Count one result set aside; ``reason`` is one of ``DEAD_LETTER_REASONS`` (``ValueError`` otherwise)."""
    if reason not in DEAD_LETTER_REASONS:
        raise ValueError(f"unknown dead-letter reason {reason!r}")
    DEAD_LETTERS.labels(reason).inc()


def record_dead_letter_dropped(reason: str) -> None:
    """Count one dead letter dropped to keep the list within its cap (an unknown reason counts as "unknown")."""
    DEAD_LETTERS_DROPPED.labels(reason if reason in DEAD_LETTER_REASONS else "unknown").inc()


def expected_share(counts: dict, window: int, z: float = Z_99) -> tuple[float, float]:
    """The range of the fractured share expected over ``window`` images, from one operating point's
    validation counts (tp, fp, tn, fn): the validation split's positive-verdict rate p, plus or minus
    ``z`` standard errors of the binomial share for ``window`` images and of p itself."""
    positives = counts["tp"] + counts["fp"]
    total = positives + counts["tn"] + counts["fn"]
    p = positives / total
    spread = z * math.sqrt(p * (1 - p) * (1 / window + 1 / total))
    return max(0.0, p - spread), min(1.0, p + spread)


class DriftMonitor:
    """The share of fractured verdicts (at ``threshold``) over the last ``window`` images.

    The gauge follows every image; the warning is logged once when a full window leaves
    ``[low, high]``, and an info line when it comes back. Safe to share between threads.
    """

    def __init__(self, window: int, low: float, high: float, threshold: float) -> None:
        self.window, self.low, self.high, self.threshold = window, low, high, threshold
        self._recent: deque[bool] = deque(maxlen=window)
        self._fractured = 0
        self._outside = False
        self._lock = threading.Lock()
        EXPECTED_LOW.set(low)
        EXPECTED_HIGH.set(high)

    @classmethod
    def for_model(cls, model: FractureModel, window: int) -> DriftMonitor | None:
        """A monitor at the model's default operating point, or None when its metadata lacks the counts."""
        point = model.default_operating_point
        counts = model.metadata["operating_points"][point]
        if not all(key in counts for key in COUNTS):
            log.info("no drift signal: metadata.json lacks the validation counts of %r", point)
            return None
        return cls(window, *expected_share(counts, window), threshold=model.thresholds[point])

    def add(self, fractured: bool) -> float:
        """Add one verdict; the share over the window now."""
        with self._lock:
            if len(self._recent) == self.window:
                self._fractured -= self._recent[0]
            self._recent.append(fractured)
            self._fractured += fractured
            share = self._fractured / len(self._recent)
            outside = len(self._recent) == self.window and not self.low <= share <= self.high
            changed, self._outside = outside != self._outside, outside
        FRACTURED_SHARE.set(share)
        if changed and outside:
            log.warning("drift: %.1f%% fractured verdicts over the last %d images, expected %.1f%% to %.1f%% "
                        "(a new scanner, a changed export or a wrong window?)",
                        100 * share, self.window, 100 * self.low, 100 * self.high)
        elif changed:
            log.info("drift: the fractured share is back in its expected range (%.1f%%)", 100 * share)
        return share


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus text format and its content type: summed over every process
    that writes to ``PROMETHEUS_MULTIPROC_DIR`` when it is set, else this process's own."""
    if prometheus_multiproc_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST

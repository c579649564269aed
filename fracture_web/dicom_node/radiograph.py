"""The reading of one received radiograph, as the node's results need it: its dataset (parsed once,
by the node or the worker) through the app's analysis, with the display image for the Secondary
Capture, counted and its stages timed in the process's metrics. Nothing about the patient is
logged: only the verdict and probability."""
from __future__ import annotations

import logging

from pydicom import Dataset

from ..analysis import Analysis, analyse_dataset
from ..inference import FractureModel
from ..metrics import DriftMonitor, record_prediction, record_stages
from ..timings import StageTimings

log = logging.getLogger(__name__)

#: Longest side of the Secondary Capture image.
DISPLAY_MAX_SIDE = 1024


def read_radiograph(source: Dataset, model: FractureModel, operating_point: str | None,
                    drift: DriftMonitor | None = None) -> Analysis:
    """The app's analysis of one received radiograph (its dataset), with display images for the
    Secondary Capture; counted in this process's metrics (verdict, out-of-scope warning, the
    ``drift`` window, the time of each stage: decode, model, findings, render)."""
    timings = StageTimings()
    analysis = analyse_dataset(source, model, operating_point, display_max_side=DISPLAY_MAX_SIDE, timings=timings)
    p = analysis.prediction
    record_stages(timings)
    record_prediction(p, drift)
    log.info("analysed a radiograph: %s, probability %.3f (%s)", p.label, p.probability, p.operating_point)
    return analysis

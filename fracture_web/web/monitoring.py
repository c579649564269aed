"""``/metrics`` for Prometheus, and the web layer's side of ``fracture_web.metrics``: each
prediction request by endpoint, each refusal by reason, each analysed image and its drift window,
and the time each stage of a request's analysis took (``stage_timings``).

``METRICS`` off answers 404 at ``/metrics``; otherwise keep it off the public path at the
reverse proxy (docs/operations.md, Metrics). The page holds no patient data: counts only.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from contextlib import AbstractContextManager

from flask import Blueprint, Flask, Response, abort, current_app, g, request

from .. import metrics
from ..inference import Prediction
from ..timings import StageTimings
from . import extension

bp = Blueprint("monitoring", __name__)

KEY = "fracture_drift"
#: The prediction views and the endpoint label their requests are counted under.
ENDPOINTS = {"fracture.predict_page": "page", "fracture.predict_api": "predict", "fracture.studies_api": "studies"}


def init_app(app: Flask) -> None:
    """Start the drift window for the loaded model, count requests before any other hook can
    refuse them, record each request's stage timings once its answer is made, and serve ``/metrics``."""
    model = app.extensions.get(extension.KEY)
    app.extensions[KEY] = (None if model is None
                           else metrics.DriftMonitor.for_model(model, app.config["METRICS_DRIFT_WINDOW"]))
    app.before_request(count_request)
    app.after_request(record_stages)
    app.register_blueprint(bp)


def count_request() -> None:
    """Count a request to a prediction view."""
    endpoint = ENDPOINTS.get(request.endpoint or "")
    if endpoint is not None:
        metrics.record_request(endpoint)


def stage_timings() -> StageTimings:
    """This request's stage timings (made on first use), for the analysis to fill."""
    if "stage_timings" not in g:
        g.stage_timings = StageTimings()
    return g.stage_timings


def stage(name: str) -> AbstractContextManager[None]:
    """Time a block of this request under ``name`` (a view's ``"encode"`` of its answer)."""
    return stage_timings().stage(name)


def record_stages(response: Response) -> Response:
    """After a request's answer is made: the stages it was timed in, to the metrics."""
    timings = g.pop("stage_timings", None)
    if timings is not None:
        metrics.record_stages(timings)
    return response


class Timer:
    """Seconds since it was made: ``done(predictions)`` records the analysis and each image's verdict."""

    def __init__(self) -> None:
        self._started = time.perf_counter()

    def done(self, predictions: Iterable[Prediction]) -> None:
        """Record the request's analysis time under its endpoint, then each analysed image."""
        metrics.record_analysis(ENDPOINTS[request.endpoint], time.perf_counter() - self._started)
        drift = current_app.extensions.get(KEY)
        for prediction in predictions:
            metrics.record_prediction(prediction, drift)


def enabled() -> bool:
    """Whether ``/metrics`` is served (``METRICS``, a boolean setting: on unless set false/off/no/0)."""
    return current_app.config["METRICS"]


@bp.get("/metrics")
def metrics_page():
    """Every metric in Prometheus text format, summed over gunicorn's workers; 404 when turned off."""
    if not enabled():
        abort(404)
    body, content_type = metrics.exposition()
    return body, 200, {"Content-Type": content_type, "Cache-Control": "no-store"}

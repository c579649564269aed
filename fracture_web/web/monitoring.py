"""``/metrics`` for Prometheus, and the web layer's side of ``fracture_web.metrics``: each
prediction request by endpoint, each refusal by reason, each analysed image and its drift window.

``METRICS`` off answers 404 at ``/metrics``; otherwise keep it off the public path at the
reverse proxy (docs/operations.md, Metrics). The page holds no patient data: counts only.
"""
from __future__ import annotations

import time
from collections.abc import Iterable

from flask import Blueprint, Flask, abort, current_app, request

from .. import metrics
from ..inference import Prediction
from . import extension

bp = Blueprint("monitoring", __name__)

KEY = "fracture_drift"
#: The prediction views and the endpoint label their requests are counted under.
ENDPOINTS = {"fracture.predict_page": "page", "fracture.predict_api": "predict", "fracture.studies_api": "studies"}


def init_app(app: Flask) -> None:
    """Start the drift window for the loaded model, count requests before any other hook can
    refuse them, and serve ``/metrics``."""
    model = app.extensions.get(extension.KEY)
    app.extensions[KEY] = (None if model is None
                           else metrics.DriftMonitor.for_model(model, app.config["METRICS_DRIFT_WINDOW"]))
    app.before_request(count_request)
    app.register_blueprint(bp)


def count_request() -> None:
    """Count a request to a prediction view."""
    endpoint = ENDPOINTS.get(request.endpoint or "")
    if endpoint is not None:
        metrics.record_request(endpoint)


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

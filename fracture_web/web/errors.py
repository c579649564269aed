"""HTTP errors as a page for people and as JSON for the API; never a traceback."""
from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError

from .. import metrics
from .extension import get_model

log = logging.getLogger(__name__)

MESSAGES = {
    400: "The request could not be understood.",
    403: "Requests from other web sites are refused.",
    404: "There is no page at this address.",
    405: "This address does not accept that kind of request.",
    408: "The upload was too slow, stalled or was cut off before the whole file arrived; please try again.",
    413: "The file is too large to upload.",
    503: "The model is not loaded yet; try again in a moment.",
}
#: The refusals counted in ``fracture_refusals_total``, by status (404, 405 and 500 are no refusal).
REFUSALS = {400: "bad_request", 403: "cross_site", 408: "upload_stalled", 413: "too_large", 503: "no_model"}


def init_app(app: Flask) -> None:
    """Register the handlers."""
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected)


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def handle_http_error(err: HTTPException):
    """A clear message with the right status; a refusal is counted under its reason."""
    status = err.code or 500
    if status in REFUSALS:
        metrics.record_refusal(REFUSALS[status])
    message = MESSAGES.get(status, err.description or "Something went wrong.")
    if status == 413:
        limit = request.max_content_length or 0
        message = (f"The file is too large to upload (the limit is {limit // (1024 * 1024)} MB, "
                   "for all the files of one upload together).")
    return respond(message, status)


def respond(message: str, status: int):
    """``message`` as JSON for the API, or on the upload page for people."""
    if _wants_json():
        return jsonify(error=message), status
    return render_template("index.html", model=get_model(), error=message), status


def handle_unexpected(err: Exception):
    """Log the error (no request content) and answer 500 without a traceback."""
    log.exception("unhandled error on %s %s", request.method, request.path)
    return handle_http_error(InternalServerError())

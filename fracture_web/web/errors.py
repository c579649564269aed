"""Every error answer, as a page for people and as JSON for the API; never a traceback.

Views raise or ``abort``; the handlers registered here find the refusal's row in
``fracture_web.refusals`` (by exception type or HTTP status), count it under its reason, and
answer with its status and message.
"""
from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError

from .. import fhir, metrics, refusals
from ..refusals import Refusal, Refused
from .extension import get_model

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Register a handler for each domain exception, for ``Refused``, for HTTP errors and for the rest."""
    for kind in refusals.BY_EXCEPTION:
        app.register_error_handler(kind, handle_domain_error)
    app.register_error_handler(Refused, handle_refused)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected)


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def wants_fhir() -> bool:
    """Whether the client prefers FHIR R4 (``Accept: application/fhir+json``) to plain JSON, the
    default and the answer to a client that takes both alike."""
    return request.accept_mimetypes.best_match(["application/json", fhir.FHIR_JSON]) == fhir.FHIR_JSON


def refuse(refusal: Refusal, message: str | None = None):
    """Count the refusal under its reason (if it has one) and answer with its status and ``message``
    (by default the row's own)."""
    if refusal.label is not None:
        metrics.record_refusal(refusal.label)
    return respond(refusal.text() if message is None else message, refusal.status, dict(refusal.headers))


def handle_domain_error(err: Exception):
    """A domain exception from the analysis (an unreadable image, an unknown operating point...)."""
    refusal = refusals.for_exception(err)
    return refuse(refusal, refusal.text(err))


def handle_refused(err: Refused):
    """A refusal the web layer raised, with its message already filled in."""
    return refuse(err.refusal, str(err))


def handle_http_error(err: HTTPException):
    """An HTTP error by its status: its row's message, or Werkzeug's description for a status not in the table."""
    status = err.code or 500
    refusal = refusals.BY_STATUS.get(status)
    if status == 413 and request.endpoint == "access.sign_in":  # no site's token is that long
        refusal = refusals.WRONG_TOKEN
    if refusal is None:
        return respond(err.description or "Something went wrong.", status)
    limit_mb = (request.max_content_length or 0) // (1024 * 1024)
    return refuse(refusal, refusal.text(limit_mb=limit_mb))


def respond(message: str, status: int, headers: dict[str, str] | None = None):
    """``message`` as JSON for the API (a FHIR OperationOutcome to a client that asked for FHIR), or
    on the upload page for people."""
    if wants_fhir():
        body = fhir.operation_outcome(message, status).model_dump_json()
        return current_app.response_class(body, status, headers or {}, mimetype=fhir.FHIR_JSON)
    if _wants_json():
        return jsonify(error=message), status, headers or {}
    return render_template("index.html", model=get_model(), error=message), status, headers or {}


def handle_unexpected(err: Exception):
    """Log the error (no request content) and answer 500 without a traceback."""
    log.exception("unhandled error on %s %s", request.method, request.path)
    return handle_http_error(InternalServerError())

"""The audit trail: one JSON line per prediction, for the clinic's records.

It holds the time, a request id (also sent back as ``X-Request-ID``), the SHA-256 of the
upload, the model version, the operating point, the probability and the verdict; never
pixels, file names or anything else that could identify a patient.
"""
from __future__ import annotations

import hashlib
import json
import logging
import sys
import uuid
from datetime import datetime, timezone

from flask import Flask, Response, after_this_request, g

from ..analysis import Analysis
from ..config import SettingsError

log = logging.getLogger("fracture_web.audit")
#: What an audit line keeps of a prediction's written shape (``Prediction.as_dict``, rounded as the API
#: answers); never the analysis's warnings or DICOM context, so nothing beyond the model's answer reaches the trail.
AUDITED = ("model_version", "operating_point", "probability")


def init_app(app: Flask) -> None:
    """Send audit lines to ``AUDIT_LOG`` (a file path) or, when unset, to stdout."""
    target = app.config.get("AUDIT_LOG")
    if not any(getattr(h, "audit_target", None) == target for h in log.handlers):
        handler = _file_handler(target) if target else logging.StreamHandler(sys.stdout)
        handler.audit_target = target
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    app.before_request(_assign_request_id)
    app.after_request(_send_request_id)


def _file_handler(target: str) -> logging.FileHandler:
    """A handler appending to ``target``; a path that cannot be written stops start-up, saying so."""
    try:
        return logging.FileHandler(target)
    except OSError as err:
        raise SettingsError(f"FRACTURE_AUDIT_LOG names a file that cannot be opened for writing ({target!r}: "
                            f"{err.strerror or type(err).__name__}).") from None


def _assign_request_id() -> None:
    g.request_id = uuid.uuid4().hex


def _send_request_id(response: Response) -> Response:
    if "request_id" in g:
        response.headers["X-Request-ID"] = g.request_id
    return response


def record(upload: bytes, result: Analysis, analysis_id: str | None = None) -> None:
    """Write the audit line for one analysed upload, with the same values as the API's answer,
    as soon as the answer has been sent; a study's files each under their own ``analysis_id``
    (the request id and the file's number, as the analysis is stored), else the request's id.

    Hashing is the line's only real work, and nobody waits for it: the SHA-256 of a large DICOM is
    taken once the answer has gone. Its time is that of the analysis."""
    facts = result.prediction.as_dict(rounded=True)
    line = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "request_id": analysis_id or g.get("request_id")}
    answer = {key: facts[key] for key in AUDITED} | {"verdict": facts["label"]}

    @after_this_request
    def write_once_sent(response: Response) -> Response:
        response.call_on_close(lambda: log.info(json.dumps(
            line | {"sha256": hashlib.sha256(upload).hexdigest()} | answer, allow_nan=False)))
        return response

"""The reader's answer for an analysis: ``POST /api/v1/reads`` (JSON, for a RIS, a script or a
viewer plug-in), the result page's one-click form (``POST /reads``, no JavaScript needed), and the
stored analysis read back by its id (``GET /api/v1/analyses/<id>``). A DICOM node's result is stored
under its Secondary Capture's SOP Instance UID (``reads.results``), and read by that UID the same way.

Every analysis is stored under its answer's ``request_id`` (:func:`record`). The database being
unreachable never fails an analysis: it answers, and says its read cannot be saved; a read sent
then is refused with 503, so the reader knows it was not kept.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable

import click
from flask import Blueprint, Flask, current_app, g, jsonify, render_template, request

from ..analysis import Analysis
from ..reads.models import READS
from ..reads.store import (NoSuchFindingError, ReadStore, StoredAnalysis, StoreUnavailableError, UnknownAnalysisError,
                           database_url)
from ..refusals import READ_MALFORMED, READS_UNAVAILABLE, UNKNOWN_ANALYSIS, Refused
from .extension import get_model

log = logging.getLogger(__name__)
bp = Blueprint("reads", __name__)
KEY = "fracture_reads"

#: An analysis id as the app gives them (the audit line's request id, "-N" for a study's Nth file), or the
#: SOP Instance UID of a DICOM node's result (digits and dots, at most 64 characters).
ID = re.compile(r"[0-9a-f]{32}(-[0-9]{1,2})?|(?=[0-9.]{1,64}$)[0-9]+(\.[0-9]+)+")
#: A finding's number as the result page's read form sends it (ASCII digits: ``int`` reads others too).
RANK = re.compile(r"[1-9][0-9]?")
#: A reader code the site chooses (letters, digits, ".", "_", "-"): never a name.
READER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")


def init_app(app: Flask) -> None:
    """Open the store (``DATABASE_URL``, else SQLite in the instance folder), migrate it, serve the routes.

    A database that cannot be reached now is logged and tried again at its first use."""
    store = ReadStore.open(database_url(app.config["DATABASE_URL"], app.instance_path))
    app.extensions[KEY] = store
    try:
        store.upgrade()
    except StoreUnavailableError as err:
        log.warning("reads will not be kept until the database answers: %s", err)
    app.register_blueprint(bp)
    app.cli.command("reads-upgrade")(upgrade_command)


def upgrade_command() -> None:
    """Build or migrate the reads' database now (``flask --app fracture_web reads-upgrade``); the app also
    does it at start-up."""
    store = get_store()
    try:
        store.upgrade()
    except StoreUnavailableError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"The reads' database ({store.engine.dialect.name}) is up to date.")


def get_store() -> ReadStore:
    return current_app.extensions[KEY]


def record(results: Iterable[tuple[str, Analysis]]) -> bool:
    """Store each ``(id, analysis)``; False (and a warning) when the database cannot take them."""
    try:
        for analysis_id, result in results:
            get_store().add_analysis(analysis_id, result.prediction, result.context)
    except StoreUnavailableError as err:
        log.warning("an analysis was answered but not stored: %s", err)
        return False
    return True


def study_ids(count: int) -> list[str]:
    """The ids of a study's files: the request id with the file's number."""
    return [f"{g.request_id}-{number}" for number in range(1, count + 1)]


def _checked(analysis_id: object, read: object, reader: object, findings_right: object) -> tuple:
    """The read's fields, checked; ``READ_MALFORMED`` naming the first wrong one."""
    if not isinstance(analysis_id, str) or not ID.fullmatch(analysis_id):
        raise Refused(READ_MALFORMED, problem="'request_id' must be the request_id of an analysis, or the UID of a "
                                              "DICOM node's result.")
    if read not in READS:
        raise Refused(READ_MALFORMED, problem=f"'read' must be one of {', '.join(READS)}.")
    if reader is not None and (not isinstance(reader, str) or not READER.fullmatch(reader)):
        raise Refused(READ_MALFORMED, problem="'reader' is a code of up to 32 letters, digits, '.', '_' or '-', "
                                              "starting with a letter or digit (never a name).")
    if findings_right is not None and not (isinstance(findings_right, list) and all(
            isinstance(rank, int) and not isinstance(rank, bool) and 1 <= rank <= 99 for rank in findings_right)):
        raise Refused(READ_MALFORMED, problem="'findings_right' lists the numbers (1, 2, ...) of the findings that "
                                              "were right.")
    if findings_right and read != "fractured":
        raise Refused(READ_MALFORMED, problem=f"'findings_right' goes with the read 'fractured' only: a {read!r} "
                                              "read confirms no finding.")
    return analysis_id, read, reader, None if findings_right is None else tuple(sorted(set(findings_right)))


def _stored(work: Callable[[ReadStore], StoredAnalysis], analysis_id: str) -> StoredAnalysis:
    """What ``work`` gives from the store; an unknown id is a 404, an unreachable database a 503."""
    try:
        return work(get_store())
    except UnknownAnalysisError:
        raise Refused(UNKNOWN_ANALYSIS, analysis_id=analysis_id) from None
    except NoSuchFindingError as err:
        raise Refused(READ_MALFORMED, problem=f"'findings_right' numbers the findings shown: {err}.") from None
    except StoreUnavailableError as err:
        log.warning("the reads' database did not answer: %s", err)
        raise Refused(READS_UNAVAILABLE) from None


def _save(analysis_id: str, read: str, reader: str | None, findings_right: tuple[int, ...] | None) -> StoredAnalysis:
    return _stored(lambda store: store.add_read(analysis_id, read, reader, findings_right), analysis_id)


def as_dict(stored: StoredAnalysis) -> dict:
    """A stored analysis as the API gives it back (times in ISO 8601, UTC)."""
    return {"request_id": stored.id, "analysed_at": stored.analysed_at.isoformat(), "source": stored.source,
            "model_version": stored.model_version, "operating_point": stored.operating_point,
            "threshold": stored.threshold, "calibration": stored.calibration,
            "probability": round(stored.probability, 6), "fractured": stored.fractured,
            "findings": list(stored.findings), "body_part": stored.body_part, "view": stored.view,
            "read": stored.read, "read_at": stored.read_at and stored.read_at.isoformat(), "reader": stored.reader,
            "findings_right": None if stored.findings_right is None else list(stored.findings_right),
            "reads_given": stored.reads_given}


@bp.post("/api/v1/reads")
def read_api():
    """``{"request_id": ..., "read": "fractured" | "not_fractured" | "unsure"}`` (optionally ``reader``
    and ``findings_right``) -> the stored analysis with the read that now counts."""
    if not request.is_json:
        raise Refused(READ_MALFORMED, problem="send it as JSON, with 'Content-Type: application/json'.")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Refused(READ_MALFORMED, problem="send a JSON object with 'request_id' and 'read'.")
    fields = _checked(body.get("request_id"), body.get("read"), body.get("reader"), body.get("findings_right"))
    return jsonify(as_dict(_save(*fields)))


@bp.get("/api/v1/analyses/<analysis_id>")
def analysis_api(analysis_id: str):
    """The stored analysis and its read, by its id."""
    if not ID.fullmatch(analysis_id):
        raise Refused(READ_MALFORMED, problem="that is not the form of an analysis's id (a request_id, or the UID "
                                              "of a DICOM node's result).")
    return jsonify(as_dict(_stored(lambda store: store.get(analysis_id), analysis_id)))


@bp.post("/reads")
def read_form():
    """The result page's read buttons: the read saved, and a page that says so (or, asked for JSON
    by the page's script, the stored analysis)."""
    # boxes ticked before a button other than "Fracture" was pressed confirm nothing
    ranks = request.form.getlist("right") if request.form.get("read") == "fractured" else []
    if not all(RANK.fullmatch(rank) for rank in ranks):
        raise Refused(READ_MALFORMED, problem="the findings ticked are numbered 1, 2, ...")
    fields = _checked(request.form.get("request_id"), request.form.get("read"),
                      request.form.get("reader") or None, [int(rank) for rank in ranks] if ranks else None)
    stored = _save(*fields)
    if request.accept_mimetypes.best == "application/json":
        return jsonify(as_dict(stored))
    return render_template("index.html", model=get_model(), read_saved=stored)

"""The blueprint: upload page (one image or one study), JSON API and health check."""
from __future__ import annotations

import base64
from contextlib import closing
from datetime import datetime, timezone

from flask import Blueprint, abort, current_app, g, jsonify, render_template, request
from werkzeug.datastructures import FileStorage

from .. import fhir, refusals
from ..analysis import Analysis, StudyAnalysis, analyse, analyse_study
from ..inference import FractureModel
from ..refusals import Refused
from . import audit, monitoring, reads
from .errors import wants_fhir
from .extension import get_model

bp = Blueprint("fracture", __name__)


def _uploaded_files() -> list[bytes]:
    """The bytes of each file in the ``file`` form field, in upload order (at least one). A part with
    content is a file whatever its file name; one with neither is a form sent without choosing a file.
    A file in any other field is refused rather than left unread."""
    others = [name for name in request.files if name != "file"]
    if others:
        raise Refused(refusals.WRONG_FIELD, field=others[0])
    uploads = [data for file in request.files.getlist("file")
               if (data := _read_and_close(file)) or file.filename]
    if not uploads:
        raise Refused(refusals.NO_FILE)
    return uploads


def _read_and_close(file: FileStorage) -> bytes:
    """The uploaded file's bytes; its in-memory stream is freed at once (a full-size DICOM is
    otherwise held twice while it is analysed)."""
    with closing(file):
        return file.read()


#: Content types of a request whose body is the file itself (``curl --data-binary @x.dcm -H
#: 'Content-Type: application/dicom'``): no multipart form to parse. The format is still read from the bytes.
RAW_BODY_TYPES = frozenset({"application/dicom", "application/octet-stream"})


def _one_upload() -> bytes:
    """The bytes of the single uploaded file: the body itself for a raw upload (an ``image/*``
    or ``RAW_BODY_TYPES`` content type), else the form field ``file``."""
    if request.mimetype in RAW_BODY_TYPES or request.mimetype.startswith("image/"):
        data = request.get_data()
        if not data:
            raise Refused(refusals.EMPTY_BODY)
        return data
    uploads = _uploaded_files()
    if len(uploads) > 1:
        raise Refused(refusals.ONE_AT_A_TIME)
    return uploads[0]


def _study_uploads() -> list[bytes]:
    """The bytes of the uploaded files, at most ``MAX_STUDY_IMAGES`` of them."""
    uploads = _uploaded_files()
    limit = current_app.config["MAX_STUDY_IMAGES"]
    if len(uploads) > limit:
        raise Refused(refusals.STUDY_TOO_LARGE, limit=limit, sent=len(uploads))
    return uploads


def _model() -> FractureModel:
    """The loaded model, or 503 while there is none."""
    model = get_model()
    if model is None:
        abort(503)
    return model


def _run(model: FractureModel, upload: bytes, images: bool, keep: bool = True,
         model_view: bool = False) -> tuple[Analysis, bool]:
    """Analyse one uploaded file, count, audit and (unless not ``keep``) store it under the request id;
    the analysis and whether it was stored. The domain errors it raises are answered by ``errors``."""
    timer = monitoring.Timer()
    result = analyse(upload, model, request.values.get("operating_point") or None, images=images,
                     display_max_side=current_app.config["DISPLAY_MAX_SIDE"], timings=monitoring.stage_timings(),
                     model_view=model_view)
    timer.done([result.prediction])
    audit.record(upload, result)
    return result, keep and reads.record([(g.request_id, result)])


def _run_study(model: FractureModel, uploads: list[bytes], images: bool,
               model_view: bool = False) -> tuple[StudyAnalysis, list[str], bool]:
    """Analyse the uploaded files as one study, counted, with an audit line and a stored record per
    analysed file; the study, each file's id (the request id and its number) and whether they were stored."""
    timer = monitoring.Timer()
    study = analyse_study(uploads, model, request.values.get("operating_point") or None, images=images,
                          display_max_side=current_app.config["DISPLAY_MAX_SIDE"], timings=monitoring.stage_timings(),
                          model_view=model_view)
    timer.done(image.analysis.prediction for image in study.images if image.analysis is not None)
    ids = reads.study_ids(len(uploads))
    for upload, image, analysis_id in zip(uploads, study.images, ids):
        if image.analysis is not None:
            audit.record(upload, image.analysis, analysis_id)
    stored = reads.record((analysis_id, image.analysis) for analysis_id, image in zip(ids, study.images)
                          if image.analysis is not None)
    return study, ids, stored


def _page(**context):
    return render_template("index.html", model=get_model(), **context)


@bp.get("/")
def index():
    """The upload form."""
    return _page()


@bp.post("/")
def predict_page():
    """Form upload -> result page (server-rendered, works without JavaScript): one image as
    always, or several views of one study with the study verdict first."""
    model = _model()
    uploads = _study_uploads()
    if len(uploads) > 1:
        return _study_page(*_run_study(model, uploads, images=True))
    # The camera page's live mode sends a frame a second: answered and audited, but not kept for the
    # site's statistics (no one reads them; a captured frame is kept like any upload).
    live = request.form.get("live") == "1"
    result, stored = _run(model, uploads[0], images=True, keep=not live)
    with monitoring.stage("encode"):
        return _page(result=result, chosen=result.prediction.operating_point, analysed_at=_now(),
                     xray_uri=_data_uri(result.xray_png), overlay_uri=_data_uri(result.overlay_jpeg, "image/jpeg"),
                     analysis_id=g.request_id, stored=stored, live=live)


def _study_page(study: StudyAnalysis, analysis_ids: list[str], stored: bool):
    """The study verdict, then each view: its X-ray with the boxes and a read form, or why it could not be read."""
    with monitoring.stage("encode"):
        xray_uris = [None if image.analysis is None else _data_uri(image.analysis.xray_png) for image in study.images]
        return _page(study=study, xray_uris=xray_uris, chosen=study.verdict.operating_point, analysed_at=_now(),
                     analysis_ids=analysis_ids, stored=stored)


#: ``?heatmap=`` values that ask for the overlay, and its encoding: it comes under ``heatmap_`` and
#: the format's name. PNG as ever (lossless); JPEG a ninth of the bytes and a quarter of the encoding time.
HEATMAP_FORMATS = {"1": "png", "true": "png", "yes": "png", "png": "png", "jpeg": "jpeg", "jpg": "jpeg"}


#: ``?heatmap=`` values that ask for no overlay (the default).
NO_HEATMAP = frozenset({"0", "false", "no", ""})


def _heatmap_format() -> str | None:
    """The overlay's format the request asks for (``png`` or ``jpeg``), None for no overlay; another
    value is refused rather than answered without the overlay it may have meant."""
    value = request.args.get("heatmap", "0").lower()
    if value not in HEATMAP_FORMATS and value not in NO_HEATMAP:
        raise Refused(refusals.BAD_HEATMAP, value=value[:20])
    return HEATMAP_FORMATS.get(value)


def _wants_heatmap() -> bool:
    return _heatmap_format() is not None


def _heatmap_entry(analysis: Analysis) -> dict[str, str]:
    """The overlay as the answer carries it: base64 under a key naming its format."""
    encoded = analysis.overlay_jpeg if _heatmap_format() == "jpeg" else analysis.overlay_png
    return {f"heatmap_{_heatmap_format()}": _base64(encoded)}


def _fhir_answer(bundle: fhir.Bundle):
    return current_app.response_class(bundle.model_dump_json(), mimetype=fhir.FHIR_JSON)


def _base64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


@bp.post("/api/v1/predict")
def predict_api():
    """Multipart ``file``, or the file as the body (any image or DICOM) -> JSON verdict;
    ``?heatmap=1`` adds the X-ray as the model saw it with its fracture map overlaid, as base64 PNG
    (``heatmap_png``); ``?heatmap=jpeg`` adds it as base64 JPEG (``heatmap_jpeg``). ``request_id`` is the id a read for it is sent with;
    ``stored`` says whether it was kept (false: the database is unreachable, a read cannot be saved).
    With ``Accept: application/fhir+json``: a FHIR R4 Bundle with a DiagnosticReport (``fracture_web.fhir``)."""
    result, stored = _run(_model(), _one_upload(), images=_wants_heatmap(), model_view=True)
    with monitoring.stage("encode"):
        if wants_fhir():
            return _fhir_answer(fhir.report_bundle(result, g.request_id, datetime.now(timezone.utc)))
        body = result.as_dict() | {"request_id": g.request_id, "stored": stored}
        if _wants_heatmap():
            body |= _heatmap_entry(result)
        return jsonify(body)


@bp.post("/api/v1/studies")
def studies_api():
    """Several ``file`` fields, the views of one study -> the study verdict and, in upload order,
    each file's answer as ``/api/v1/predict`` gives it (its own ``request_id``), or ``{"error": ...}`` for one
    it could not read; ``stored`` as for one image. With ``Accept: application/fhir+json``: one FHIR R4
    DiagnosticReport for the study, with an Observation per readable view."""
    study, ids, stored = _run_study(_model(), _study_uploads(), images=_wants_heatmap(), model_view=True)
    with monitoring.stage("encode"):
        if wants_fhir():
            return _fhir_answer(fhir.study_bundle(study, g.request_id, ids, datetime.now(timezone.utc)))
        body = study.as_dict() | {"stored": stored}
        for entry, image, analysis_id in zip(body["images"], study.images, ids):
            if image.analysis is not None:
                entry["request_id"] = analysis_id
        if _wants_heatmap():  # each analysed file's entry as /api/v1/predict?heatmap=1 gives it
            for entry, image in zip(body["images"], study.images):
                if image.analysis is not None:
                    entry |= _heatmap_entry(image.analysis)
        return jsonify(body)


@bp.get("/healthz")
def healthz():
    """200 with the model version, the runtime serving it and the export it serves (null for the
    SavedModel) once the model is loaded, 503 before."""
    model = get_model()
    if model is None:
        return jsonify(status="loading", model_version=None, backend=None, model_file=None), 503
    return jsonify(status="ok", model_version=model.version, backend=model.backend, model_file=model.served_file)


def _data_uri(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64," + _base64(data)


def _now() -> str:
    """The local time for the result page's footer line."""
    return datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")

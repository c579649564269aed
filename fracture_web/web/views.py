"""The blueprint: upload page, JSON API and health check."""
from __future__ import annotations

import base64
import hmac
from datetime import datetime

from flask import Blueprint, abort, current_app, jsonify, render_template, request

from ..analysis import Analysis, analyse
from ..pixels import InvalidImageError
from ..inference import UnknownOperatingPointError
from . import audit
from .extension import get_model

bp = Blueprint("fracture", __name__)


class UploadError(ValueError):
    """The request does not carry exactly one file in the ``file`` field."""


def _uploaded_bytes() -> bytes:
    """The bytes of the single file in the ``file`` form field."""
    files = request.files.getlist("file")
    if not files or not files[0].filename and not files[0].content_length:
        others = [name for name in request.files if name != "file"]
        hint = f" (found a field named {others[0]!r})" if others else ""
        raise UploadError(f"No file was uploaded: send the image in the form field 'file'{hint}.")
    if len(files) > 1:
        raise UploadError("Upload one image at a time.")
    return files[0].read()


def _run(images: bool) -> Analysis:
    """Analyse the uploaded file; raises the domain errors for the caller to render."""
    model = get_model()
    if model is None:
        abort(503)
    upload = _uploaded_bytes()
    result = analyse(upload, model, request.values.get("operating_point") or None,
                     images=images, display_max_side=current_app.config["DISPLAY_MAX_SIDE"])
    audit.record(upload, result)
    return result


def _page(status: int = 200, **context):
    return render_template("index.html", model=get_model(), **context), status


@bp.get("/")
def index():
    """The upload form."""
    return _page()


@bp.post("/")
def predict_page():
    """Form upload -> result page (server-rendered, works without JavaScript)."""
    try:
        result = _run(images=True)
    except (InvalidImageError, UploadError, UnknownOperatingPointError) as err:
        return _page(400, error=str(err))
    return _page(result=result, chosen=result.prediction.operating_point,
                 analysed_at=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
                 xray_uri=_data_uri(result.xray_png), overlay_uri=_data_uri(result.overlay_png))


def _api_token_ok() -> bool:
    """True unless ``API_TOKEN`` is configured and the request lacks ``Authorization: Bearer <it>``."""
    token = current_app.config.get("API_TOKEN")
    if not token:
        return True
    sent = request.headers.get("Authorization", "")
    return hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())


@bp.post("/api/v1/predict")
def predict_api():
    """Multipart ``file`` (any image or DICOM) -> JSON verdict; ``?heatmap=1`` adds the overlay as base64 PNG."""
    if not _api_token_ok():
        return jsonify(error="This API needs the header 'Authorization: Bearer <token>'."), 401
    want_heatmap = request.args.get("heatmap", "0").lower() in ("1", "true", "yes")
    try:
        result = _run(images=want_heatmap)
    except (InvalidImageError, UploadError, UnknownOperatingPointError) as err:
        return jsonify(error=str(err)), 400
    body = result.as_dict()
    if want_heatmap:
        body["heatmap_png"] = base64.b64encode(result.overlay_png).decode("ascii")
    return jsonify(body)


@bp.get("/healthz")
def healthz():
    """200 with the model version once the model is loaded, 503 before."""
    model = get_model()
    if model is None:
        return jsonify(status="loading", model_version=None), 503
    return jsonify(status="ok", model_version=model.version)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")

"""The camera page: the device's camera in the browser, for sites where the radiograph is a film on
a light box or an image on a monitor nobody can export from.

The page only shows the camera and a frame guide; each captured frame is sent, as a JPEG in
memory, to the upload form's own endpoint (same sign-in, CSRF token and analysis), whose result
the page shows beside the picture. The browser allows the camera on ``localhost`` or over HTTPS only.
"""
from __future__ import annotations

from flask import Blueprint, render_template

from .extension import get_model

bp = Blueprint("camera", __name__)


@bp.get("/camera")
def camera_page():
    """The live camera with a frame guide, a capture button and an optional live mode."""
    return render_template("camera.html", model=get_model())

"""Uploads stay in memory and may not take forever.

Werkzeug would otherwise spool files over 500 KB to a temp file; and a client that stops
sending in the middle of an upload would otherwise hold a gunicorn thread for good.
"""
from __future__ import annotations

import io

from flask import Flask, Request, abort, current_app, request
from werkzeug.exceptions import ClientDisconnected


class InMemoryRequest(Request):
    """A request whose uploaded files are kept in RAM, never written to disk.

    ``MAX_CONTENT_LENGTH`` bounds how much memory one request can take.
    """

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


#: Bodies that are forms; any other body is read whole, as the uploaded file itself.
FORM_TYPES = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})


def init_app(app: Flask) -> None:
    """Keep uploads in memory and bound the time a client may take to send one."""
    app.request_class = InMemoryRequest
    app.before_request(receive_upload)


def receive_upload() -> None:
    """Read a POST's body into memory now, allowing ``UPLOAD_TIMEOUT`` seconds between packets.

    gunicorn's threads would otherwise wait forever on a stalled upload, and a handful of
    them would leave no thread to serve anyone else. A client that stalls past the timeout
    or cuts the body off gets 408 (Werkzeug reports both as ``ClientDisconnected``). Under
    the development server there is no socket to set a timeout on.
    """
    if request.method != "POST":
        return
    sock = request.environ.get("gunicorn.socket")
    if sock is not None:
        sock.settimeout(current_app.config["UPLOAD_TIMEOUT"])
    try:
        if request.mimetype in FORM_TYPES:
            # Parsed as it arrives: the file part is the only copy of the body (reading the whole body
            # first would hold it twice; a 32 MB DICOM's request then peaked at 3.8x its pixels, not 2.8x).
            request.files
        else:
            request.get_data(cache=True)  # the file itself is the body (the API's raw uploads)
    except (TimeoutError, ClientDisconnected):
        abort(408)

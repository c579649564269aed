"""Uploads stay in memory and may not take forever.

Werkzeug would otherwise spool files over 500 KB to a temp file; and a client that stops
sending in the middle of an upload would otherwise hold a gunicorn thread for good.
"""
from __future__ import annotations

import io

from flask import Flask, Request, abort, current_app, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import ClientDisconnected


class InMemoryRequest(Request):
    """A request whose uploaded files are kept in RAM, never written to disk.

    ``MAX_CONTENT_LENGTH`` bounds how much memory one request can take.
    """

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


def init_app(app: Flask) -> None:
    """Keep uploads in memory and bound the time a client may take to send one."""
    app.request_class = InMemoryRequest
    app.before_request(limit_upload_time)


def limit_upload_time() -> None:
    """Give a POST's socket a read timeout (``UPLOAD_TIMEOUT`` seconds between packets).

    gunicorn's threads would otherwise wait forever on a stalled upload, and a handful of
    them would leave no thread to serve anyone else. Under the development server there
    is no socket to set, and nothing to do.
    """
    sock = request.environ.get("gunicorn.socket")
    if sock is not None and request.method == "POST":
        sock.settimeout(current_app.config["UPLOAD_TIMEOUT"])


def uploaded_files() -> MultiDict:
    """The request's files (parsing the body now); 408 when the client stalls past the
    timeout or the body is cut off (Werkzeug reports both as ``ClientDisconnected``)."""
    try:
        return request.files
    except (TimeoutError, ClientDisconnected):
        abort(408)

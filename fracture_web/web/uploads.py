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
        # The whole body in one read, then the form parsed from memory. Parsing gunicorn's stream
        # 64 KB at a time took about twice as long for a 13 MB body while the worker's other threads
        # were busy (each read may wait its turn for the GIL); on an idle worker the two are level.
        request.get_data(cache=True, parse_form_data=False)
        request.files
    except (TimeoutError, ClientDisconnected):
        abort(408)

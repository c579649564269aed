"""Uploads stay in memory and may not take forever.

Werkzeug would otherwise spool files over 500 KB to a temp file; and a client that stops
sending in the middle of an upload would otherwise hold a gunicorn thread for good. A
body is read from the server in large pieces (:class:`LargeReads`).
"""
from __future__ import annotations

import io
from collections.abc import Callable
from typing import BinaryIO

from flask import Flask, Request, abort, current_app, request
from werkzeug.exceptions import ClientDisconnected


#: How much of a request body is asked of the server at once (see ``LargeReads``).
PIECE = 1 << 20


class LargeReads(io.RawIOBase):
    """A request body of known length, read from the server ``PIECE`` bytes at a time and handed
    out in whatever sizes the reader asks for.

    Werkzeug reads a body 64 KiB at a time, and gunicorn answers each such read by copying all it
    has read ahead (up to 1 MiB) to keep the rest: a 13 MB DICOM's body then cost about 5 ms more
    to receive as a form (61 against 55 ms end to end). Errors of the server's stream (a timeout, a client gone) pass through.
    """

    def __init__(self, stream: BinaryIO, length: int) -> None:
        super().__init__()
        self._stream, self._left = stream, length
        self._piece, self._position = memoryview(b""), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:
        if self._position == len(self._piece):
            data = self._stream.read(min(self._left, PIECE)) if self._left > 0 else b""
            self._left -= len(data)
            self._piece, self._position = memoryview(data), 0
        count = min(len(buffer), len(self._piece) - self._position)
        buffer[:count] = self._piece[self._position:self._position + count]
        self._position += count
        return count


def read_in_large_pieces(wsgi_app: Callable) -> Callable:
    """Wrap a WSGI app so that every body of stated length is read through ``LargeReads``."""
    def app(environ: dict, start_response: Callable):
        length = environ.get("CONTENT_LENGTH", "")
        if length.isdigit() and int(length) > 0:
            environ["wsgi.input"] = LargeReads(environ["wsgi.input"], int(length))
        return wsgi_app(environ, start_response)
    return app


class InMemoryRequest(Request):
    """A request whose uploaded files are kept in RAM, never written to disk.

    ``MAX_CONTENT_LENGTH`` bounds how much memory one request can take.
    """

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


#: Bodies that are forms; any other body is read whole, as the uploaded file itself.
FORM_TYPES = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})


def init_app(app: Flask) -> None:
    """Keep uploads in memory, read large ones in large pieces and bound the time a client may
    take to send one."""
    app.request_class = InMemoryRequest
    app.wsgi_app = read_in_large_pieces(app.wsgi_app)
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

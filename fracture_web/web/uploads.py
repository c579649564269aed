"""Uploads stay in memory, and a client has a deadline to send one.

Werkzeug would otherwise spool files over 500 KB to a temp file; and a client that sends its body
slowly (or stops) would otherwise hold one of gunicorn's few threads for as long as it likes, and a
handful of them would leave no thread to serve anyone else. A body is read from the server in large
pieces (:class:`LargeReads`), within ``UPLOAD_TIMEOUT`` seconds for the whole of it and, after
``UPLOAD_GRACE`` seconds, at ``UPLOAD_MIN_RATE`` on average (:class:`Deadline`). This bounds the
harm one slow client can do, not what many can: on an untrusted network gunicorn belongs behind
nginx, which receives each request whole before passing it on.
"""
from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from flask import Flask, Request, Response, abort, current_app, request
from gunicorn.http.errors import NoMoreData, ParseException
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from .. import refusals
from .multipart import FormParser

#: How much of a request body is asked of the server at once (see ``LargeReads``).
PIECE = 1 << 20
#: Where the server's own body stream is kept in the WSGI environ (``wsgi.input`` may wrap it).
SERVER_INPUT = "fracture_web.server_input"
#: What the server raises for a body that breaks HTTP (a malformed chunk size, say): a 400.
MALFORMED = (ParseException,)
#: What stands for a body that stopped coming: a timeout, a client gone, a chunked body cut short.
STALLED = (TimeoutError, ClientDisconnected, NoMoreData)


class LargeReads(io.RawIOBase):
    """A request body of known length, read from the server ``PIECE`` bytes at a time and handed
    out in whatever sizes the reader asks for.

    Werkzeug reads a body 64 KiB at a time, and gunicorn answers each such read by copying all it
    has read ahead (up to 1 MiB) to keep the rest, which made a large DICOM measurably slower to
    receive as a form (docs/performance.md). Errors of the server's stream (a timeout, a client gone) pass through.
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
    """Wrap a WSGI app so that every body of stated length is read through ``LargeReads`` (the
    server's own stream stays at ``SERVER_INPUT``)."""
    def app(environ: dict, start_response: Callable):
        environ[SERVER_INPUT] = environ["wsgi.input"]
        length = environ.get("CONTENT_LENGTH", "")
        if length.isdigit() and int(length) > 0:
            environ["wsgi.input"] = LargeReads(environ["wsgi.input"], int(length))
        return wsgi_app(environ, start_response)
    return app


class Deadline:
    """A stand-in for the client's socket whose reads fail with ``TimeoutError`` once ``seconds`` have
    passed, or once the average rate has fallen below ``min_rate`` bytes/s after ``grace`` seconds.

    A socket timeout alone bounds each wait for a packet, not the whole body: a client sending one byte
    a second never trips it. Here every read waits at most until the earlier of the two limits.
    """

    def __init__(self, sock: Any, seconds: float, min_rate: int = 0, grace: float = 0.0) -> None:
        self._sock, self._min_rate, self._grace = sock, min_rate, grace
        self._started = time.monotonic()
        self._deadline = self._started + seconds
        self._received = 0

    def recv(self, size: int, *flags: int) -> bytes:
        limit = self._deadline
        if self._min_rate:  # the moment the average would fall below the minimum rate
            limit = min(limit, self._started + max(self._grace, self._received / self._min_rate))
        left = limit - time.monotonic()
        if left <= 0:
            raise TimeoutError("the client took too long to send the request body")
        self._sock.settimeout(left)
        data = self._sock.recv(size, *flags)
        self._received += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _server_reader(environ: dict) -> Any:
    """gunicorn's reader of the request's socket (its ``unreader``), or None under another server."""
    reader = getattr(environ.get(SERVER_INPUT), "reader", None)
    return getattr(reader, "unreader", None) or getattr(getattr(reader, "req", None), "unreader", None)


@contextmanager
def deadline(environ: dict, config: dict) -> Iterator[None]:
    """Read the request body within the upload settings' limits while inside this block."""
    reader = _server_reader(environ)
    sock = getattr(reader, "sock", None)
    if sock is None or not hasattr(sock, "settimeout"):
        yield  # the development server: no socket to bound
        return
    prior = sock.gettimeout()
    reader.sock = Deadline(sock, config["UPLOAD_TIMEOUT"], config["UPLOAD_MIN_RATE"], config["UPLOAD_GRACE"])
    try:
        yield
    finally:
        reader.sock = sock
        sock.settimeout(prior)


def close_connection(response: Response) -> Response:
    """Close the connection once ``response`` is sent instead of reading what is left of the body.

    ``Connection: close`` says so to the client and to servers that honour it (Werkzeug's); gunicorn
    drops that header from an application, but closes without draining a body marked as failed.
    """
    response.headers["Connection"] = "close"
    server_input = request.environ.get(SERVER_INPUT)
    if getattr(server_input, "failed", None) is False:
        server_input.failed = True
    return response


#: Statuses of the refusals made before a POST's body was read to its end (no token, cross-site, too slow,
#: too large: ``body_unread`` in the table of refusals).
CLOSE_AFTER = frozenset(refusal.status for refusal in refusals.TABLE if refusal.body_unread)


def close_if_unread(response: Response) -> Response:
    """Close the connection after a request whose body was not read to its end: a refusal in
    ``CLOSE_AFTER``, or any request but a POST that came with a body (only a POST's is read). The
    server would otherwise read what is left of it, at the client's pace, before the next request."""
    has_body = bool(request.content_length) or "Transfer-Encoding" in request.headers
    if response.status_code in CLOSE_AFTER if request.method == "POST" else has_body:
        close_connection(response)
    return response


class InMemoryRequest(Request):
    """A request whose uploaded files are kept in RAM, never written to disk, whatever their file name
    (``multipart.FormParser``). ``MAX_CONTENT_LENGTH`` bounds how much memory one request can take.
    """

    form_data_parser_class = FormParser


#: Bodies that are forms; any other body is read whole, as the uploaded file itself.
FORM_TYPES = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})


def init_app(app: Flask) -> None:
    """Keep uploads in memory, read large ones in large pieces, bound the time a client may take to
    send one, and turn a broken body into an answer (400, 408 or 413) rather than a 500."""
    app.request_class = InMemoryRequest
    app.wsgi_app = read_in_large_pieces(app.wsgi_app)
    app.before_request(receive_upload)
    app.after_request(close_if_unread)


def receive_upload() -> None:
    """Read a POST's body into memory now, within the upload deadline.

    A client that is too slow or cuts the body off gets 408, a body that breaks HTTP's framing 400,
    a body over ``MAX_CONTENT_LENGTH`` 413 (also one sent in chunks, without a stated length);
    after each the connection is closed rather than read to its end.
    """
    if request.method != "POST":
        return
    try:
        with deadline(request.environ, current_app.config):
            if request.mimetype in FORM_TYPES:
                # Parsed as it arrives: the file part is the only copy of the body (reading the whole body
                # first would hold it twice; docs/performance.md has the peaks).
                request.files
            else:
                request.get_data(cache=True)  # the file itself is the body (the API's raw uploads)
            _refuse_cut_stream()
    except STALLED:
        abort(408)
    except MALFORMED:
        abort(400)


def _refuse_cut_stream() -> None:
    """413 for a body without a stated length (chunked) that went on past ``MAX_CONTENT_LENGTH``.

    Werkzeug stops reading such a body at the limit and would hand on what it read as if it were all.
    """
    stream = request.stream
    if request.content_length is None and getattr(stream, "is_exhausted", False):
        if request.environ[SERVER_INPUT].read(1):
            raise RequestEntityTooLarge()

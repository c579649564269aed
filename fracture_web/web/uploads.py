"""Uploads stay in memory: Werkzeug would otherwise spool files over 500 KB to a temp file."""
from __future__ import annotations

import io

from flask import Request


class InMemoryRequest(Request):
    """A request whose uploaded files are kept in RAM, never written to disk.

    ``MAX_CONTENT_LENGTH`` bounds how much memory one request can take.
    """

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()

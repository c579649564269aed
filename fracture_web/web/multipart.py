"""Multipart forms parsed in memory, where an upload's file name does not matter.

Werkzeug's parser files a part as an upload only when its header names a file name, and drops the
whole form when a part's header is not UTF-8 (a file name in Latin-1, say): a good image was then
refused as "no file". Here part headers are read leniently, and a part in ``FILE_FIELDS`` is an
upload whatever its file name, or without one. Werkzeug's limits (body, form memory, parts) still hold.
A malformed body (no boundary, or cut off before its closing boundary) is refused, where Werkzeug
would hand on an empty form and the sender would be told no file came.
"""
from __future__ import annotations

import io
from collections.abc import Iterator
from functools import partial
from itertools import chain
from typing import IO, Any

from werkzeug.datastructures import FileStorage, Headers, MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.sansio.multipart import Data, Epilogue, Field, MultipartDecoder, NeedData

from ..refusals import MALFORMED_FORM, Refused

#: Form fields that carry uploads, read as files whatever their part header says.
FILE_FIELDS = frozenset({"file"})
#: Bytes read from the body at a time while parsing (Werkzeug's own buffer size).
CHUNK = 64 * 1024


class LenientDecoder(MultipartDecoder):
    """Werkzeug's multipart decoder, with part headers that are not UTF-8 read with replacements."""

    def _parse_headers(self, data: bytes | bytearray) -> Headers:
        return super()._parse_headers(bytes(data).decode("utf-8", "replace").encode())


class FormParser(FormDataParser):
    """Werkzeug's form parser, with multipart bodies parsed by ``parse_multipart``."""

    def parse(self, stream: IO[bytes], mimetype: str, content_length: int | None,
              options: dict[str, str] | None = None) -> tuple[IO[bytes], MultiDict, MultiDict]:
        if mimetype != "multipart/form-data":
            return super().parse(stream, mimetype, content_length, options)
        try:
            form, files = self.parse_multipart(stream, (options or {}).get("boundary", ""))
        except ValueError:  # a malformed or cut-off form: refused, not read as a form without files
            if not self.silent:
                raise
            raise Refused(MALFORMED_FORM) from None
        return stream, form, files

    def parse_multipart(self, stream: IO[bytes], boundary: str) -> tuple[MultiDict, MultiDict]:
        """The form's fields and its uploads (kept in memory), in the order they came."""
        if not boundary:
            raise ValueError("Missing boundary")
        decoder = LenientDecoder(boundary.encode("latin-1"), max_form_memory_size=self.max_form_memory_size,
                                 max_parts=self.max_form_parts)
        fields, files = [], []
        for part, content in _parts(decoder, stream):
            if part.name in FILE_FIELDS or not isinstance(part, Field):
                files.append((part.name, FileStorage(content, getattr(part, "filename", "") or "", part.name,
                                                     headers=part.headers)))
            elif self.max_form_memory_size is not None and content.getbuffer().nbytes > self.max_form_memory_size:
                raise RequestEntityTooLarge()
            else:
                fields.append((part.name, content.getvalue().decode("utf-8", "replace")))
        return self.cls(fields), self.cls(files)


def _parts(decoder: MultipartDecoder, stream: IO[bytes]) -> Iterator[tuple[Any, io.BytesIO]]:
    """Each complete part of the body: its header event and its content (at its end)."""
    part, content = None, io.BytesIO()
    for data in chain(iter(partial(stream.read, CHUNK), b""), [None]):  # None: the body has ended
        decoder.receive_data(data)
        event = decoder.next_event()
        while not isinstance(event, (Epilogue, NeedData)):
            if isinstance(event, Data):
                content.write(event.data)
                if not event.more_data:
                    content.seek(0)
                    yield part, content
            else:  # a new part: a field or a file
                part, content = event, io.BytesIO()
            event = decoder.next_event()

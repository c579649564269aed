"""JPEG through libjpeg-turbo with its warnings as errors (``simplejpeg``): a decode that refuses
damaged compressed data. OpenCV's decoder reports corrupt data only on stderr and returns an
image whose damaged rows look like any others (a zeroed run of bytes mid-file shifted and greyed
most of a leg, which was then read as "no fracture").

:func:`decode` is the decode itself, for the files it gives exactly OpenCV's pixels for (no EXIF
block, so nothing to turn; the same libjpeg scaling and colour conversion). :func:`check_intact`
is the check alone, for data that another decoder reads: an eighth of the size, every
entropy-coded byte still read.

A truncated file is not this module's business: it ends early ("Premature end of JPEG file"), and
the decoders count the rows it leaves grey (``imaging``).
"""
from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import simplejpeg

from .pixels import InvalidImageError

#: How libjpeg's warnings about damaged entropy-coded data begin.
CORRUPT = "Corrupt JPEG data"
#: A byte or two before a marker is padding some encoders write, not damage.
HARMLESS = re.compile(r"Corrupt JPEG data: [12] extraneous bytes? before marker")
DAMAGED_JPEG = ("The JPEG's compressed data is damaged (the decoder found corrupt data), so parts of the image "
                "may be wrong, and it was not read. Export or send the file again.")
#: The APP1 segment that holds EXIF (and with it an orientation OpenCV applies).
EXIF_SEGMENT = (0xE1, b"Exif\x00\x00")
START_OF_SCAN = 0xDA


def decode(data: bytes, colour: bool, scale: int) -> np.ndarray | None:
    """An 8-bit JPEG at 1/``scale`` of each side, grey (2-D) or BGR, the pixels OpenCV's reduced
    modes give; refuses data libjpeg reports corrupt. ``None`` where this decode does not stand
    in for OpenCV's, which then reads the file: one with an EXIF block (checked on its own), or
    one libjpeg warns about otherwise (cut off, padded before a marker) or cannot convert
    (12-bit, CMYK)."""
    if has_exif(data):
        check_intact(data)
        return None
    try:
        height, width = simplejpeg.decode_jpeg_header(data)[:2]
        decoded = simplejpeg.decode_jpeg(data, colorspace="BGR" if colour else "GRAY", min_factor=scale,
                                         min_height=-(-height // scale), min_width=-(-width // scale), strict=True)
    except ValueError as err:
        _refuse_corrupt(err)
        return None
    return decoded if colour else decoded[..., 0]


def check_intact(data: bytes) -> None:
    """Refuse 8-bit JPEG data whose entropy-coded segments libjpeg reports corrupt; anything else it
    cannot check (12-bit, CMYK, a truncated file) is left to the decoder that reads the image."""
    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", min_factor=8, min_height=1, min_width=1, strict=True)
    except ValueError as err:
        _refuse_corrupt(err)


def _refuse_corrupt(err: ValueError) -> None:
    message = str(err)
    if message.startswith(CORRUPT) and not HARMLESS.match(message):
        raise InvalidImageError(DAMAGED_JPEG) from None


def has_exif(data: bytes) -> bool:
    """Whether a JPEG may hold an EXIF block for OpenCV to turn it by: one among the header
    segments before its first scan, or a header that cannot be walked to its first scan."""
    for marker, position in header_segments(data):
        if marker == START_OF_SCAN:
            return False
        if marker == EXIF_SEGMENT[0] and data[position + 4:position + 10] == EXIF_SEGMENT[1]:
            return True
    return True


def header_segments(data: bytes) -> Iterator[tuple[int, int]]:
    """A JPEG's markers and where they start, from the first after its start-of-image up to and
    including the first start-of-scan, walked by the segments' lengths (so the markers of an EXIF
    thumbnail are skipped); stops early at anything that is not a marker."""
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        while position + 5 <= len(data) and data[position + 1] == 0xFF:  # fill bytes before a marker
            position += 1
        marker = data[position + 1]
        yield marker, position
        if marker == START_OF_SCAN:
            return
        position += 2 + int.from_bytes(data[position + 2:position + 4], "big")

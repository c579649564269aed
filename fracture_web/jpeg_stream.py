"""Is a JPEG's compressed data intact? OpenCV's decoder reports corrupt data only on stderr and
returns an image whose damaged rows look like any others (a zeroed run of bytes mid-file shifted
and greyed most of a leg, which was then read as "no fracture"). libjpeg-turbo, through
``simplejpeg``, decodes the data again at an eighth of its size with its warnings as errors: every
entropy-coded byte is still read, in about a millisecond.

A truncated file is not this module's business: it ends early ("Premature end of JPEG file"), and
the decoders count the rows it leaves grey (``imaging``).
"""
from __future__ import annotations

import re

import simplejpeg

from .pixels import InvalidImageError

#: How libjpeg's warnings about damaged entropy-coded data begin.
CORRUPT = "Corrupt JPEG data"
#: A byte or two before a marker is padding some encoders write, not damage.
HARMLESS = re.compile(r"Corrupt JPEG data: [12] extraneous bytes? before marker")
DAMAGED_JPEG = ("The JPEG's compressed data is damaged (the decoder found corrupt data), so parts of the image "
                "may be wrong, and it was not read. Export or send the file again.")


def check_intact(data: bytes) -> None:
    """Refuse 8-bit JPEG data whose entropy-coded segments libjpeg reports corrupt; anything else it
    cannot check (12-bit, CMYK, a truncated file) is left to the decoder that reads the image."""
    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", min_factor=8, strict=True)
    except ValueError as err:
        message = str(err)
        if message.startswith(CORRUPT) and not HARMLESS.match(message):
            raise InvalidImageError(DAMAGED_JPEG) from None

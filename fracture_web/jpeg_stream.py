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

#: What libjpeg may say of a JPEG that is not damage: a file that ends early (the decoders count the
#: rows it leaves grey), a depth or colour conversion this decoder lacks (OpenCV then reads the file,
#: or it is refused as unreadable), an unknown JFIF revision, zeroes where a baseline scan header
#: has fixed values (some phone cameras write them), and an encoder's padding before the end marker
#: or a marker that only a header holds (SOF, DQT, DRI, APPn, COM). Bytes before a restart marker,
#: a scan or a Huffman table (which follow compressed data) are damage, as is anything else it says.
NOT_DAMAGE = re.compile(r"Premature end of JPEG file|Unsupported JPEG data precision|Unsupported color conversion"
                        r"|Warning: unknown JFIF revision|Invalid SOS parameters for sequential JPEG"
                        r"|Corrupt JPEG data: [12] extraneous bytes? before marker 0x(d9|c[0-35-9abd-f]|d[bd]|e[0-9a-f]|fe)$")
#: What TurboJPEG says of a colour subsampling it cannot name (and so cannot check).
ODD_SUBSAMPLING = "Could not determine subsampling level"
DAMAGED_JPEG = ("The JPEG's compressed data is damaged (the decoder found corrupt data), so parts of the image "
                "may be wrong, and it was not read. Export or send the file again.")
UNCHECKABLE_JPEG = ("The JPEG uses an unusual colour subsampling, so it cannot be checked for damage, and it was "
                    "not read. Export it again as a standard JPEG, a PNG or DICOM.")
#: Most scans a JPEG may have: a progressive one has about ten; each costs a pass over the image, so
#: thousands of repeated scans in a small file would hold a worker for minutes.
MAX_SCANS = 100
TOO_MANY_SCANS = (f"The JPEG holds more than {MAX_SCANS} scans (passes over the image; a progressive JPEG has about "
                  "ten), so it was not read. Export it again.")
#: The APP1 segment that holds EXIF (and with it an orientation OpenCV applies).
EXIF_SEGMENT = (0xE1, b"Exif\x00\x00")
START_OF_SCAN = 0xDA
#: Markers without a length: TEM, RST0-7, SOI and EOI.
PARAMETERLESS = frozenset({0x01, *range(0xD0, 0xDA)})
#: Start-of-frame markers of lossless JPEG, which has no DCT to scale by.
LOSSLESS_FRAMES = frozenset({0xC3, 0xC7, 0xCB, 0xCF})
#: Every start-of-frame marker (not 0xC4, 0xC8 and 0xCC, which share the range).
FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def decode(data: bytes, colour: bool, scale: int) -> np.ndarray | None:
    """An 8-bit JPEG at 1/``scale`` of each side, grey (2-D) or BGR, the pixels OpenCV's reduced
    modes give; refuses data libjpeg reports damaged. ``None`` where this decode does not stand
    in for OpenCV's, which then reads the file: one with an EXIF block (checked on its own), or
    one libjpeg cannot read whole or convert (cut off, 12-bit)."""
    if has_exif(data):
        check_intact(data)
        return None
    check_scans(data)
    try:
        height, width = simplejpeg.decode_jpeg_header(data)[:2]
        decoded = simplejpeg.decode_jpeg(data, colorspace="BGR" if colour else "GRAY", min_factor=scale,
                                         min_height=-(-height // scale), min_width=-(-width // scale), strict=True)
    except ValueError as err:
        _refuse_damage(err)
        return None
    return decoded if colour else decoded[..., 0]


def check_intact(data: bytes) -> None:
    """Refuse JPEG data libjpeg reports damaged, decoding it at an eighth of its size (lossless JPEG
    at full size: it cannot be scaled); what it cannot check otherwise (12-bit, a truncated file)
    is left to the decoder that reads the image."""
    check_scans(data)
    scaled = {"min_factor": 8, "min_height": 1, "min_width": 1} if scalable(data) else {}
    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", strict=True, **scaled)
    except ValueError as err:
        _refuse_damage(err)


def check_scans(data: bytes) -> None:
    """Refuse a JPEG with more than ``MAX_SCANS`` start-of-scan markers between its first scan and
    its end marker (neither occurs in compressed data, where every 0xFF byte is followed by 0x00 or
    a restart marker; what follows the end, such as a phone's motion-photo video, is not counted)."""
    first = next((position for marker, position in header_segments(data) if marker == START_OF_SCAN), None)
    if first is None:
        return
    end = data.find(b"\xff\xd9", first)
    if data.count(b"\xff\xda", first, end if end >= 0 else len(data)) > MAX_SCANS:
        raise InvalidImageError(TOO_MANY_SCANS)


def _refuse_damage(err: ValueError) -> None:
    message = str(err)
    if ODD_SUBSAMPLING in message:  # TurboJPEG names its function first
        raise InvalidImageError(UNCHECKABLE_JPEG) from None
    if not NOT_DAMAGE.match(message):
        raise InvalidImageError(DAMAGED_JPEG) from None


def scalable(data: bytes) -> bool:
    """Whether libjpeg can decode this JPEG at 1/2, 1/4 or 1/8 of its size (every frame type but
    lossless; a header whose frame cannot be found is taken as lossless, never scaled)."""
    return frame(data) not in LOSSLESS_FRAMES | {None}


def frame(data: bytes) -> int | None:
    """A JPEG's first start-of-frame marker (0xC0 baseline, 0xC2 progressive ...), None if not found."""
    found = _frame_segment(data)
    return found and found[0]


def precision(data: bytes) -> int:
    """A JPEG's bits per sample, from its start-of-frame segment (8 when none is found)."""
    found = _frame_segment(data)
    return data[found[1] + 4] if found and found[1] + 4 < len(data) else 8


def _frame_segment(data: bytes) -> tuple[int, int] | None:
    """The first start-of-frame marker and where it starts."""
    return next(((marker, position) for marker, position in header_segments(data) if marker in FRAMES), None)


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
    including the first start-of-scan, walked as libjpeg walks them: by the segments' lengths (so
    the markers of an EXIF thumbnail are skipped), over fill bytes and markers without a length;
    stops early at anything that is not a marker."""
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        while position + 5 <= len(data) and data[position + 1] == 0xFF:  # fill bytes before a marker
            position += 1
        marker = data[position + 1]
        yield marker, position
        if marker == START_OF_SCAN:
            return
        position += 2 if marker in PARAMETERLESS else 2 + int.from_bytes(data[position + 2:position + 4], "big")

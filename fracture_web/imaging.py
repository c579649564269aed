"""Bytes -> validated grayscale radiograph -> model input.

The one preprocessing path: the web app, the command line, training and
evaluation all call :func:`preprocess` (or its two halves, :func:`decode_image`
and :func:`to_model_input`). Pure functions over numpy arrays; no Flask, no
TensorFlow.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .dicom import decode_dicom
from . import jpeg_stream
from .photo import read_photo
from .pixels import (DecodedImage, InvalidImageError, check_dimensions, check_not_blank, normalise, reduction,
                     shrink, to_uint8)

#: Formats recognised from the file's bytes (Pillow's names).
SUPPORTED_FORMATS = frozenset({"PNG", "JPEG", "MPO", "TIFF", "BMP"})
#: Share of clearly coloured pixels above which an image is not taken for an X-ray.
MAX_COLOURED_SHARE = 0.05
#: Pillow modes without colour channels: no colour check needed.
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})
#: Formats that libjpeg decodes, so at 1/2, 1/4 or 1/8 of each side when asked (DCT scaling).
DCT_SCALED = frozenset({"JPEG", "MPO"})
REDUCED_GRAY = {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4, 8: cv2.IMREAD_REDUCED_GRAYSCALE_8}
REDUCED_COLOUR = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
COLOUR_WARNING = ("This does not look like an X-ray: it has strong colours (a photograph or a screenshot?). "
                  "The verdict is unreliable.")


@dataclass(frozen=True)
class Letterbox:
    """Where the original image sits inside the square model input."""

    scale: float
    left: int
    top: int
    width: int
    height: int


@dataclass(frozen=True)
class ImageHeader:
    """What the file's header says, read without decoding the pixels."""

    format: str
    width: int
    height: int
    frames: int
    mode: str


#: The first bytes of the formats read, by name: a file that starts like one but cannot be opened is
#: told so, rather than that it is no image at all.
SIGNATURES = {"PNG": (b"\x89PNG\r\n\x1a\n",), "JPEG": (b"\xff\xd8",), "TIFF": (b"II*\x00", b"MM\x00*")}


def _unreadable(data: bytes) -> str:
    """Why a file that the image library cannot open is refused, in its format's terms where its
    first bytes name one."""
    bits = jpeg_stream.precision(data) if data.startswith(SIGNATURES["JPEG"]) else 8
    if bits != 8:
        return (f"The file is a {bits}-bit JPEG, which is not supported here: export it as a 16-bit PNG or TIFF, "
                "or as DICOM.")
    for name, signatures in SIGNATURES.items():
        if data.startswith(signatures):
            extra = ", or stores its pixels in a way not supported here (such as 64-bit or colour floating point)" \
                if name == "TIFF" else ""
            return f"The file is a {name} image that cannot be read: it is damaged or cut off{extra}."
    return "The file is not an image we can read (PNG, JPEG, TIFF or DICOM)."


def sniff_format(data: bytes) -> ImageHeader:
    """Recognise the format from the bytes (never the name) and check the size before decoding.

    Pixel bombs (a small file that would decode to a huge image) are refused here,
    before any pixel memory is allocated.
    """
    if not data:
        raise InvalidImageError("The file is empty.")
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (width, height), frames = img.format or "", img.size, getattr(img, "n_frames", 1)
            mode = img.mode
    except Image.DecompressionBombError as err:
        raise InvalidImageError("The image is too large (it would decode to too many pixels).") from err
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise InvalidImageError(_unreadable(data)) from err
    if fmt not in SUPPORTED_FORMATS:
        raise InvalidImageError(f"{fmt or 'This'} images are not supported; upload a PNG, JPEG, TIFF or DICOM.")
    check_dimensions(width, height)
    return ImageHeader(fmt, width, height, frames, mode)


def is_dicom(data: bytes) -> bool:
    """True for a DICOM file: the ``DICM`` prefix after the 128-byte preamble (PS3.10 7.1)."""
    return data[128:132] == b"DICM"


def decode_image(data: bytes, long_side: int | None = None) -> DecodedImage:
    """Decode image bytes to a 2-D float32 array in [0, 1], once.

    Any bit depth, grayscale or colour; JPEG EXIF orientation is honoured.
    Intensities are stretched to the image's own min-max so 8- and 16-bit
    files of the same radiograph give the same array. A truncated JPEG is
    accepted, with a warning, when at least 3/4 of its rows decode. DICOM files go
    through :func:`fracture_web.dicom.decode_dicom` (the standard's grayscale pipeline).

    ``long_side`` is the largest size any caller will resize the image to (the model input, the
    display image): the image then shrinks by a power of two while its long side stays at least
    twice that (:func:`fracture_web.pixels.reduction`), JPEG inside the decoder (libjpeg's DCT
    scaling), other formats once, right after decoding. ``None`` keeps the full size. The
    result's ``size`` is the upload's own, whatever was decoded.
    """
    if is_dicom(data):
        return decode_dicom(data, long_side)
    header = sniff_format(data)
    factor = reduction((header.height, header.width), long_side)
    # what the decoder shrinks by itself: JPEG's DCT scaling (lossless JPEG has none)
    scale = min(factor, 8) if header.format in DCT_SCALED and jpeg_stream.scalable(data) else 1
    colour = header.mode not in GRAY_MODES
    decoded, truncated = _decode(data, header, colour, scale), False
    if decoded is None and header.format in DCT_SCALED:
        # libjpeg stops at a missing end marker; with one appended it decodes what is
        # there and fills the missing rows with mid-grey.
        decoded, truncated = _imdecode(data + b"\xff\xd9", colour, scale), True
    if decoded is None or decoded.size == 0:
        raise InvalidImageError("The image data could not be decoded; the file may be damaged.")
    gray = _to_gray(decoded)
    warnings: tuple[str, ...] = ()
    if header.frames > 1:
        warnings += (f"The file holds {header.frames} images; only the first was analysed.",)
    if truncated:
        warnings += (_check_truncated(gray, progressive=_is_progressive(data)),)
    film, colour_warnings = _read_colour(decoded) if decoded.ndim == 3 else (None, ())
    warnings += colour_warnings
    if film is not None:
        size = (round(film.shape[0] * scale), round(film.shape[1] * scale))
        return DecodedImage(shrink(film, factor // scale), size, warnings)
    bounds = check_not_blank(gray)  # the range as decoded, before our averaging narrows it
    pixels = normalise(shrink(gray, factor // scale), bounds)
    return DecodedImage(pixels, _upright_size(header, gray.shape, scale), warnings)


def _read_colour(bgr: np.ndarray) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """A colour decode's straightened film where it is a photo of one, and what to tell the
    reader: that it is a photo; that it is one without a film found; or, for strong colours
    with no film, that it does not look like an X-ray at all."""
    photo = read_photo(bgr)
    if photo is not None and photo.pixels is not None:
        return photo.pixels, (photo.warning,)
    if _coloured_share(bgr) > MAX_COLOURED_SHARE:
        return None, (COLOUR_WARNING,)
    return None, () if photo is None else (photo.warning,)


def _decode(data: bytes, header: ImageHeader, colour: bool, scale: int) -> np.ndarray | None:
    """The first decode of an upload: a JPEG's data checked for damage, and decoded by that check
    where it gives OpenCV's pixels; everything else by OpenCV."""
    decoded = jpeg_stream.decode(data, colour, scale) if header.format in DCT_SCALED else None
    return _imdecode(data, colour, scale) if decoded is None else decoded


def _imdecode(data: bytes, colour: bool, scale: int) -> np.ndarray | None:
    """One OpenCV decode: grey, or BGR where the file has colour (for the colour check); JPEG
    at 1/``scale`` of each side. Every mode but UNCHANGED keeps OpenCV's EXIF rotation;
    ANYDEPTH keeps 16 bit (JPEG is 8-bit, so its reduced modes need no more)."""
    if scale > 1:
        flags = (REDUCED_COLOUR if colour else REDUCED_GRAY)[scale]
    else:
        flags = (cv2.IMREAD_COLOR if colour else cv2.IMREAD_GRAYSCALE) | cv2.IMREAD_ANYDEPTH
    return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)


def _to_gray(decoded: np.ndarray) -> np.ndarray:
    """The decoded image as one channel (OpenCV's luma weights for BGR, in 8, 16 or 32-bit float)."""
    if decoded.ndim == 2:
        return decoded
    if decoded.dtype not in (np.uint8, np.uint16, np.float32):
        decoded = decoded.astype(np.float32)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2GRAY)


def _coloured_share(bgr: np.ndarray) -> float:
    """Share of pixels that are clearly coloured (saturated and not dark); 0 for any radiograph.

    A share needs no detail: every 4th pixel of every 4th row is counted, in 8-bit colour
    (16 bit keeps its high byte, as OpenCV's 8-bit decode does)."""
    bgr = np.ascontiguousarray(bgr[::4, ::4])
    if bgr.dtype == np.uint16:
        bgr = (bgr >> 8).astype(np.uint8)
    elif bgr.dtype != np.uint8:
        bgr = to_uint8(normalise(bgr))
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    return float(np.mean((hsv[..., 1] > 64) & (hsv[..., 2] > 32)))


def _upright_size(header: ImageHeader, decoded: tuple[int, ...], scale: int) -> tuple[int, int]:
    """The upload's (height, width) upright: the header's, turned where the decoder turned the
    image (EXIF orientation 5-8), which the decoded shape (1/``scale`` a side, rounded up) shows."""
    stored = (header.height, header.width)
    return stored if tuple(decoded[:2]) == (-(-stored[0] // scale), -(-stored[1] // scale)) else stored[::-1]


def _check_truncated(gray: np.ndarray, progressive: bool = False) -> str:
    """Refuse a truncated image with under 3/4 of its rows, or a truncated progressive JPEG (its
    first scans fill every row with a blurred image, so the rows tell nothing); else return the
    warning text."""
    if progressive:
        raise InvalidImageError("The file is incomplete (cut off before its end). It is a progressive JPEG, "
                                "so what arrived is a blurred version of the whole image; send the whole file.")
    filled = np.all(gray == 128, axis=1)
    missing = len(filled) - int(np.flatnonzero(~filled).max() + 1) if (~filled).any() else len(filled)
    decoded = 1.0 - missing / len(filled)
    if decoded < 0.75:
        raise InvalidImageError(f"The file is incomplete: only {decoded:.0%} of the image could be read.")
    if missing == 0:
        return "The file is incomplete (it ends without its end marker); every row of the image was read."
    return f"The file is incomplete (truncated); {decoded:.0%} of the image was read and the rest left grey."


#: JPEG's progressive start-of-frame markers (Huffman and arithmetic coding, with or without differential).
PROGRESSIVE_SOF = frozenset({0xC2, 0xC6, 0xCA, 0xCE})


def _is_progressive(data: bytes) -> bool:
    """Whether a JPEG's frame is progressive, from its first start-of-frame marker."""
    return jpeg_stream.frame(data) in PROGRESSIVE_SOF


def letterbox_geometry(height: int, width: int, size: int) -> Letterbox:
    """Scale and padding that fit a height x width image into a size x size square."""
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    return Letterbox(scale, (size - new_w) // 2, (size - new_h) // 2, new_w, new_h)


def to_model_input(image: np.ndarray, size: int) -> np.ndarray:
    """Letterbox a [0, 1] image into a (size, size, 1) float32 array, padded with black."""
    box = letterbox_geometry(*image.shape[:2], size)
    shrinking = box.scale < 1
    resized = cv2.resize(image, (box.width, box.height),
                         interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    canvas = np.zeros((size, size), dtype=np.float32)
    canvas[box.top:box.top + box.height, box.left:box.left + box.width] = resized
    return canvas[..., np.newaxis]


def preprocess(data: bytes, size: int) -> np.ndarray:
    """Image bytes to the model's (size, size, 1) float32 input: the one shared path."""
    return to_model_input(decode_image(data).pixels, size)

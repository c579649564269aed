"""Heatmap and findings -> colour overlay images for display, and their PNG or JPEG encoding (no Flask)."""
from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
from isal import isal_zlib

from .findings import Finding
from .imaging import letterbox_geometry
from .pixels import to_uint8

#: Colour-blind-safe, perceptually uniform colormap (not jet).
COLORMAP = cv2.COLORMAP_VIRIDIS
#: The colormap as a 256-entry table in RGB order: applied in one pass, with no BGR -> RGB swap after it.
RGB_COLORMAP = np.ascontiguousarray(cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(256, 1), COLORMAP)[..., ::-1])
#: JPEG quality of the overlay: indistinguishable from the PNG at a glance (about 46 dB PSNR on a
#: full-size radiograph's overlay), a ninth of its bytes and a quarter of its encoding time.
JPEG_QUALITY = 90


def display_image(image: np.ndarray, max_side: int = 640) -> np.ndarray:
    """Downscale a [0, 1] radiograph to at most max_side pixels, as uint8.

    As a mipmap does: halved (2x2 means) while still twice the size or more, then bilinear for
    the last step of under 2x: several times cheaper than one area resample of a full-size decode
    (docs/performance.md), and within a level or two of 255 of it except along sharp edges.
    """
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        while image.shape[0] >= 2 * size[1] and image.shape[1] >= 2 * size[0]:
            image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    return to_uint8(image)


def model_view(letterboxed: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """The image as the model saw it, as uint8: its letterboxed input without the bars (the input's
    size on the long side), for an overlay that needs no resampling of the upload."""
    box = letterbox_geometry(image_shape[0], image_shape[1], letterboxed.shape[0])
    return to_uint8(letterboxed[box.top:box.top + box.height, box.left:box.left + box.width, 0])


def heatmap_on_image(heatmap: np.ndarray, image_shape: tuple[int, int], input_size: int) -> np.ndarray:
    """Map a heatmap over the square letterboxed model input back onto the image's frame.

    Returns a float32 array of ``image_shape`` in [0, 1].
    """
    box = letterbox_geometry(image_shape[0], image_shape[1], input_size)
    square = cv2.resize(heatmap.astype(np.float32), (input_size, input_size), interpolation=cv2.INTER_CUBIC)
    crop = square[box.top:box.top + box.height, box.left:box.left + box.width]
    if crop.shape != tuple(image_shape):  # the model's own view (model_view) is the crop's size already
        crop = cv2.resize(crop, (image_shape[1], image_shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(crop, 0.0, 1.0)


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """A [0, 1] heatmap as an RGB uint8 image in the colormap."""
    return cv2.applyColorMap(to_uint8(heatmap), RGB_COLORMAP)


def blend(gray: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Overlay a [0, 1] heatmap (same shape as gray) on a uint8 radiograph; RGB uint8.

    The colour's weight grows with the heatmap value, so quiet regions keep the X-ray visible.
    OpenCV's per-pixel weighted sum does it in one pass over uint8 pixels, far cheaper than the
    same arithmetic in float32 numpy.
    """
    colour_weight = np.float32(alpha) * heatmap.astype(np.float32, copy=False)
    return cv2.blendLinear(cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB), colorize(heatmap),
                           1.0 - colour_weight, colour_weight)


#: Box colours by level (RGB, Okabe-Ito: told apart by the colour-blind) and whether the line is
#: solid; the line style alone tells the levels apart in grey print.
BOX_STYLES = {"definite": ((230, 159, 0), True), "possible": ((86, 180, 233), False)}
DASH = 8  # pixels of line, then of gap, in a dashed box (at a 640-pixel display; scaled with the image)


def draw_findings(image_rgb: np.ndarray, findings: tuple[Finding, ...] | list[Finding],
                  scale: float = 1.0) -> np.ndarray:
    """A copy of an RGB uint8 image with each finding's box drawn (boxes in image pixels times
    ``scale``): solid for definite, dashed for possible, each with its rank number (1 = highest score)."""
    canvas = np.ascontiguousarray(image_rgb).copy()
    side = max(canvas.shape[:2])
    thickness, dash = max(2, round(side / 320)), max(4, round(DASH * side / 640))
    for rank, finding in enumerate(findings, start=1):
        colour, solid = BOX_STYLES[finding.level]
        x0, y0, x1, y1 = (int(round(v * scale)) for v in finding.box)
        if solid:
            cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, thickness)
        else:
            for start, end in ((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0)):
                _dashed_line(canvas, start, end, colour, thickness, dash)
        cv2.putText(canvas, str(rank), (x0 + thickness, max(y0 - thickness, 12)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 + side / 1600, colour, max(1, thickness // 2), cv2.LINE_AA)
    return canvas


def _dashed_line(canvas: np.ndarray, start: tuple[int, int], end: tuple[int, int], colour: tuple[int, int, int],
                 thickness: int, dash: int) -> None:
    """Draw a dashed straight line in place."""
    length = max(abs(end[0] - start[0]), abs(end[1] - start[1]))
    for offset in range(0, length, 2 * dash):
        a, b = offset / max(length, 1), min(offset + dash, length) / max(length, 1)
        cv2.line(canvas, (round(start[0] + a * (end[0] - start[0])), round(start[1] + a * (end[1] - start[1]))),
                 (round(start[0] + b * (end[0] - start[0])), round(start[1] + b * (end[1] - start[1]))),
                 colour, thickness)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {1: 0, 3: 2}  # channels -> PNG colour type (greyscale, truecolour)


def encode_png(image: np.ndarray) -> bytes:
    """Encode a grey or RGB uint8 array as PNG bytes (lossless).

    The fastest lossless encoding found for the overlay: the PNG "up" filter in numpy, then
    deflate by ISA-L (``isal``, level 1), then the three chunks PNG needs (IHDR, IDAT, IEND).
    libpng through OpenCV is several times slower even with its fastest settings (zlib's Huffman
    coding is the slow part); ``bench/benchmark.py`` times it ("PNG encode").
    """
    channels = 1 if image.ndim == 2 else image.shape[-1]
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or channels not in _COLOUR_TYPES:
        raise ValueError(f"PNG encoding takes grey or RGB uint8, not {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    rows = np.ascontiguousarray(image).reshape(height, width * channels)
    filtered = np.empty((height, 1 + rows.shape[1]), np.uint8)
    filtered[:, 0] = 2  # filter type "up": each byte minus the one above it (modulo 256)
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPES[channels], 0, 0, 0)
    return b"".join((PNG_SIGNATURE, _chunk(b"IHDR", header),
                     _chunk(b"IDAT", isal_zlib.compress(filtered.tobytes(), 1)), _chunk(b"IEND", b"")))


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """Encode a grey or RGB uint8 array as JPEG bytes (lossy; libjpeg-turbo through OpenCV).

    For the heatmap overlay, a smooth colour map over an X-ray: much smaller and faster to encode
    than its PNG. The plain X-ray stays PNG (lossless) where it is shown for reading.
    """
    channels = 1 if image.ndim == 2 else image.shape[-1]
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or channels not in _COLOUR_TYPES:
        raise ValueError(f"JPEG encoding takes grey or RGB uint8, not {image.dtype} {image.shape}")
    bgr = image if channels == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("OpenCV could not encode the image as JPEG")
    return encoded.tobytes()


def _chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data and the CRC-32 of type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))

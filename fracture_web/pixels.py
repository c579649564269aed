"""What every decoder shares: the decoded-image type, the domain error, the size and
contrast checks, and the choice of how far to shrink. numpy and OpenCV; the bottom layer that
``imaging`` and ``dicom`` both build on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

#: Refuse anything that would decode to more pixels than this (pixel bombs).
MAX_PIXELS = 60_000_000
#: Smallest side we accept; smaller images carry no usable detail.
MIN_SIDE = 64
#: Longest side over shortest side; beyond this it is a strip, not a radiograph.
MAX_ASPECT = 8.0
#: A reduced decode keeps its long side at least this many times the largest size it will be
#: resized to: the resize then still shrinks by 2 or more, which keeps the model input close to a
#: full-size decode's. On FracAtlas originals (2304x2880) the shipped model's probability moved by
#: at most ~0.01 with 2, by up to 0.05 with 1 (a second downscale of under 2x changes the blur).
HEADROOM = 2
#: The largest float32: a wider span of finite values is stretched in float64.
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Smallest range of brightness (on a [0, 1] or raw scale) that is not a blank image.
MIN_CONTRAST = 1e-6
#: The content checks look at the image shrunk to this long side (area averaging keeps noise noise).
CHECK_SIDE = 512
#: Smallest share of the range the middle 99% of pixels may span: below it the image is blank but
#: for a few pixels, or a few extreme values have stretched the rest to one grey. (Radiographs span
#: over a third of theirs, also under the robustness table's shifts and as phone photos.)
MIN_SPREAD = 0.1
#: Smallest correlation of neighbouring pixels: below it the image is random noise. (Radiographs,
#: also noisy, compressed or photographed ones, correlate above 0.6; noise near 0.)
MIN_NEIGHBOUR_CORRELATION = 0.3
#: Sharpness (mean absolute Laplacian after a light blur, at ``CHECK_SIDE``, per unit of spread) below which a file is
#: read with a warning: under the sharpest 99.5% of FracAtlas images, above any of them blurred by
#: 1% of their short side (``python -m bench.content_checks``), where sensitivity falls.
MIN_SHARPNESS = 0.0025
BLURRED = ("The image is blurred: less sharp than the radiographs the model was trained on (a low-resolution "
           "copy, or a blurred export?), and fine fractures may be missed. Use the original file where there is one.")
NEARLY_BLANK = ("The image is nearly blank: almost all of its pixels have the same brightness (a few extreme "
                "values can stretch a real image into this). Export it again with its usual brightness range.")
NOISE = "The image is random noise, not a radiograph: its neighbouring pixels are unrelated."
NOT_A_NUMBER = ("The image holds values that are not numbers (NaN or infinity), so it cannot be read; "
                "check the file or export it again.")


class InvalidImageError(ValueError):
    """The upload is not an image we can read; the message is meant for a person."""


@dataclass(frozen=True)
class Content:
    """What the content checks measure of an image (:func:`content_measures`)."""

    spread: float
    correlation: float
    sharpness: float


@dataclass(frozen=True)
class DecodedImage:
    """A radiograph as float32 [0, 1] pixels, with anything a reader should be told.

    ``size`` is the upload's own (height, width), upright as a viewer shows it: findings are
    reported in its pixels. ``pixels`` may be smaller, when the decoder was asked for less.
    ``context`` holds non-identifying facts from a DICOM header (``modality``, ``body_part``,
    ``view_position``, ``laterality``); empty for other formats.
    """

    pixels: np.ndarray
    size: tuple[int, int]
    warnings: tuple[str, ...] = ()
    context: dict[str, str] = field(default_factory=dict)
    content: Content = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # the decoders' shared promise: a NaN or infinite pixel, or an image without a picture,
        # never reaches the model
        if not np.isfinite(self.pixels).all():
            raise InvalidImageError(NOT_A_NUMBER)
        object.__setattr__(self, "content", check_content(self.pixels))


def check_dimensions(width: int, height: int) -> None:
    """Refuse, from the header's size alone, pixel bombs, tiny images and strips."""
    if width * height > MAX_PIXELS:
        raise InvalidImageError(f"The image is too large ({width}x{height} pixels).")
    if min(width, height) < MIN_SIDE:
        raise InvalidImageError(f"The image is too small ({width}x{height}); at least {MIN_SIDE} px a side is needed.")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise InvalidImageError(f"The image is too narrow ({width}x{height}) to be a radiograph.")


def check_not_blank(pixels: np.ndarray) -> tuple[float, float]:
    """Refuse an image whose pixels all have the same value, or any that is NaN or infinite
    (the min and max show both); returns its (min, max)."""
    low, high = float(pixels.min()), float(pixels.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise InvalidImageError(NOT_A_NUMBER)
    if high - low < MIN_CONTRAST:
        raise InvalidImageError("The image is blank (every pixel has the same value).")
    return low, high


def check_content(pixels: np.ndarray) -> Content:
    """Refuse a [0, 1] image that holds no picture a verdict could rest on: nearly blank (the middle
    99% of its pixels within ``MIN_SPREAD``) or random noise (neighbours correlate below
    ``MIN_NEIGHBOUR_CORRELATION``); returns what was measured."""
    content = content_measures(pixels)
    if content.spread < MIN_SPREAD:
        raise InvalidImageError(NEARLY_BLANK)
    if content.correlation < MIN_NEIGHBOUR_CORRELATION:
        raise InvalidImageError(NOISE)
    return content


def content_measures(pixels: np.ndarray) -> Content:
    """What the content checks weigh, on the image shrunk to ``CHECK_SIDE``: the span of its middle
    99% of pixels, the lower of its horizontal and vertical neighbours' correlations, and its
    sharpness (the mean absolute Laplacian after a light blur, which noise barely moves, per unit of
    that span: a low-contrast image is not a blurred one)."""
    small = _at_most(pixels, CHECK_SIDE).astype(np.float32, copy=False)
    low, high = np.percentile(small, [0.5, 99.5])
    correlation = min(_correlation(small[:, :-1], small[:, 1:]), _correlation(small[:-1], small[1:]))
    spread = float(high - low)
    return Content(spread, correlation, edge_strength(small) / max(spread, MIN_CONTRAST))


def edge_strength(image: np.ndarray) -> float:
    """The mean absolute Laplacian of a float32 image after a light blur (which noise barely moves):
    how sharp it is, at the size it is given."""
    return float(np.abs(cv2.Laplacian(cv2.GaussianBlur(image, (0, 0), 0.7), cv2.CV_32F)).mean())


def _at_most(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` area-averaged down to a long side of ``side`` (as it is when not longer)."""
    height, width = image.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return image
    return cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two same-shaped float32 arrays (1 where either is constant); the
    sums in float64, the arrays left in float32 (a float64 copy of each cost more than the rest)."""
    a = a - np.float32(a.mean(dtype=np.float64))
    b = b - np.float32(b.mean(dtype=np.float64))
    scale = math.sqrt(_dot(a, a) * _dot(b, b))
    return _dot(a, b) / scale if scale > 0 else 1.0


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.einsum("ij,ij->", a, b, dtype=np.float64))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A [0, 1] image as uint8, rounded to the nearest of 256 levels (clipped)."""
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def normalise(gray: np.ndarray, bounds: tuple[float, float] | None = None) -> np.ndarray:
    """Stretch a 2-D integer or float image to float32 [0, 1] by its min and max, or by
    ``bounds``: those of the full-size image that ``gray`` was shrunk from."""
    low, high = bounds or check_not_blank(gray)
    if high - low > FLOAT32_MAX:  # finite values whose span float32 cannot hold
        return ((gray.astype(np.float64) - low) / (high - low)).astype(np.float32)
    pixels = gray.astype(np.float32)
    pixels -= low  # in place: no second full-size copy
    pixels /= high - low
    return pixels


def reduction(size: tuple[int, int], long_side: int | None) -> int:
    """How far an image of ``size`` may shrink before it is resized to ``long_side`` pixels (or
    less): the largest power of two (1, 2, 4 ...) that leaves its long side at least ``HEADROOM``
    times ``long_side``; 1 (full size) when ``long_side`` is None.

    Powers of two are what JPEG's DCT scaling and JPEG 2000's resolution levels offer, so
    every format shrinks the same image to the same size."""
    factor = 1
    while long_side and max(size) // (factor * 2) >= HEADROOM * long_side:
        factor *= 2
    return factor


def shrink(image: np.ndarray, factor: int) -> np.ndarray:
    """Downscale by ``factor`` with area averaging; sides are rounded up, as libjpeg rounds them.

    Keeps 8- and 16-bit integers (cheaper than floats and exact enough: the mean is rounded to
    the nearest stored value); other depths become float32, which OpenCV can average."""
    if factor == 1:
        return image
    if image.dtype not in (np.uint8, np.uint16, np.int16, np.float32):
        image = image.astype(np.float32)
    height, width = image.shape[:2]
    return cv2.resize(image, (-(-width // factor), -(-height // factor)), interpolation=cv2.INTER_AREA)

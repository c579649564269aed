"""What every decoder shares: the decoded-image type, the domain error, and the size and
contrast checks. Pure numpy; the bottom layer that ``imaging`` and ``dicom`` both build on.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Refuse anything that would decode to more pixels than this (pixel bombs).
MAX_PIXELS = 60_000_000
#: Smallest side we accept; smaller images carry no usable detail.
MIN_SIDE = 64
#: Longest side over shortest side; beyond this it is a strip, not a radiograph.
MAX_ASPECT = 8.0
#: Smallest range of brightness (on a [0, 1] or raw scale) that is not a blank image.
MIN_CONTRAST = 1e-6


class InvalidImageError(ValueError):
    """The upload is not an image we can read; the message is meant for a person."""


@dataclass(frozen=True)
class DecodedImage:
    """A radiograph as float32 [0, 1] pixels, with anything a reader should be told.

    ``context`` holds non-identifying facts from a DICOM header (``modality``, ``body_part``,
    ``view_position``, ``laterality``); empty for other formats.
    """

    pixels: np.ndarray
    warnings: tuple[str, ...] = ()
    context: dict[str, str] = field(default_factory=dict)


def check_dimensions(width: int, height: int) -> None:
    """Refuse, from the header's size alone, pixel bombs, tiny images and strips."""
    if width * height > MAX_PIXELS:
        raise InvalidImageError(f"The image is too large ({width}x{height} pixels).")
    if min(width, height) < MIN_SIDE:
        raise InvalidImageError(f"The image is too small ({width}x{height}); at least {MIN_SIDE} px a side is needed.")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise InvalidImageError(f"The image is too narrow ({width}x{height}) to be a radiograph.")


def check_not_blank(pixels: np.ndarray) -> tuple[float, float]:
    """Refuse an image whose pixels all have the same value; returns its (min, max)."""
    low, high = float(pixels.min()), float(pixels.max())
    if high - low < MIN_CONTRAST:
        raise InvalidImageError("The image is blank (every pixel has the same value).")
    return low, high


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A [0, 1] image as uint8, rounded to the nearest of 256 levels (clipped)."""
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def normalise(gray: np.ndarray) -> np.ndarray:
    """Stretch a 2-D integer or float image to float32 [0, 1] by its min and max."""
    pixels = gray.astype(np.float32)
    low, high = check_not_blank(pixels)
    return (pixels - low) / (high - low)

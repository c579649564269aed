"""How radiographs differ between sites, as pure image functions.

Each shift takes a 2-D float32 image in [0, 1] (a decoded radiograph or a model input) and
returns one of the same shape and range, as another scanner, processing chain or export could
have rendered it: lower resolution, JPEG re-compression, gamma, contrast, histogram
processing (CLAHE, equalisation), noise, blur, collimation borders, crops and padding,
rotation, burnt-in text, 12-bit storage under a window. Training draws random ones to augment
(:func:`random_site_shift`); the robustness table re-renders the validation split under each
(:data:`SHIFTS`, fixed strengths). numpy and OpenCV only; no Flask, no TensorFlow.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from .pixels import to_uint8

Image = np.ndarray


def _from_uint8(image: np.ndarray) -> Image:
    return image.astype(np.float32) / np.float32(255.0)


def downscale(image: Image, factor: float) -> Image:
    """A lower-resolution detector or export: shrink by ``factor`` (> 1), then back up."""
    height, width = image.shape
    small = cv2.resize(image, (max(8, round(width / factor)), max(8, round(height / factor))),
                       interpolation=cv2.INTER_AREA)
    return np.clip(cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


def jpeg(image: Image, quality: int) -> Image:
    """Lossy JPEG re-compression at ``quality`` (1-100), as a PACS export or a web upload does."""
    ok, data = cv2.imencode(".jpg", to_uint8(image), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return _from_uint8(cv2.imdecode(data, cv2.IMREAD_GRAYSCALE))


def gamma(image: Image, value: float) -> Image:
    """Another tone curve: ``image ** value`` (< 1 brighter mid-tones, > 1 darker)."""
    return np.power(np.clip(image, 0.0, 1.0), np.float32(value)).astype(np.float32)


def contrast(image: Image, factor: float) -> Image:
    """Contrast about mid-grey by ``factor`` (< 1 flatter, > 1 harsher, clipped)."""
    return np.clip((image - 0.5) * np.float32(factor) + 0.5, 0.0, 1.0).astype(np.float32)


def clahe(image: Image, clip_limit: float = 2.0) -> Image:
    """Contrast-limited adaptive histogram equalisation, as some vendors' processing applies."""
    return _from_uint8(cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(8, 8)).apply(to_uint8(image)))


def equalise(image: Image) -> Image:
    """Global histogram equalisation."""
    return _from_uint8(cv2.equalizeHist(to_uint8(image)))


def noise(image: Image, sigma: float, rng: np.random.Generator) -> Image:
    """Quantum-like noise: Gaussian with standard deviation ``sigma`` (in [0, 1] units)."""
    return np.clip(image + rng.normal(0.0, sigma, image.shape).astype(np.float32), 0.0, 1.0)


def blur(image: Image, sigma_fraction: float) -> Image:
    """A softer detector or a motion-free blur: Gaussian, sigma as a fraction of the short side."""
    sigma = max(0.3, sigma_fraction * min(image.shape))
    return cv2.GaussianBlur(image, (0, 0), sigma)


def border(image: Image, fraction: float, value: float) -> Image:
    """A collimation border: a frame ``fraction`` of each side wide, filled with ``value``."""
    out = image.copy()
    height, width = image.shape
    dy, dx = max(1, round(height * fraction)), max(1, round(width * fraction))
    out[:dy], out[-dy:], out[:, :dx], out[:, -dx:] = value, value, value, value
    return out


def crop(image: Image, fraction: float, rng: np.random.Generator) -> Image:
    """A tighter field of view: drop up to ``fraction`` of each side (random sides), keep the centre."""
    height, width = image.shape
    top, bottom = (rng.uniform(0, fraction, 2) * height).astype(int)
    left, right = (rng.uniform(0, fraction, 2) * width).astype(int)
    return image[top:height - bottom, left:width - right].copy()


def pad(image: Image, fraction: float, value: float = 0.0) -> Image:
    """A wider canvas: ``fraction`` of each side added around the image, filled with ``value``."""
    height, width = image.shape
    dy, dx = round(height * fraction), round(width * fraction)
    return cv2.copyMakeBorder(image, dy, dy, dx, dx, cv2.BORDER_CONSTANT, value=float(value))


def rotate(image: Image, degrees: float) -> Image:
    """The limb placed at an angle: rotation about the centre, corners filled black."""
    height, width = image.shape
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def burnt_in_text(image: Image, rng: np.random.Generator) -> Image:
    """A side marker and a line of annotation burnt into the pixels, as many exports carry."""
    out = to_uint8(image)
    height, width = out.shape
    scale = max(0.4, min(height, width) / 400)
    thickness = max(1, round(scale * 2))
    marker = str(rng.choice(["L", "R", "PA", "LAT"]))
    corner = (int(rng.uniform(0.03, 0.15) * width), int(rng.uniform(0.08, 0.2) * height))
    cv2.putText(out, marker, corner, cv2.FONT_HERSHEY_SIMPLEX, scale * 1.5, 255, thickness, cv2.LINE_AA)
    line = f"{int(rng.integers(1, 28)):02d}/{int(rng.integers(1, 12)):02d} kV{int(rng.integers(50, 70))}"
    cv2.putText(out, line, (int(0.05 * width), int(0.95 * height)), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.7, 255,
                thickness, cv2.LINE_AA)
    return _from_uint8(out)


def window_12bit(image: Image, width_fraction: float = 0.8) -> Image:
    """Stored at 12 bits and shown through a window over ``width_fraction`` of the range centred on
    the image's median, as a DX viewer's default window does (outside it is clipped)."""
    stored = np.rint(image * 4095.0)
    centre, width = float(np.median(stored)), width_fraction * 4095.0
    return np.clip((stored - (centre - width / 2)) / width, 0.0, 1.0).astype(np.float32)


def invert(image: Image) -> Image:
    """A MONOCHROME1 image whose inversion was lost (bone dark, air white): an export error."""
    return (1.0 - image).astype(np.float32)


@dataclass(frozen=True)
class Shift:
    """One named re-rendering for the robustness table.

    ``scanner``: a scanner, its processing or a normal export could produce it, so the
    robustness target applies; False for errors (a lost inversion) that the table reports too.
    """

    name: str
    description: str
    apply: Callable[[Image, np.random.Generator], Image]
    scanner: bool = True


#: The robustness table's shifts, at the strength a site could plausibly differ by.
SHIFTS: tuple[Shift, ...] = (
    Shift("downscale_x2", "half the resolution, then back up", lambda x, r: downscale(x, 2.0)),
    Shift("downscale_x4", "a quarter of the resolution, then back up", lambda x, r: downscale(x, 4.0)),
    Shift("jpeg_q50", "JPEG re-compression at quality 50", lambda x, r: jpeg(x, 50)),
    Shift("jpeg_q20", "JPEG re-compression at quality 20", lambda x, r: jpeg(x, 20)),
    Shift("gamma_0.7", "gamma 0.7 (brighter mid-tones)", lambda x, r: gamma(x, 0.7)),
    Shift("gamma_1.4", "gamma 1.4 (darker mid-tones)", lambda x, r: gamma(x, 1.4)),
    Shift("contrast_0.7", "contrast x0.7", lambda x, r: contrast(x, 0.7)),
    Shift("contrast_1.3", "contrast x1.3 (clipped)", lambda x, r: contrast(x, 1.3)),
    Shift("clahe", "CLAHE (clip limit 2, 8x8 tiles)", lambda x, r: clahe(x)),
    Shift("equalise", "global histogram equalisation", lambda x, r: equalise(x)),
    Shift("noise_0.03", "Gaussian noise, sigma 0.03", lambda x, r: noise(x, 0.03, r)),
    Shift("blur", "Gaussian blur, sigma 0.3% of the short side", lambda x, r: blur(x, 0.003)),
    Shift("border_white", "white collimation border, 6% of each side", lambda x, r: border(x, 0.06, 1.0)),
    Shift("crop_10", "up to 10% cropped from each side", lambda x, r: crop(x, 0.10, r)),
    Shift("pad_15", "15% black padding around", lambda x, r: pad(x, 0.15)),
    Shift("rotate_10", "rotated 10 degrees", lambda x, r: rotate(x, 10.0)),
    Shift("text", "side marker and annotation burnt in", burnt_in_text),
    Shift("window_12bit", "12-bit storage under a default window (80% of the range)", lambda x, r: window_12bit(x)),
    Shift("inverted", "MONOCHROME1 left inverted (an export error)", lambda x, r: invert(x), scanner=False),
)


def random_site_shift(image: Image, rng: np.random.Generator, probability: float = 0.5) -> Image:
    """Training augmentation: with ``probability``, one or two site shifts at random strengths.

    Only shifts that keep the image's geometry (so an outline mask stays valid); crops, padding
    and rotation are the augmentation's own geometric step.
    """
    if rng.random() >= probability:
        return image
    for index in rng.choice(len(_RANDOM), size=int(rng.integers(1, 3)), replace=False):
        image = _RANDOM[index](image, rng)
    return image


_RANDOM: tuple[Callable[[Image, np.random.Generator], Image], ...] = (
    lambda x, r: downscale(x, r.uniform(1.5, 4.0)),
    lambda x, r: jpeg(x, int(r.integers(15, 80))),
    lambda x, r: gamma(x, r.uniform(0.6, 1.6)),
    lambda x, r: contrast(x, r.uniform(0.6, 1.4)),
    lambda x, r: clahe(x, r.uniform(1.0, 3.0)),
    lambda x, r: equalise(x),
    lambda x, r: noise(x, r.uniform(0.005, 0.04), r),
    lambda x, r: blur(x, r.uniform(0.001, 0.005)),
    lambda x, r: border(x, r.uniform(0.02, 0.08), float(r.choice([0.0, 1.0]))),
    burnt_in_text,
    lambda x, r: window_12bit(x, r.uniform(0.5, 1.0)),
)

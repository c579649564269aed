"""How radiographs differ between sites, as pure image functions.

Each shift takes a 2-D float32 image in [0, 1] (a decoded radiograph or a model input) and
returns one of the same shape and range, as another scanner, processing chain or export could
have rendered it: lower resolution, JPEG re-compression, gamma, contrast, histogram
processing (CLAHE, equalisation), noise, blur, collimation borders, crops and padding,
rotation, burnt-in text, 12-bit storage under a window. Training draws random ones to augment
(:func:`random_site_shift`); the robustness table re-renders the validation split under each
(:data:`SHIFTS`, fixed strengths). Where there is no digital radiography a phone photo of a
film or a monitor is the upload: :data:`PHOTO_SHIFTS` render its light, glare, colour cast,
moiré, camera blur, noise and JPEG on a straightened image (the geometry is
:mod:`fracture_web.photo_render`'s). numpy and OpenCV only; no Flask, no TensorFlow.
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


def _unit_grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates scaled to [-1, 1] across each side: (y, x)."""
    height, width = shape
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return 2 * y / max(1, height - 1) - 1, 2 * x / max(1, width - 1) - 1


def uneven_light(image: Image, strength: float, rng: np.random.Generator) -> Image:
    """Light that falls off across a photographed film or screen: a tilt in a random direction
    and a vignette, together dimming the darkest corner by up to ``strength`` (0-1)."""
    y, x = _unit_grid(image.shape)
    angle = rng.uniform(0.0, 2 * np.pi)
    tilt = (np.cos(angle) * x + np.sin(angle) * y + np.sqrt(2)) / (2 * np.sqrt(2))
    field = 1.0 - strength * (0.5 * tilt + 0.25 * (x * x + y * y))
    return np.clip(image * field, 0.0, 1.0).astype(np.float32)


def glare(image: Image, strength: float, rng: np.random.Generator) -> Image:
    """A reflection of a lamp or window: a soft blob at a random place that pulls the pixels
    under it towards white by up to ``strength`` (0-1)."""
    y, x = _unit_grid(image.shape)
    cy, cx = rng.uniform(-0.8, 0.8, 2)
    radius = rng.uniform(0.1, 0.4)
    blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius * radius)).astype(np.float32)
    return np.clip(image + strength * blob * (1.0 - image), 0.0, 1.0).astype(np.float32)


def lifted_blacks(image: Image, black: float, white: float) -> Image:
    """A film's base fog or a monitor's glowing black, and a light box or screen short of full
    white: the range [0, 1] mapped to [``black``, ``white``] (less contrast)."""
    return (np.float32(black) + np.float32(white - black) * np.clip(image, 0.0, 1.0)).astype(np.float32)


def colour_cast_to_grey(image: Image, rng: np.random.Generator) -> Image:
    """A colour cast (warm light box, cold screen, white balance) on each of B, G and R, clipped
    per channel, then converted back to grey as the app converts a colour upload."""
    gains = rng.uniform(0.8, 1.2, 3).astype(np.float32)
    offsets = rng.uniform(-0.04, 0.04, 3).astype(np.float32)
    bgr = np.clip(image[..., np.newaxis] * gains + offsets, 0.0, 1.0).astype(np.float32)
    return np.clip(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), 0.0, 1.0).astype(np.float32)


def moire(image: Image, strength: float, period_fraction: float, rng: np.random.Generator) -> Image:
    """The interference of a screen's pixel grid with the camera's: two fine gratings at random
    angles whose fringes bend slowly, modulating the brightness by up to ``strength``; the
    period is ``period_fraction`` of the short side."""
    y, x = np.mgrid[0:image.shape[0], 0:image.shape[1]].astype(np.float32) / np.float32(min(image.shape))
    pattern = np.zeros_like(image, dtype=np.float32)
    for angle in rng.uniform(0.0, np.pi, 2):
        bend = rng.uniform(0.5, 2.0) * np.sin(np.pi * (x * np.sin(angle) - y * np.cos(angle)))
        pattern += np.cos(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period_fraction + bend) / 2
    return np.clip(image * (1.0 + strength * pattern), 0.0, 1.0).astype(np.float32)


def motion_blur(image: Image, length_fraction: float, degrees: float) -> Image:
    """A hand that moved while the phone exposed: a line blur ``length_fraction`` of the short side."""
    length = max(3, round(length_fraction * min(image.shape)) | 1)
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    rotation = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), degrees, 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length))
    return np.clip(cv2.filter2D(image, -1, kernel / kernel.sum()), 0.0, 1.0).astype(np.float32)


def _phone_camera(image: Image, rng: np.random.Generator) -> Image:
    """What the phone adds whatever it photographs: focus or shake blur, sensor noise, JPEG."""
    if rng.random() < 0.5:
        image = blur(image, rng.uniform(0.001, 0.004))
    else:
        image = motion_blur(image, rng.uniform(0.004, 0.012), rng.uniform(0.0, 180.0))
    return jpeg(noise(image, rng.uniform(0.004, 0.025), rng), int(rng.integers(40, 90)))


def photo_of_film(image: Image, rng: np.random.Generator) -> Image:
    """A phone photo of the film on a light box, once straightened: base fog and a box short of
    white, uneven light, a glare spot half the time, a colour cast, and the phone's camera."""
    out = lifted_blacks(image, rng.uniform(0.02, 0.12), rng.uniform(0.8, 1.0))
    out = uneven_light(out, rng.uniform(0.1, 0.35), rng)
    if rng.random() < 0.5:
        out = glare(out, rng.uniform(0.2, 0.6), rng)
    return _phone_camera(colour_cast_to_grey(out, rng), rng)


def photo_of_monitor(image: Image, rng: np.random.Generator) -> Image:
    """A phone photo of a monitor, once straightened: a glowing black, a dimmer white, uneven
    light, moiré, a reflection half the time, a colour cast, and the phone's camera."""
    out = lifted_blacks(image, rng.uniform(0.04, 0.2), rng.uniform(0.75, 0.95))
    out = uneven_light(out, rng.uniform(0.05, 0.25), rng)
    out = moire(out, rng.uniform(0.03, 0.15), rng.uniform(0.008, 0.03), rng)
    if rng.random() < 0.5:
        out = glare(out, rng.uniform(0.1, 0.4), rng)
    return _phone_camera(colour_cast_to_grey(out, rng), rng)


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

#: Phone photos of a film or a screen, as the model input sees them once straightened: not a
#: scanner's doing, so no robustness target (the table's photographed rows render whole photos).
PHOTO_SHIFTS: tuple[Shift, ...] = (
    Shift("photo_film", "a phone photo of the film on a light box (light, glare, cast, camera)",
          photo_of_film, scanner=False),
    Shift("photo_monitor", "a phone photo of a monitor (glowing black, light, moire, cast, camera)",
          photo_of_monitor, scanner=False),
)


def random_site_shift(image: Image, rng: np.random.Generator, probability: float = 0.5) -> Image:
    """Training augmentation: with ``probability``, one or two site shifts at random strengths.

    Only shifts that keep the image's geometry (so an outline mask stays valid); crops, padding
    and rotation are the augmentation's own geometric step. The two photo renderings are drawn
    like the others: at the default probability about one training image in nine is seen as a
    photo, enough to learn a photo's look without costing the files, most uploads, their accuracy.
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
    *(shift.apply for shift in PHOTO_SHIFTS),
)

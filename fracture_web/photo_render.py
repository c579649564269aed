"""A radiograph rendered as a phone photo of its film on a light box or of a monitor showing it.

Where there is no digital radiography, clinicians photograph the film or the screen. This
renders such a photo from a radiograph file, for the robustness table and the tests: the film
or screen in its surround (a light box's glow, a monitor's bezel, a room behind), seen at an
angle (a perspective warp), with uneven light, glare, a colour cast, moiré on a screen, and the
phone's blur, noise and JPEG. The photometric steps are :mod:`fracture_web.shifts`' (their
training counterparts are its ``PHOTO_SHIFTS``). numpy and OpenCV only.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .shifts import blur, glare, lifted_blacks, moire, motion_blur, uneven_light

#: What can be photographed.
KINDS = ("film", "monitor")
#: The photo's long side at most, in pixels (a phone photo as a messaging app resizes it).
MAX_PHOTO_SIDE = 2048


@dataclass(frozen=True)
class Photo:
    """A rendered photo: ``image`` (H, W, 3) uint8 BGR, and ``corners`` (4, 2) float32, the
    radiograph's top-left, top-right, bottom-right and bottom-left corners in its pixels (x, y)."""

    image: np.ndarray
    corners: np.ndarray


def render_photo(image: np.ndarray, kind: str, rng: np.random.Generator) -> Photo:
    """``image`` (uint8, grey or BGR) as a phone photo of its film (``kind="film"``) or of a
    monitor (``"monitor"``); deterministic for the generator's state."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    grey = _shrink(grey.astype(np.float32) / np.float32(255.0), int(MAX_PHOTO_SIDE * 0.8))
    scene, inner = (_light_box if kind == "film" else _monitor)(grey, rng)
    photo_size = _photo_size(scene.shape, rng)
    matrix = _perspective(scene.shape, photo_size, rng)
    lit = cv2.warpPerspective(scene, matrix, photo_size, flags=cv2.INTER_LINEAR, borderValue=0.0)
    inside = cv2.warpPerspective(np.ones_like(scene), matrix, photo_size, flags=cv2.INTER_LINEAR, borderValue=0.0)
    luminance = np.where(inside > 0.5, lit, _room(lit, inside, kind == "film", rng))
    luminance = uneven_light(luminance, rng.uniform(0.05, 0.3), rng)
    if rng.random() < 0.6:
        luminance = glare(luminance, rng.uniform(0.2, 0.6), rng)
    corners = cv2.perspectiveTransform(inner.reshape(1, 4, 2), matrix).reshape(4, 2)
    return Photo(_camera(_colour(luminance, kind, rng), rng), corners.astype(np.float32))


def _shrink(image: np.ndarray, long_side: int) -> np.ndarray:
    scale = long_side / max(image.shape)
    if scale >= 1.0:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)


def _light_box(grey: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The film on its lit panel, with a lit margin around it, as luminance; and the film's corners.
    The film passes light where the radiograph is bright; its base never passes all of it."""
    height, width = grey.shape
    top, bottom, left, right = (rng.uniform(0.02, 0.1, 4) * np.array([height, height, width, width])).astype(int) + 2
    panel = np.full((height + top + bottom, width + left + right), rng.uniform(0.9, 1.0), np.float32)
    panel[top:top + height, left:left + width] *= lifted_blacks(grey, rng.uniform(0.02, 0.08), rng.uniform(0.75, 0.88))
    return panel, _rect(left, top, left + width, top + height)


def _monitor(grey: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A screen showing the radiograph on a viewer's dark background, inside a darker bezel, as
    luminance with the screen's moiré; and the radiograph's corners."""
    height, width = grey.shape
    margin_y, margin_x = (rng.uniform(0.02, 0.08, 2) * np.array([height, width])).astype(int) + 2
    bezel = max(3, int(rng.uniform(0.02, 0.05) * max(height, width)))
    screen = np.full((height + 2 * margin_y, width + 2 * margin_x), rng.uniform(0.0, 0.06), np.float32)
    screen[margin_y:margin_y + height, margin_x:margin_x + width] = grey
    screen = lifted_blacks(screen, rng.uniform(0.04, 0.12), rng.uniform(0.75, 0.95))
    screen = moire(screen, rng.uniform(0.05, 0.15), rng.uniform(0.004, 0.015), rng)
    scene = cv2.copyMakeBorder(screen, bezel, bezel, bezel, bezel, cv2.BORDER_CONSTANT, value=rng.uniform(0.01, 0.04))
    offset = bezel + np.array([margin_x, margin_y])
    return scene, _rect(offset[0], offset[1], offset[0] + width, offset[1] + height)


def _photo_size(scene_shape: tuple[int, int], rng: np.random.Generator) -> tuple[int, int]:
    """The photo's (width, height): 4:3 in the scene's orientation, the scene filling most of it."""
    long_side = min(MAX_PHOTO_SIDE, round(max(scene_shape) / rng.uniform(0.7, 0.9)))
    short_side = round(long_side * 3 / 4)
    return (short_side, long_side) if scene_shape[0] >= scene_shape[1] else (long_side, short_side)


def _perspective(scene_shape: tuple[int, int], photo_size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Scene to photo: the scene scaled to fill 65-85% of the photo, turned a little, moved off
    centre and seen at an angle (each corner pushed by up to 5% of the photo's side)."""
    height, width = scene_shape
    photo_w, photo_h = photo_size
    scale = rng.uniform(0.65, 0.85) * min(photo_w / width, photo_h / height)
    turn = cv2.getRotationMatrix2D((0.0, 0.0), rng.uniform(-6.0, 6.0), scale)
    centred = _rect(0, 0, width, height) - np.float32([width / 2, height / 2])
    placed = centred @ turn[:, :2].T.astype(np.float32)
    placed += np.float32([photo_w / 2, photo_h / 2]) + rng.uniform(-0.05, 0.05, 2).astype(np.float32) * photo_size
    placed += rng.uniform(-0.05, 0.05, (4, 2)).astype(np.float32) * min(photo_size)
    # The whole film in the picture, as whoever takes it is asked to frame it.
    placed = np.clip(placed, 0.02 * np.float32(photo_size), 0.98 * np.float32(photo_size))
    return cv2.getPerspectiveTransform(_rect(0, 0, width, height), placed.astype(np.float32))


def _room(lit: np.ndarray, inside: np.ndarray, glows: bool, rng: np.random.Generator) -> np.ndarray:
    """What surrounds the film or screen: a dim room with soft, uneven shading, lit by a light
    box's glow when there is one."""
    height, width = lit.shape
    coarse = rng.uniform(0.05, 0.3, (4, 4)).astype(np.float32)
    room = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    if glows:
        room = room + 0.5 * cv2.GaussianBlur(lit * inside, (0, 0), 0.04 * max(height, width))
    return np.clip(room, 0.0, 1.0).astype(np.float32)


def _colour(luminance: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Luminance to BGR under a colour cast: a light box's warm or cold white, a screen's blue."""
    cast = rng.uniform(0.85, 1.15, 3) * (np.array([1.08, 1.0, 0.92]) if kind == "monitor" else 1.0)
    return np.clip(luminance[..., np.newaxis] * cast.astype(np.float32), 0.0, 1.0).astype(np.float32)


def _camera(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The phone's share: focus or shake blur, sensor noise (stronger in the dark), JPEG."""
    if rng.random() < 0.5:
        planes = [blur(plane, rng.uniform(0.0005, 0.002)) for plane in cv2.split(bgr)]
    else:
        length, degrees = rng.uniform(0.002, 0.006), rng.uniform(0.0, 180.0)
        planes = [motion_blur(plane, length, degrees) for plane in cv2.split(bgr)]
    out = cv2.merge(planes)
    sigma = rng.uniform(0.004, 0.02) * (1.0 + 0.5 * (1.0 - out))
    out = np.clip(out + sigma * rng.standard_normal(out.shape).astype(np.float32), 0.0, 1.0)
    quality = int(rng.integers(50, 92))
    ok, data = cv2.imencode(".jpg", np.rint(out * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return cv2.imdecode(data, cv2.IMREAD_COLOR)

"""A phone photo of a film or a screen, recognised and straightened before it is read.

A radiograph file has no colour: even one stored as RGB has three equal channels. A camera
always adds some (a light box's or a screen's cast, colour noise), so a colour upload with a
cast is taken for a photo. Its film or screen is found as the largest quadrilateral whose
border stands out from what surrounds it (a light box's glow, a monitor's bezel, the room),
warped flat, cleared of the bare light box round a film, of a screen's bezel and viewer
margins, of uneven light and glare, of noise and moiré (a light blur; the reduction to the model
input averages the rest) and of the lifted black level (a film's fog, a screen's glow), and read
in grey (each of these steps raised the AUC on rendered photos of the validation split). When
no film is found the photo is read as it is. numpy and OpenCV only; :mod:`fracture_web.imaging` calls
:func:`read_photo` on colour decodes.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .pixels import InvalidImageError, edge_strength

#: Mean spread between a pixel's B, G and R (8-bit levels) from which an image is a photo; a
#: radiograph stored in colour has none.
MIN_CAST = 0.5
#: Share of the pixels that must carry the cast (a spread of ``CAST_LEVELS`` or more): a camera's
#: cast covers the photo (a tenth of it at the least, in rendered photos), where a radiograph
#: file's coloured marker or annotation covers a few hundredths.
MIN_CAST_SHARE, CAST_LEVELS = 0.05, 2
#: The film's share of the photo: smaller is a detail, larger is the photo's own frame.
MIN_AREA, MAX_AREA = 0.12, 0.97
#: How far the film's border must stand out from just outside it (mean grey, 0-1).
MIN_EDGE_CONTRAST = 0.04
#: How much brighter than the film's centre a light box's bare margin is (grey, 0-1).
LIT_MARGIN_CONTRAST = 0.25
#: The window, as a share of the film's short side, over which the light under it is taken as
#: even; and the short side it is worked out at.
FLOOR_WINDOW, FLOOR_SIDE = 0.06, 160
#: The long side the search works at.
SEARCH_SIDE = 512
#: A photo is refused, to be taken again, when the brightest 1% of it is darker than this (grey,
#: 0-1), or when it is less sharp than this (mean absolute Laplacian at SEARCH_SIDE): both far
#: below any photo the renderer makes, so that only a photo nobody could read is refused.
MIN_BRIGHTNESS, MIN_SHARPNESS = 0.12, 0.0015
TOO_DARK = ("The photo is too dark to read. Take it again with the film on a lit light box, or with the "
            "screen's brightness up, and without the flash.")
TOO_BLURRED = ("The photo is too blurred to read. Take it again holding the phone still and square to the "
               "film, and let it focus first.")
PHOTO_WARNING = ("This is a photo of a film or a screen: it was straightened and read in grey. Photos are read "
                 "less accurately than the radiograph's own file; use the file or a DICOM export where there is one.")
NO_FILM_WARNING = ("This looks like a photo, but no film or screen could be found in it, so it was read as it is. "
                   "Photos are read less accurately than the radiograph's own file; photograph the whole film "
                   "squarely, or use the file or a DICOM export where there is one.")
WARNINGS = (PHOTO_WARNING, NO_FILM_WARNING)


@dataclass(frozen=True)
class PhotoReading:
    """How a photo is read: ``pixels`` the straightened film, grey in [0, 1] (None when no film
    was found: the photo is then read as it is), ``corners`` (4, 2) where the film was found in
    the photo (x, y; None likewise), and the warning that goes with it."""

    pixels: np.ndarray | None
    corners: np.ndarray | None
    warning: str


def has_colour_cast(bgr: np.ndarray) -> bool:
    """True where a uint8 BGR image has colour over much of it, as every camera photo has (not
    where a grey radiograph carries a small coloured mark)."""
    blue, green, red = cv2.split(np.ascontiguousarray(bgr[::2, ::2]))
    spread = cv2.subtract(cv2.max(cv2.max(blue, green), red), cv2.min(cv2.min(blue, green), red))
    return cv2.mean(spread)[0] >= MIN_CAST and float(np.mean(spread >= CAST_LEVELS)) >= MIN_CAST_SHARE


def read_photo(bgr: np.ndarray) -> PhotoReading | None:
    """A uint8 BGR upload read as a photo of a film or a screen, straightened where the film is
    found; None when it is not a photo (no colour at all, or not 8-bit colour). A photo too dark
    or too blurred to read raises :class:`InvalidImageError`, asking for another."""
    if bgr.ndim != 3 or bgr.dtype != np.uint8 or not has_colour_cast(bgr):
        return None
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32) / np.float32(255.0)
    check_readable(grey)
    corners = find_film(grey)
    if corners is None:
        return PhotoReading(None, None, NO_FILM_WARNING)
    flat = _cut_frames(_trim_lit_margins(straighten(grey, corners)))
    return PhotoReading(_tone(flat), corners, PHOTO_WARNING)


def check_readable(grey: np.ndarray) -> None:
    """Refuse a [0, 1] grey photo too dark or too blurred to read, with what to do instead."""
    scale = min(1.0, SEARCH_SIDE / max(grey.shape))
    small = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    if np.percentile(small, 99) < MIN_BRIGHTNESS:
        raise InvalidImageError(TOO_DARK)
    if edge_strength(small) < MIN_SHARPNESS:
        raise InvalidImageError(TOO_BLURRED)


def find_film(grey: np.ndarray, cut_sides: int = 0) -> np.ndarray | None:
    """The corners (top-left, top-right, bottom-right, bottom-left; x, y) of the largest
    quadrilateral in a [0, 1] grey photo whose border stands out from its surround, or None.
    ``cut_sides``: how many of its sides may lie on the picture's edge instead."""
    scale = min(1.0, SEARCH_SIDE / max(grey.shape))
    small = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else grey
    small = cv2.GaussianBlur(small, (0, 0), 1.5)
    quads = sorted(_candidates(small), key=lambda q: -cv2.contourArea(q))
    for quad in quads:
        if _border_stands_out(small, quad, cut_sides):
            return (_order(quad) / np.float32(scale)).astype(np.float32)
    return None


def _candidates(small: np.ndarray) -> list[np.ndarray]:
    """Convex quadrilaterals of a plausible size, from the outlines of bright regions (Otsu and
    a higher cut) and of the edges."""
    as_uint8 = np.clip(small * 255, 0, 255).astype(np.uint8)
    otsu, _ = cv2.threshold(as_uint8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    masks = [as_uint8 > level for level in (otsu, (otsu + 255) / 2, otsu / 2)]
    median = float(np.median(as_uint8))
    edges = cv2.Canny(as_uint8, max(5.0, 0.33 * median), max(15.0, 0.66 * median + 10))
    masks.append(cv2.dilate(edges, np.ones((3, 3), np.uint8)) > 0)
    area = small.shape[0] * small.shape[1]
    quads = []
    for mask in masks:
        mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        for contour in sorted(contours, key=cv2.contourArea, reverse=True)[:8]:
            hull = cv2.convexHull(contour)
            quad = cv2.approxPolyDP(hull, 0.02 * cv2.arcLength(hull, True), True).reshape(-1, 2)
            if len(quad) == 4 and MIN_AREA * area <= cv2.contourArea(quad) <= MAX_AREA * area:
                quads.append(quad.astype(np.float32))
    return quads


def _border_stands_out(small: np.ndarray, quad: np.ndarray, cut_sides: int) -> bool:
    """Each side of ``quad`` separates two different greys: sampled a few pixels inside and
    outside along the side, the mean difference is at least :data:`MIN_EDGE_CONTRAST`; up to
    ``cut_sides`` sides may instead have nothing outside them (the picture's edge)."""
    centre = quad.mean(axis=0)
    step = max(2.0, 0.01 * max(small.shape))
    for start, end in zip(quad, np.roll(quad, -1, axis=0)):
        points = start + np.linspace(0.1, 0.9, 24)[:, None] * (end - start)
        normal = np.array([end[1] - start[1], start[0] - end[0]], np.float32)
        normal /= np.linalg.norm(normal) + 1e-6
        if np.dot(centre - points.mean(axis=0), normal) < 0:
            normal = -normal
        inside, outside = _sample(small, points + step * normal), _sample(small, points - step * normal)
        if outside is None:
            cut_sides -= 1
            if cut_sides < 0:
                return False
        elif abs(float(np.mean(inside - outside))) < MIN_EDGE_CONTRAST:
            return False
    return True


def _sample(image: np.ndarray, points: np.ndarray) -> np.ndarray | None:
    """The image's values at (x, y) ``points``, or None when any lies outside it."""
    column, row = np.rint(points[:, 0]).astype(int), np.rint(points[:, 1]).astype(int)
    if column.min() < 0 or row.min() < 0 or column.max() >= image.shape[1] or row.max() >= image.shape[0]:
        return None
    return image[row, column]


def _order(quad: np.ndarray) -> np.ndarray:
    """The four points in turn round their centre, clockwise as the image shows them, from the
    top-left one (the least x + y): each point once, also for a film turned 45 degrees, where
    choosing each corner on its own picked one point twice and warped the film to a strip."""
    centre = quad.mean(axis=0)
    turn = quad[np.argsort(np.arctan2(quad[:, 1] - centre[1], quad[:, 0] - centre[0]))]
    return np.roll(turn, -int(np.argmin(turn.sum(axis=1))), axis=0).astype(np.float32)


def straighten(grey: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """The quadrilateral ``corners`` of ``grey`` warped to a rectangle of its mean side lengths."""
    top, right = np.linalg.norm(corners[1] - corners[0]), np.linalg.norm(corners[2] - corners[1])
    bottom, left = np.linalg.norm(corners[2] - corners[3]), np.linalg.norm(corners[3] - corners[0])
    width, height = max(8, round((top + bottom) / 2)), max(8, round((left + right) / 2))
    target = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float32)
    matrix = cv2.getPerspectiveTransform(corners.astype(np.float32), target)
    return cv2.warpPerspective(grey, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _trim_lit_margins(flat: np.ndarray) -> np.ndarray:
    """Cut the bare light box round a film: on each side, the band much brighter than the
    picture's centre (a film never passes as much light), up to where it drops halfway."""
    height, width = flat.shape
    centre = float(np.median(flat[height // 4:3 * height // 4, width // 4:3 * width // 4]))
    rows = flat[:, width // 10:width - width // 10].mean(axis=1)
    cols = flat[height // 10:height - height // 10].mean(axis=0)
    top, bottom = _lit_band(rows, centre), height - _lit_band(rows[::-1], centre)
    left, right = _lit_band(cols, centre), width - _lit_band(cols[::-1], centre)
    return flat[top:bottom, left:right]


def _cut_frames(flat: np.ndarray, levels: int = 2) -> np.ndarray:
    """Cut a screen's frames in turn: its bezel's inner edge, then the viewer's margin round the
    image, each found as an upright rectangle whose border stands out (at most ``levels``)."""
    for _ in range(levels):
        corners = find_film(_stretch(flat), cut_sides=1)
        if corners is None or not _upright(corners, flat.shape):
            break
        flat = straighten(flat, corners)
    return flat


def _upright(corners: np.ndarray, shape: tuple[int, int]) -> bool:
    """True for corners within 2% of the sides of their bounding rectangle (already straight)."""
    (x0, y0), (x1, y1) = corners.min(axis=0), corners.max(axis=0)
    rectangle = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)
    return bool(np.all(np.abs(corners - rectangle) <= 0.02 * np.array(shape[::-1], np.float32)))


def _lit_band(profile: np.ndarray, centre: float) -> int:
    """How many of the profile's first values (at most a quarter) are a lit margin: from its
    brightest value, if well above ``centre``, to where it falls halfway back."""
    outer = profile[:max(1, len(profile) // 4)]
    peak = int(np.argmax(outer))
    if outer[peak] - centre < LIT_MARGIN_CONTRAST:
        return 0
    below = np.flatnonzero(outer[peak:] < (outer[peak] + centre) / 2)
    return peak + int(below[0]) if len(below) else 0


def _tone(flat: np.ndarray) -> np.ndarray:
    """The straightened film's grey levels made a radiograph's: the uneven light and glare under
    it taken away (:func:`_floor`), the sensor noise and moiré softened, and the lifted black
    level stretched away."""
    return _stretch(cv2.GaussianBlur(flat - _floor(flat), (0, 0), 1.0))


def _floor(flat: np.ndarray) -> np.ndarray:
    """The light under the film where nothing of it adds any: the darkest level around each
    place, smoothed; worked out at a low resolution, as it varies slowly."""
    scale = min(1.0, FLOOR_SIDE / min(flat.shape))
    small = cv2.resize(flat, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else flat
    side = max(3, int(FLOOR_WINDOW * min(small.shape)) | 1)
    floor = cv2.GaussianBlur(cv2.erode(small, np.ones((side, side), np.uint8)), (0, 0), side)
    return cv2.resize(floor, flat.shape[::-1], interpolation=cv2.INTER_LINEAR)


def _stretch(grey: np.ndarray) -> np.ndarray:
    """Undo a film's fog or a screen's glowing black and dim white: the 0.5th to 99.5th
    percentiles stretched to [0, 1]."""
    low, high = np.percentile(grey, (0.5, 99.5))
    return np.clip((grey - low) / max(float(high - low), 1e-3), 0.0, 1.0).astype(np.float32)

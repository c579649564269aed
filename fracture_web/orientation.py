"""Radiographs as a PACS may hold them: turned by quarter turns or mirrored, as pure array functions.

Each function takes an array whose first two axes are rows and columns (a decoded image, a model
input, or an outline mask that must follow it) and returns a new contiguous one; nothing is
resampled, so pixels keep their values. The robustness table
re-renders the validation split under each of :data:`ORIENTATIONS`, reported beside the scanner
shifts (an orientation is not something a scanner does to the pixels). numpy only.
"""
from __future__ import annotations

import numpy as np

from .shifts import Shift


def rotate_quarter_turns(image: np.ndarray, turns: int) -> np.ndarray:
    """Rotated by ``turns`` x 90 degrees counter-clockwise (negative turns: clockwise)."""
    return np.ascontiguousarray(np.rot90(image, turns))


def flip_horizontal(image: np.ndarray) -> np.ndarray:
    """Mirrored left to right."""
    return np.ascontiguousarray(image[:, ::-1])


def flip_vertical(image: np.ndarray) -> np.ndarray:
    """Mirrored top to bottom."""
    return np.ascontiguousarray(image[::-1])


#: The robustness table's orientation rows (not scanner shifts: the 0.03 AUC target does not apply).
ORIENTATIONS: tuple[Shift, ...] = (
    Shift("rot90", "rotated 90 degrees counter-clockwise", lambda x, r: rotate_quarter_turns(x, 1), scanner=False),
    Shift("rot180", "rotated 180 degrees", lambda x, r: rotate_quarter_turns(x, 2), scanner=False),
    Shift("rot270", "rotated 270 degrees counter-clockwise (90 clockwise)", lambda x, r: rotate_quarter_turns(x, 3),
          scanner=False),
    Shift("flip_horizontal", "mirrored left to right", lambda x, r: flip_horizontal(x), scanner=False),
    Shift("flip_vertical", "mirrored top to bottom", lambda x, r: flip_vertical(x), scanner=False),
)

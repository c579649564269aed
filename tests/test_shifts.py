"""The site shifts: each re-renders a radiograph as another site might, and only that."""
from __future__ import annotations

import numpy as np
import pytest

from fracture_web import shifts
from fracture_web.imaging import decode_image
from helpers import SAMPLES


#: Shifts that move or cover pixels (the others re-render the same pixels).
GEOMETRIC = {"border_white", "crop_10", "pad_15", "rotate_10"}


@pytest.fixture(scope="module")
def radiograph() -> np.ndarray:
    return decode_image(SAMPLES[0].read_bytes()).pixels


@pytest.mark.parametrize("shift", shifts.SHIFTS, ids=lambda s: s.name)
def test_every_shift_gives_a_valid_image_that_differs_but_keeps_the_anatomy(shift, radiograph):
    out = shift.apply(radiograph, np.random.default_rng(0))
    assert out.dtype == np.float32 and out.ndim == 2
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert not np.array_equal(out, radiograph)
    if shift.name not in GEOMETRIC and shift.scanner:
        # Same pixels, other rendering: still strongly correlated with the original.
        assert np.corrcoef(out.ravel(), radiograph.ravel())[0, 1] > 0.6


def test_geometry_keeping_shifts_keep_the_shape(radiograph):
    rng = np.random.default_rng(1)
    for _ in range(40):
        assert shifts.random_site_shift(radiograph, rng, probability=1.0).shape == radiograph.shape


def test_random_site_shift_leaves_about_half_the_images_alone(radiograph):
    rng = np.random.default_rng(2)
    unchanged = sum(shifts.random_site_shift(radiograph, rng) is radiograph for _ in range(200))
    assert 70 < unchanged < 130


def test_the_lost_inversion_is_marked_as_an_error_not_a_scanner_difference():
    by_name = {s.name: s for s in shifts.SHIFTS}
    assert not by_name["inverted"].scanner
    assert all(s.scanner for s in shifts.SHIFTS if s.name != "inverted")


def test_jpeg_recompression_loses_more_at_lower_quality(radiograph):
    error = {q: np.abs(shifts.jpeg(radiograph, q) - radiograph).mean() for q in (90, 50, 10)}
    assert error[90] < error[50] < error[10]


def test_crop_and_pad_change_the_field_of_view(radiograph):
    height, width = radiograph.shape
    cropped = shifts.crop(radiograph, 0.1, np.random.default_rng(0))
    assert cropped.shape[0] <= height and cropped.shape[1] <= width and cropped.size < radiograph.size
    padded = shifts.pad(radiograph, 0.15)
    assert padded.shape == (height + 2 * round(height * 0.15), width + 2 * round(width * 0.15))
    assert padded[0].max() == 0.0

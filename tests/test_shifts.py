"""The site shifts: each re-renders a radiograph as another site might, and only that."""
from __future__ import annotations

import cv2
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


#: Each step of a photo's look, at a strength that shows.
PHOTO_STEPS = {
    "uneven_light": lambda x, r: shifts.uneven_light(x, 0.3, r),
    "glare": lambda x, r: shifts.glare(x, 0.5, r),
    "lifted_blacks": lambda x, r: shifts.lifted_blacks(x, 0.1, 0.85),
    "colour_cast_to_grey": shifts.colour_cast_to_grey,
    "moire": lambda x, r: shifts.moire(x, 0.1, 0.02, r),
    "motion_blur": lambda x, r: shifts.motion_blur(x, 0.01, 30.0),
}


@pytest.mark.parametrize("step", PHOTO_STEPS.values(), ids=PHOTO_STEPS.keys())
def test_each_step_of_a_photos_look_keeps_the_image_shape_and_range_and_repeats_for_a_seed(step, radiograph):
    out = step(radiograph, np.random.default_rng(5))
    assert out.dtype == np.float32 and out.shape == radiograph.shape
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert not np.array_equal(out, radiograph)
    assert np.array_equal(out, step(radiograph, np.random.default_rng(5)))


@pytest.mark.parametrize("shift", shifts.PHOTO_SHIFTS, ids=lambda s: s.name)
def test_a_photo_of_the_film_or_the_monitor_looks_like_one_but_keeps_the_anatomy(shift, radiograph):
    out = shift.apply(radiograph, np.random.default_rng(0))
    assert out.dtype == np.float32 and out.shape == radiograph.shape
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert np.array_equal(out, shift.apply(radiograph, np.random.default_rng(0)))
    assert not np.array_equal(out, shift.apply(radiograph, np.random.default_rng(1)))
    # Lower contrast (a film's fog, a screen's glow), the same anatomy.
    assert np.percentile(out, 99) - np.percentile(out, 1) < np.percentile(radiograph, 99) - np.percentile(radiograph, 1)
    assert np.corrcoef(out.ravel(), radiograph.ravel())[0, 1] > 0.6
    assert not shift.scanner


def test_moire_is_a_fine_pattern_that_a_screen_adds_even_to_a_flat_grey():
    flat = np.full((256, 256), 0.5, np.float32)
    out = shifts.moire(flat, 0.1, 0.02, np.random.default_rng(0))
    assert out.std() > 0.02
    # Fine: mostly gone once averaged over a few periods.
    assert cv2.blur(out, (31, 31))[32:-32, 32:-32].std() < out.std() / 3


def test_about_one_training_image_in_nine_is_seen_as_a_photo(monkeypatch, radiograph):
    photos = {shift.apply for shift in shifts.PHOTO_SHIFTS}
    assert photos <= set(shifts._RANDOM)
    # Stand-ins: a photo rendering blanks the image, the other shifts leave it as it is.
    monkeypatch.setattr(shifts, "_RANDOM", tuple(
        (lambda x, r: np.zeros_like(x)) if f in photos else (lambda x, r: x) for f in shifts._RANDOM))
    rng = np.random.default_rng(3)
    as_photo = sum(shifts.random_site_shift(radiograph, rng).max() == 0 for _ in range(900))
    assert 70 < as_photo < 140

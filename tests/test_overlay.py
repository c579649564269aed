"""Heatmap rendering, without Flask."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from fracture_web import overlay
from fracture_web.pixels import to_uint8

from helpers import SAMPLES


def test_heatmap_is_mapped_back_onto_the_image_frame_without_the_letterbox_bars():
    # A hot spot in the top-left of the square input lands in the image's top-left,
    # not in the black bar of a tall image.
    heat = np.zeros((8, 8), np.float32)
    box_left = 2  # a 200x100 image in a 8x8 grid occupies columns 2..5
    heat[0, box_left] = 1.0
    mapped = overlay.heatmap_on_image(heat, (200, 100), input_size=64)
    assert mapped.shape == (200, 100)
    assert 0.0 <= mapped.min() and mapped.max() <= 1.0
    y, x = np.unravel_index(np.argmax(mapped), mapped.shape)
    assert y < 50 and x < 50


def test_colormap_is_viridis_not_jet():
    low, high = overlay.colorize(np.array([[0.0, 1.0]], np.float32))[0]
    assert tuple(low) == (68, 1, 84)  # viridis starts dark purple (jet starts dark blue)
    assert high[0] > 200 and high[1] > 200 and high[2] < 80  # and ends yellow


def test_blend_leaves_the_xray_untouched_where_the_heatmap_is_zero():
    gray = np.full((10, 10), 100, np.uint8)
    heat = np.zeros((10, 10), np.float32)
    heat[5:, 5:] = 1.0
    out = overlay.blend(gray, heat)
    assert out.shape == (10, 10, 3)
    assert np.all(out[:5, :5] == 100)
    assert not np.all(out[5:, 5:] == 100)


def test_display_image_is_downscaled_uint8():
    image = np.random.default_rng(0).random((1000, 800)).astype(np.float32)
    shown = overlay.display_image(image, max_side=500)
    assert shown.shape == (500, 400) and shown.dtype == np.uint8


def test_a_full_size_display_image_looks_like_one_area_resample_of_it():
    # A radiograph decoded at 1440x1152 is halved, then resampled bilinearly to 640x512 (cheaper
    # than one area resample); a reader sees the same picture: a level or two apart at most, but at edges.
    gray = cv2.imread(str(SAMPLES[0]), cv2.IMREAD_GRAYSCALE)
    image = cv2.resize(gray, (1152, 1440), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255
    shown = overlay.display_image(image, max_side=640)
    one_resample = to_uint8(cv2.resize(image, (512, 640), interpolation=cv2.INTER_AREA))
    difference = np.abs(shown.astype(int) - one_resample)
    assert shown.shape == (640, 512) and difference.mean() < 0.5 and np.percentile(difference, 99) <= 4


@pytest.mark.parametrize("shape", [(20, 30, 3), (31, 17), (1, 1)], ids=["rgb", "grey", "one-pixel"])
def test_png_encoding_is_lossless_for_opencv_and_pillow(shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    image[len(image) // 2:] = image[len(image) // 2]  # repeated rows too, which the "up" filter turns to zeros
    png = overlay.encode_png(image)
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    if image.ndim == 3:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(decoded, image)
    with Image.open(io.BytesIO(png)) as opened:
        opened.verify()  # checks every chunk's CRC
    with Image.open(io.BytesIO(png)) as opened:
        np.testing.assert_array_equal(np.asarray(opened), image)


def test_png_encoding_refuses_what_png_cannot_hold_as_is():
    with pytest.raises(ValueError, match="uint8"):
        overlay.encode_png(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="RGB"):
        overlay.encode_png(np.zeros((4, 4, 4), np.uint8))


def test_the_colour_table_gives_opencvs_viridis_in_rgb_level_for_level():
    levels = np.arange(256, dtype=np.float32).reshape(16, 16) / 255
    expected = cv2.cvtColor(cv2.applyColorMap(to_uint8(levels), cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(overlay.colorize(levels), expected)


def full_size_overlay() -> np.ndarray:
    """The overlay the app draws for a full-size radiograph: 640 px, a smooth heatmap over the X-ray."""
    gray = cv2.imread(str(SAMPLES[0]), cv2.IMREAD_GRAYSCALE)
    shown = cv2.resize(gray, (512, 640), interpolation=cv2.INTER_AREA)
    heat = np.zeros((48, 48), np.float32)
    heat[10:30, 15:35] = np.hanning(20)[:, None] * np.hanning(20)[None, :]
    return overlay.blend(shown, overlay.heatmap_on_image(heat, shown.shape, 384))


def test_the_overlay_as_jpeg_looks_like_its_png_at_a_fraction_of_the_bytes():
    image = full_size_overlay()
    jpeg = overlay.encode_jpeg(image)
    with Image.open(io.BytesIO(jpeg)) as opened:
        assert opened.format == "JPEG" and opened.mode == "RGB"
        decoded = np.asarray(opened)
    assert decoded.shape == image.shape
    assert cv2.PSNR(decoded, image) > 40  # the colours where they were: no channel swapped
    assert len(jpeg) * 4 < len(overlay.encode_png(image))


def test_jpeg_encoding_takes_grey_and_refuses_what_it_cannot_hold():
    grey = overlay.encode_jpeg(np.full((16, 16), 200, np.uint8))
    assert cv2.imdecode(np.frombuffer(grey, np.uint8), cv2.IMREAD_UNCHANGED).shape == (16, 16)
    with pytest.raises(ValueError, match="uint8"):
        overlay.encode_jpeg(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="RGB"):
        overlay.encode_jpeg(np.zeros((4, 4, 2), np.uint8))

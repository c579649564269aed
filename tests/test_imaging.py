"""The one preprocessing path, without Flask: bytes in, model input out."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from fracture_web import jpeg_stream
from fracture_web.imaging import decode_image, letterbox_geometry, preprocess, to_model_input
from helpers import SAMPLES
from fracture_web.pixels import InvalidImageError, reduction


def png(image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", image)
    assert ok
    return buffer.tobytes()


def gradient(height: int = 120, width: int = 90) -> np.ndarray:
    return np.tile(np.linspace(0, 255, width), (height, 1)).astype(np.uint8)


def test_8_and_16_bit_pngs_of_the_same_image_give_the_same_input():
    image = gradient()
    eight = preprocess(png(image), 64)
    sixteen = preprocess(png(image.astype(np.uint16) * 257), 64)
    np.testing.assert_allclose(eight, sixteen, atol=1e-5)


def test_a_12_bit_radiograph_in_a_16_bit_png_is_stretched_to_full_range():
    image = (gradient().astype(np.uint16) * 16)  # 0..4080, as many detectors store
    pixels = decode_image(png(image)).pixels
    assert pixels.min() == 0.0 and pixels.max() == pytest.approx(1.0)


def test_colour_image_becomes_grayscale():
    rgb = np.dstack([gradient()] * 3)
    assert decode_image(png(rgb)).pixels.shape == (120, 90)


def test_model_input_is_square_letterboxed_and_normalised():
    model_input = preprocess(png(gradient(200, 100)), 64)
    assert model_input.shape == (64, 64, 1) and model_input.dtype == np.float32
    assert 0.0 <= model_input.min() and model_input.max() <= 1.0
    # a tall image is centred with black bars left and right
    assert np.all(model_input[:, :10] == 0) and np.all(model_input[:, -10:] == 0)


def test_letterbox_geometry_fits_the_long_side():
    box = letterbox_geometry(454, 373, 384)
    assert box.height == 384 and box.width == 315 and box.left == 34 and box.top == 0


def test_small_images_are_enlarged_to_the_model_input():
    image = np.random.default_rng(0).random((70, 70)).astype(np.float32)
    assert to_model_input(image, 128).shape == (128, 128, 1)


def test_jpeg_exif_orientation_is_honoured():
    image = np.zeros((100, 200), np.uint8)
    image[:, :100] = 255  # left half white when upright
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90 degrees clockwise
    Image.fromarray(image).save(buffer, format="JPEG", exif=exif, quality=95)
    decoded = decode_image(buffer.getvalue())
    pixels = decoded.pixels
    assert pixels.shape == decoded.size == (200, 100)  # portrait after rotation
    assert pixels[:100].mean() > 0.9 and pixels[100:].mean() < 0.1  # white half now on top


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
@pytest.mark.parametrize("colour", [False, True], ids=["grey", "colour"])
def test_jpeg_read_with_its_damage_check_gives_opencvs_pixels(scale, colour):
    # JPEGs without EXIF are decoded once, by the decode that checks them for damage: the pixels
    # must be OpenCV's (which reads the rest and read the training images when the model learned).
    for path in SAMPLES:
        data = path.read_bytes()
        if colour:
            pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            pixels[..., 0] //= 2  # a blue tint: a colour JPEG
            data = cv2.imencode(".jpg", pixels)[1].tobytes()
        assert not jpeg_stream.has_exif(data)
        flags = {1: cv2.IMREAD_COLOR if colour else cv2.IMREAD_GRAYSCALE,
                 2: cv2.IMREAD_REDUCED_COLOR_2 if colour else cv2.IMREAD_REDUCED_GRAYSCALE_2,
                 4: cv2.IMREAD_REDUCED_COLOR_4 if colour else cv2.IMREAD_REDUCED_GRAYSCALE_4,
                 8: cv2.IMREAD_REDUCED_COLOR_8 if colour else cv2.IMREAD_REDUCED_GRAYSCALE_8}[scale]
        expected = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
        np.testing.assert_array_equal(jpeg_stream.decode(data, colour, scale), expected)


def test_a_jpeg_with_an_exif_block_is_left_to_opencv_which_turns_it():
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((80, 90), np.uint8)).save(buffer, format="JPEG", exif=Image.Exif())
    assert jpeg_stream.has_exif(buffer.getvalue())
    assert jpeg_stream.decode(buffer.getvalue(), False, 1) is None


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"patient notes, not an image", "not an image"),
    (b"<html><body>hello</body></html>", "not an image"),
    (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "not an image"),
])
def test_non_images_are_refused_with_a_clear_message(data, message):
    with pytest.raises(InvalidImageError, match=message):
        decode_image(data)


def test_tiny_and_blank_images_are_refused():
    with pytest.raises(InvalidImageError, match="too small"):
        decode_image(png(np.zeros((20, 20), np.uint8)))
    with pytest.raises(InvalidImageError, match="blank"):
        decode_image(png(np.full((100, 100), 7, np.uint8)))


def test_gif_is_refused_by_its_bytes_not_its_name():
    buffer = io.BytesIO()
    Image.fromarray(gradient()).save(buffer, format="GIF")
    with pytest.raises(InvalidImageError, match="not supported"):
        decode_image(buffer.getvalue())


def jpeg(image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buffer.tobytes()


def radiograph(size: tuple[int, int]) -> np.ndarray:
    """A real radiograph's 8-bit pixels at ``size`` (height, width)."""
    image = cv2.imdecode(np.frombuffer(SAMPLES[0].read_bytes(), np.uint8), cv2.IMREAD_GRAYSCALE)
    return cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA)


def test_a_slightly_truncated_jpeg_is_read_with_a_warning():
    data = jpeg(radiograph((400, 300)))
    decoded = decode_image(data[: int(len(data) * 0.93)])
    assert decoded.pixels.shape == (400, 300)
    assert any("incomplete" in warning for warning in decoded.warnings)


def test_a_mostly_missing_jpeg_is_refused():
    data = jpeg(radiograph((400, 300)))
    with pytest.raises(InvalidImageError, match="incomplete"):
        decode_image(data[: len(data) // 3])


def test_real_fracatlas_sample_decodes(sample_bytes):
    model_input = preprocess(sample_bytes, 384)
    assert model_input.shape == (384, 384, 1)
    assert 0.2 < model_input.max() <= 1.0


def test_a_strip_is_not_a_radiograph():
    with pytest.raises(InvalidImageError, match="too narrow"):
        decode_image(png(np.tile(np.arange(900, dtype=np.uint8) % 255, (100, 1))))


def test_a_pixel_bomb_is_refused_from_its_header():
    # A PNG header announcing 40000 x 40000 pixels: refused before any decoding.
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")
    with pytest.raises(InvalidImageError, match="too large"):
        decode_image(bomb)


def test_a_multi_page_tiff_is_read_from_its_first_page_with_a_warning():
    buffer = io.BytesIO()
    first, second = Image.fromarray(gradient()), Image.fromarray(255 - gradient())
    first.save(buffer, format="TIFF", save_all=True, append_images=[second])
    decoded = decode_image(buffer.getvalue())
    assert decoded.pixels[0, -1] > 0.9  # the first page's gradient, bright on the right
    assert any("only the first" in warning for warning in decoded.warnings)


def test_a_colour_photograph_is_flagged_but_a_grey_xray_saved_as_rgb_is_not(sample_bytes):
    from pathlib import Path

    from fracture_web.imaging import COLOUR_WARNING

    cat = (Path(__file__).parent / "resources" / "lite0_chelsea_224.png").read_bytes()
    assert COLOUR_WARNING in decode_image(cat).warnings
    grey_as_rgb = cv2.imdecode(np.frombuffer(sample_bytes, np.uint8), cv2.IMREAD_COLOR)
    assert decode_image(png(grey_as_rgb)).warnings == ()


@pytest.mark.parametrize("size, long_side, factor", [
    ((454, 373), 640, 1), ((2880, 2304), 640, 2), ((2880, 2304), 300, 4), ((4000, 4000), 640, 2),
    ((2880, 2304), None, 1)])
def test_a_large_image_shrinks_by_a_power_of_two_keeping_twice_the_size_asked_for(size, long_side, factor):
    assert reduction(size, long_side) == factor


def test_a_16_bit_png_decoded_smaller_keeps_its_16_bit_range_and_reports_its_own_size():
    image = np.tile(np.linspace(0, 4080, 600), (700, 1)).astype(np.uint16)  # 12 bits in 16, like detectors
    decoded = decode_image(png(image), 150)
    assert decoded.size == (700, 600) and decoded.pixels.shape == (350, 300)
    # stretched by the full-size range: the 2x2 means at the ends lie half a step inside it
    assert decoded.pixels.min() == pytest.approx(0.0, abs=0.01) and decoded.pixels.max() == pytest.approx(1.0, abs=0.01)


def test_a_truncated_progressive_jpeg_is_refused_since_every_row_is_a_blurred_guess():
    # A progressive JPEG's first scans fill every row, so counting grey rows cannot see what is missing.
    image = radiograph((400, 300))
    data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    with pytest.raises(InvalidImageError, match="progressive JPEG"):
        decode_image(data[: int(len(data) * 0.9)])
    assert decode_image(data).warnings == ()


def test_a_jpeg_missing_only_its_end_marker_is_read_and_says_so():
    data = jpeg(radiograph((400, 300)))
    decoded = decode_image(data[:-2])
    assert decoded.warnings == ("The file is incomplete (it ends without its end marker); every row of the image was read.",)


@pytest.mark.parametrize("data, words", [
    (b"\x89PNG\r\n\x1a\n" + bytes(40), "PNG image that cannot be read"),
    (b"II*\x00" + bytes(40), "TIFF image that cannot be read"),
    (b"a letter, not an image", "not an image we can read"),
])
def test_a_file_that_starts_like_an_image_but_cannot_be_opened_is_told_so_in_its_format(data, words):
    with pytest.raises(InvalidImageError, match=words):
        decode_image(data)

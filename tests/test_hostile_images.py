"""Files made to hurt: values that are not numbers, and small files that ask for gigabytes. Each is
refused quickly, with a message a person understands, in bounded memory, and never gets a verdict;
the same decoding serves the web app and the DICOM node."""
from __future__ import annotations

import io
import json
import logging
import struct
import time
import tracemalloc
import zlib
from contextlib import contextmanager

import cv2
import numpy as np
import pytest
from PIL import Image
from pydicom.encaps import encapsulate, get_frame
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEGLSLossless, RLELossless

from helpers import SAMPLES
from dicom_files import deflate_bomb, jpeg2000, jpeg_baseline, radiograph_dataset, to_bytes
from fracture_web import create_app
from fracture_web.dicom import MAX_INFLATED_BYTES
from fracture_web.imaging import decode_image
from fracture_web.jpeg_stream import DAMAGED_JPEG, UNCHECKABLE_JPEG
from fracture_web.inference import Prediction
from fracture_web.analysis import analyse
from fracture_web.pixels import BLURRED, NEARLY_BLANK, NOISE, InvalidImageError
from fracture_web.shifts import PHOTO_SHIFTS, SHIFTS
from fracture_web.study import combine


@pytest.fixture(scope="module")
def gray() -> np.ndarray:
    """A real radiograph's 8-bit pixels, small."""
    image = cv2.imdecode(np.frombuffer(SAMPLES[0].read_bytes(), np.uint8), cv2.IMREAD_GRAYSCALE)
    return cv2.resize(image, (240, 300))


@contextmanager
def measured():
    """Time and peak traced memory (bytes) of the block, as ``cost["seconds"]`` and ``cost["peak"]``."""
    cost = {}
    tracemalloc.start()
    start = time.perf_counter()
    try:
        yield cost
    finally:
        cost["seconds"] = time.perf_counter() - start
        cost["peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def refusal(data: bytes, long_side: int | None = 512) -> str:
    """The message a file is refused with (fails the test when it is read)."""
    with pytest.raises(InvalidImageError) as refused:
        decode_image(data, long_side)
    return str(refused.value)


def with_frame_size(frame: bytes, marker: bytes, offset: int, rows: int, columns: int, width: int) -> bytes:
    """A codestream whose own header (the segment after ``marker``) declares another size."""
    edited = bytearray(frame)
    at = edited.find(marker) + offset
    edited[at:at + 2 * width] = rows.to_bytes(width, "big") + columns.to_bytes(width, "big")
    return bytes(edited)


# Values that are not numbers

@pytest.mark.parametrize("elements", [{"RescaleSlope": "NaN"}, {"RescaleSlope": "inf"}, {"RescaleIntercept": "NaN"},
                                      {"RescaleIntercept": "-inf"}, {"RescaleSlope": "1e308"}])
def test_a_rescale_that_is_not_a_number_is_refused_by_name(gray, elements):
    ds = radiograph_dataset(gray, **({"RescaleSlope": 1, "RescaleIntercept": 0} | elements))
    assert "Rescale Slope" in refusal(to_bytes(ds))


@pytest.mark.parametrize("centre, width", [("NaN", 100), (100, "NaN"), ("inf", 100), (100, "inf"), (100, 0)])
def test_a_window_that_is_not_a_number_or_empty_is_refused_by_name(gray, centre, width):
    assert "window is unusable" in refusal(to_bytes(radiograph_dataset(gray, WindowCenter=centre, WindowWidth=width)))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_float_tiff_holding_nan_or_infinity_is_refused(gray, value):
    pixels = gray.astype(np.float32)
    pixels[10, 10] = value
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "TIFF")
    assert "not numbers" in refusal(buffer.getvalue())


@pytest.mark.parametrize("bits_stored_left", [False, True])
def test_float_pixel_data_is_refused_as_unsupported(gray, bits_stored_left):
    ds = radiograph_dataset(gray)
    del ds.PixelData, ds.HighBit, ds.PixelRepresentation
    if not bits_stored_left:  # a writer that left BitsStored from an 8-bit image got "8 bits ... not supported"
        del ds.BitsStored
    ds.BitsAllocated, ds.FloatPixelData = 32, np.full(gray.shape, np.nan, np.float32).tobytes()
    assert "floating-point pixel data are not supported" in refusal(to_bytes(ds))


def test_a_float_tiff_of_finite_values_beyond_float32s_span_is_not_called_nan(gray):
    # -3e38 .. 3e38 are finite, but their difference overflows float32: it was refused as "NaN or infinity".
    pixels = np.where(gray > 128, 3e38, -3e38).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "TIFF")
    assert decode_image(buffer.getvalue()).pixels.max() == 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_noise_is_refused_as_noise_at_any_size_and_in_any_format(seed):
    rng = np.random.default_rng(seed)
    uniform = rng.integers(0, 256, (300, 240), dtype=np.uint8)
    gaussian = np.clip(rng.normal(128, 40, (1600, 2000)), 0, 255).astype(np.uint8)
    assert refusal(cv2.imencode(".png", uniform)[1].tobytes()) == NOISE
    assert refusal(cv2.imencode(".jpg", gaussian)[1].tobytes(), long_side=None) == NOISE


def test_an_image_blank_but_for_a_few_pixels_is_refused_as_nearly_blank(gray):
    black = np.zeros((300, 240), np.uint8)
    black[5, 5] = 255
    stretched = gray.astype(np.float32)
    stretched[0, 0] = 1e30  # a real X-ray's float TIFF, pressed into one grey by one extreme value
    for image in (black, stretched):
        assert refusal(pil_tiff(image) if image.dtype == np.float32 else cv2.imencode(".png", image)[1].tobytes()) \
            == NEARLY_BLANK


def pil_tiff(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "TIFF")
    return buffer.getvalue()


@pytest.mark.parametrize("shift", SHIFTS + PHOTO_SHIFTS, ids=lambda shift: shift.name)
def test_radiographs_as_other_sites_and_phones_render_them_are_still_read(shift):
    # The checks that refuse noise and near-blank images must not refuse a real radiograph.
    rng = np.random.default_rng(0)
    for path in SAMPLES:
        pixels = decode_image(path.read_bytes()).pixels
        shifted = np.clip(shift.apply(pixels, rng) * 255 + 0.5, 0, 255).astype(np.uint8)
        decode_image(cv2.imencode(".png", shifted)[1].tobytes())


def zeroed_mid_stream(jpeg: bytes, count: int = 200) -> bytes:
    """``jpeg`` with ``count`` bytes of its entropy-coded data zeroed half way through (a damaged copy)."""
    start = jpeg.find(b"\xff\xda")
    middle = start + (len(jpeg) - start) // 2
    return jpeg[:middle] + bytes(count) + jpeg[middle + count:]


def test_a_jpeg_damaged_mid_stream_is_refused_not_read_with_its_rows_shifted(gray):
    # OpenCV decodes it without complaint: most of the image shifted and greyed, then read as normal.
    intact = cv2.imencode(".jpg", gray)[1].tobytes()
    decode_image(intact)
    assert refusal(zeroed_mid_stream(intact)) == DAMAGED_JPEG
    # The same inside a DICOM file (JPEG Baseline transfer syntax).
    dicom = to_bytes(jpeg_baseline(radiograph_dataset(gray)))
    assert refusal(zeroed_mid_stream(dicom)) == DAMAGED_JPEG


def test_a_damaged_jpeg_with_an_exif_block_is_refused_too(gray):
    # Files with EXIF are decoded by OpenCV (which turns them upright) after the check alone.
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(gray).save(buffer, format="JPEG", exif=exif, quality=90)
    intact = buffer.getvalue()
    assert decode_image(intact).pixels.shape == gray.shape[::-1]
    assert refusal(zeroed_mid_stream(intact)) == DAMAGED_JPEG


def segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def lossless_jpeg(height: int, width: int, exif: bool = False) -> bytes:
    """A lossless (SOF3) 8-bit JPEG whose every difference is 0: an even grey."""
    data = b"\xff\xd8" + (segment(0xE1, b"Exif\0\0II*\0\x08\0\0\0\0\0\0\0\0\0") if exif else b"")
    data += segment(0xC3, struct.pack(">BHHB", 8, height, width, 1) + bytes([1, 0x11, 0]))
    data += segment(0xC4, b"\0" + bytes([0, 0, 0, 0, 16] + [0] * 11) + bytes(range(16)))
    data += segment(0xDA, bytes([1, 1, 0, 1, 0, 0]))
    return data + bytes(height * width * 5 // 8 + 1) + b"\xff\xd9"


@pytest.mark.parametrize("height, width, exif", [(300, 240, True), (3000, 2400, False)])
def test_a_lossless_jpeg_is_decoded_whole_never_scaled(height, width, exif):
    # libjpeg cannot scale lossless JPEG: asked to, it wrote a full-size image into a buffer for
    # an eighth of it and the worker died (a segfault, not even a 500).
    assert refusal(lossless_jpeg(height, width, exif)) == "The image is blank (every pixel has the same value)."


def test_damage_libjpeg_describes_in_other_words_is_refused_too(gray):
    baseline = cv2.imencode(".jpg", gray)[1].tobytes()
    scan = baseline.rfind(b"\xff\xda")
    third = scan + (len(baseline) - scan) // 3
    assert refusal(baseline[:third] + b"\xff\xfd" + baseline[third + 2:]) == DAMAGED_JPEG  # "Unsupported marker"
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, "JPEG", progressive=True)
    progressive = buffer.getvalue()
    scans = [i for i in range(len(progressive) - 1) if progressive[i:i + 2] == b"\xff\xda"]
    after = min(x for x in (scans[2], progressive.find(b"\xff\xc4", scans[1] + 2)) if x > 0)
    assert refusal(progressive[:scans[1]] + progressive[after:]) == DAMAGED_JPEG  # a scan missing
    # Bytes before a restart marker are damage (only padding before the end marker is harmless).
    restarts = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_RST_INTERVAL, 8])[1].tobytes()
    marker = restarts.find(b"\xff\xd3", restarts.rfind(b"\xff\xda"))
    assert refusal(restarts[:marker] + b"\x12\x34" + restarts[marker:]) == DAMAGED_JPEG


def test_a_restart_marker_before_the_header_cannot_hide_an_exif_orientation(gray):
    # A marker without a length (RST0) read as having one sent the header walk into a crafted
    # segment, past the EXIF block: the image was read unturned, unlike any viewer shows it.
    exif = bytearray(b"Exif\0\0II*\0\x08\0\0\0\x01\0" + struct.pack("<HHII", 0x112, 3, 1, 6) + bytes(4))
    exif += bytes(0xFFE5 - 8 - len(exif)) + b"\xff\xda" + bytes(16)
    baseline = cv2.imencode(".jpg", gray)[1].tobytes()
    crafted = baseline[:2] + b"\xff\xd0" + segment(0xE1, bytes(exif)) + baseline[2:]
    assert decode_image(crafted).size == gray.shape[::-1]  # turned, as OpenCV and Pillow turn it


def test_a_jpeg_of_thousands_of_scans_is_refused_at_once():
    buffer = io.BytesIO()
    Image.new("L", (2000, 2000), 128).save(buffer, "JPEG", progressive=True)
    jpeg = buffer.getvalue()
    last = jpeg.rfind(b"\xff\xda")
    with measured() as cost:
        assert "more than 100 scans" in refusal(jpeg[:-2] + jpeg[last:-2] * 300 + b"\xff\xd9")
    assert cost["seconds"] < 1  # each scan was a pass over the image: seconds of CPU per request


def test_a_12_bit_jpeg_is_refused_as_one_not_as_damaged():
    header = b"\xff\xd8" + segment(0xC1, struct.pack(">BHHB", 12, 300, 240, 1) + bytes([1, 0x11, 0])) + b"\xff\xd9"
    assert refusal(header).startswith("The file is a 12-bit JPEG, which is not supported here")


def test_a_jpeg_whose_encoder_padded_a_byte_before_its_end_marker_is_read(gray):
    intact = cv2.imencode(".jpg", gray)[1].tobytes()
    assert decode_image(intact[:-2] + b"\x00" + intact[-2:]).pixels.shape == gray.shape


def test_a_study_never_averages_over_a_nan_whatever_the_order():
    def view(probability: float) -> Prediction:
        return Prediction("fractured", probability >= 0.5, probability, 0.5, "balanced", "m1", np.zeros((2, 2)))
    for order in ([view(float("nan")), view(0.99)], [view(0.99), view(float("nan"))]):
        with pytest.raises(ValueError, match="NaN"):
            combine(order)


# Decompression bombs

def test_a_deflated_dicom_reads_as_the_same_file_uncompressed(gray):
    plain = radiograph_dataset(gray)
    deflated = radiograph_dataset(gray)
    deflated.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    np.testing.assert_array_equal(decode_image(to_bytes(deflated)).pixels, decode_image(to_bytes(plain)).pixels)
    cut = to_bytes(deflated)
    assert "damaged" in refusal(cut[:len(cut) * 3 // 4])


def test_a_file_meta_whose_transfer_syntax_has_a_damaged_vr_is_refused_as_damaged(gray):
    """Found by the fuzz test: one flipped byte turns the transfer syntax's VR "UI" into an unknown one."""
    data = bytearray(to_bytes(radiograph_dataset(gray)))
    at = data.find(b"\x02\x00\x10\x00UI") + 5
    data[at] = 0
    assert "damaged" in refusal(bytes(data))


def test_a_deflate_bomb_is_refused_quickly_without_inflating_it(gray):
    bomb = deflate_bomb(radiograph_dataset(gray), inflated_mb=600)  # about 600 KB
    with measured() as cost:
        message = refusal(bomb)
    assert "too large once inflated" in message
    assert cost["peak"] < 1.5 * MAX_INFLATED_BYTES and cost["seconds"] < 3


def test_a_jpeg_frame_declaring_20000_pixels_a_side_is_refused_before_decoding(gray):
    ds = jpeg_baseline(radiograph_dataset(gray))
    frame = get_frame(ds.PixelData, 0, number_of_frames=1)
    ds.PixelData = encapsulate([with_frame_size(frame, b"\xff\xc0", 5, 20_000, 20_000, 2)])
    with measured() as cost:
        message = refusal(to_bytes(ds))
    assert "declares 20000x20000 pixels of 1 sample(s), its header 240x300" in message
    assert cost["seconds"] < 1 and cost["peak"] < 10 << 20


def test_a_jpeg_ls_frame_declaring_20000_pixels_a_side_is_refused_before_decoding(gray):
    ds = radiograph_dataset(gray)
    ds.compress(JPEGLSLossless)
    frame = get_frame(ds.PixelData, 0, number_of_frames=1)
    ds.PixelData = encapsulate([with_frame_size(frame, b"\xff\xf7", 5, 20_000, 20_000, 2)])
    with measured() as cost:
        message = refusal(to_bytes(ds))
    assert "declares 20000x20000" in message and cost["seconds"] < 1 and cost["peak"] < 10 << 20


@pytest.mark.parametrize("long_side", [None, 64])  # full size, and the reduced JPEG 2000 decode
def test_a_jpeg_2000_codestream_declaring_30000_pixels_a_side_is_refused_before_decoding(gray, long_side):
    ds = jpeg2000(radiograph_dataset(gray))
    frame = get_frame(ds.PixelData, 0, number_of_frames=1)
    # SIZ: marker, Lsiz, Rsiz, then Xsiz and Ysiz (4 bytes each: the columns first)
    ds.PixelData = encapsulate([with_frame_size(frame, b"\xff\x51", 6, 30_000, 30_000, 4)])
    with measured() as cost:
        message = refusal(to_bytes(ds), long_side)
    assert "declares 30000x30000" in message and cost["seconds"] < 1 and cost["peak"] < 10 << 20


def test_an_rle_frame_that_would_decode_to_gigabytes_is_refused_before_decoding(gray):
    ds = radiograph_dataset(gray)
    ds.file_meta.TransferSyntaxUID = RLELossless
    runs = b"\x81\x00" * (2 << 20)  # one segment, 4 MB: each two bytes say "128 zeros", 256 MB in all
    ds.PixelData = encapsulate([struct.pack("<16L", 1, 64, *[0] * 14) + runs])
    with measured() as cost:
        message = refusal(to_bytes(ds))
    assert "RLE-compressed image holds more than its header's 240x300 pixels" in message
    assert cost["seconds"] < 1 and cost["peak"] < 40 << 20  # the file itself, a few times


def test_a_compressed_frame_of_another_size_than_the_header_says_is_refused(gray):
    ds = jpeg_baseline(radiograph_dataset(gray))
    ds.Rows = 600
    assert "inconsistent" in refusal(to_bytes(ds))


def test_a_compressed_frame_with_more_samples_than_grayscale_is_refused_before_decoding(gray):
    ds = jpeg_baseline(radiograph_dataset(gray))
    ok, colour = cv2.imencode(".jpg", cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    assert ok
    ds.PixelData = encapsulate([colour.tobytes()])
    assert "of 3 sample(s)" in refusal(to_bytes(ds))


@pytest.mark.parametrize("change", ["short", "long", "frames"])
def test_pixel_data_of_another_length_than_the_header_says_is_refused(gray, change):
    ds = radiograph_dataset(gray)
    if change == "short":
        ds.PixelData = ds.PixelData[:-240]
    elif change == "long":  # twice the data: a header whose Rows were halved would show half an image
        ds.PixelData = ds.PixelData * 2
    else:
        ds.NumberOfFrames = 2**31 - 1
    assert "pixel data holds" in refusal(to_bytes(ds))


def png_declaring(gray: np.ndarray, width: int, height: int) -> bytes:
    """A PNG of ``gray`` whose header (IHDR, with a matching checksum) declares another size."""
    png = bytearray(cv2.imencode(".png", gray)[1].tobytes())
    png[16:24] = struct.pack(">II", width, height)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    return bytes(png)


def test_plain_images_declaring_huge_sizes_stay_refused_from_their_headers(gray):
    jpeg = with_frame_size(cv2.imencode(".jpg", gray)[1].tobytes(), b"\xff\xc0", 5, 20_000, 20_000, 2)
    for bomb in (jpeg, png_declaring(gray, 20_000, 20_000)):
        with measured() as cost:
            assert "too large" in refusal(bomb)
        assert cost["seconds"] < 1 and cost["peak"] < 10 << 20


def test_a_refused_dicom_leaves_no_traceback_in_the_log(gray, caplog):
    ds = jpeg2000(radiograph_dataset(gray))
    frame = bytearray(get_frame(ds.PixelData, 0, number_of_frames=1))
    frame[len(frame) // 2:] = b"\xff" * (len(frame) - len(frame) // 2)  # the coded data damaged
    ds.PixelData = encapsulate([bytes(frame)])
    with caplog.at_level(logging.DEBUG):
        assert "could not be decoded" in refusal(to_bytes(ds), None)
    assert not [record for record in caplog.records if record.exc_info]
    assert len([record for record in caplog.records if record.levelno >= logging.WARNING]) <= 1


# Through the API: no verdict, a clear 400, the same study whatever the order, a valid audit trail

NAN_SLOPE = {"RescaleSlope": "NaN", "RescaleIntercept": 0}


def post(client, url: str, *uploads: bytes):
    return client.post(url, data={"file": [(io.BytesIO(data), f"view{i}") for i, data in enumerate(uploads)]})


def test_a_nan_rescale_gets_a_400_and_no_verdict(client, gray):
    response = post(client, "/api/v1/predict", to_bytes(radiograph_dataset(gray, **NAN_SLOPE)))
    assert response.status_code == 400
    body = response.get_json()
    assert "label" not in body and "probability" not in body and "Rescale Slope" in body["error"]


def test_a_study_with_a_nan_view_reads_the_same_in_either_order(client, gray):
    nan_view, real_view = to_bytes(radiograph_dataset(gray, **NAN_SLOPE)), SAMPLES[0].read_bytes()
    first = post(client, "/api/v1/studies", nan_view, real_view).get_json()
    second = post(client, "/api/v1/studies", real_view, nan_view).get_json()
    assert {key: first[key] for key in ("label", "probability")} == {key: second[key] for key in ("label", "probability")}
    assert first["images"][0] == second["images"][1] and "Rescale Slope" in first["images"][0]["error"]
    assert first["warnings"][0] == second["warnings"][0] == "1 of 2 files could not be analysed."


def test_a_model_answering_nan_gives_no_verdict(client, app, gray, monkeypatch):
    model = app.extensions["fracture_model"]
    answer = model._call_runtime

    def nan_probability(batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = answer(batch)
        return outputs | {"probability": np.full_like(outputs["probability"], np.nan)}
    monkeypatch.setattr(model, "_call_runtime", nan_probability)
    response = post(client, "/api/v1/predict", SAMPLES[0].read_bytes())
    assert response.status_code == 400 and "probability came out as NaN" in response.get_json()["error"]
    study = post(client, "/api/v1/studies", SAMPLES[0].read_bytes(), SAMPLES[1].read_bytes())
    assert study.status_code == 400 and "None of the study's files" in study.get_json()["error"]


def test_the_audit_trail_stays_valid_json_after_hostile_uploads(tiny_model_dir, gray, tmp_path):
    audit_file = tmp_path / "audit.log"
    client = create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir), "AUDIT_LOG": str(audit_file)}).test_client()
    for data in (to_bytes(radiograph_dataset(gray, **NAN_SLOPE)), SAMPLES[0].read_bytes()):
        post(client, "/api/v1/predict", data).close()
    lines = audit_file.read_text().splitlines()

    def refuse(constant: str):
        raise AssertionError(f"{constant} in an audit line is not JSON")
    assert [json.loads(line, parse_constant=refuse)["verdict"] for line in lines] in (["fractured"], ["not_fractured"])


def test_a_damaged_jpeg_frame_is_refused_whatever_transfer_syntax_it_is_labelled_with(gray):
    # pydicom's decoder reads a baseline JPEG labelled JPEG-LS; the damage check went by the label.
    ds = jpeg_baseline(radiograph_dataset(gray))
    ds.PixelData = encapsulate([zeroed_mid_stream(get_frame(ds.PixelData, 0, number_of_frames=1))])
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    assert refusal(to_bytes(ds)) == DAMAGED_JPEG


def test_a_blurred_radiograph_is_read_with_a_warning_and_a_sharp_one_without(model):
    # Blurred by 1% of its short side, a fractured sample read "no fracture" without a word.
    for path in SAMPLES:
        sharp = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        blurred = cv2.GaussianBlur(sharp, (0, 0), 0.01 * min(sharp.shape))
        assert BLURRED not in analyse(cv2.imencode(".png", sharp)[1].tobytes(), model, images=False).warnings
        assert BLURRED in analyse(cv2.imencode(".png", blurred)[1].tobytes(), model, images=False).warnings


def sos_header(jpeg: bytes) -> int:
    """Where the first scan header's spectral-selection bytes start (after its component list)."""
    start = jpeg.index(b"\xff\xda")
    return start + 5 + 2 * jpeg[start + 4]


def test_a_phone_photo_with_zeroes_in_its_scan_header_and_a_motion_photo_trailer_is_read(gray):
    # Some phone cameras write zero where a baseline scan header has fixed values (libjpeg warns,
    # the pixels are right), and motion photos append a video after the end marker.
    buffer = io.BytesIO()
    Image.fromarray(gray).convert("RGB").save(buffer, "JPEG")
    jpeg = bytearray(buffer.getvalue())
    jpeg[sos_header(jpeg) + 1] = 0  # Se
    decode_image(bytes(jpeg))
    video = np.random.default_rng(0).integers(0, 256, 8 << 20, dtype=np.uint8).tobytes()
    assert video.count(b"\xff\xda") > 100
    decode_image(bytes(jpeg) + video)


def test_a_jpeg_whose_colour_subsampling_cannot_be_checked_is_refused_saying_so(gray):
    buffer = io.BytesIO()
    Image.fromarray(gray).convert("RGB").save(buffer, "JPEG", subsampling=0)
    jpeg = bytearray(buffer.getvalue())
    frame = jpeg.index(b"\xff\xc0")
    jpeg[frame + 10 + 2 * 3 + 1] = 0x12  # the third component's sampling factors
    assert refusal(bytes(jpeg)) == UNCHECKABLE_JPEG


def test_an_image_attribute_with_two_values_is_refused_as_damaged(gray):
    ds = radiograph_dataset(gray)
    ds.HighBit = [7, 7]
    assert "could not be read" in refusal(to_bytes(ds))

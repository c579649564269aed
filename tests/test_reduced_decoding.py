"""A full-size radiograph (2880x2304, as FracAtlas and DX detectors deliver them) is decoded once,
at the size the model and the page need, and gives the same model input as a full-size decode in
every format: JPEG (DCT scaling), PNG and TIFF (one downscale), uncompressed DICOM (one lookup
table after one downscale) and JPEG 2000 DICOM (a reduced resolution level). The checks still fire
on full-size files, and sizes and boxes stay in the upload's own pixels."""
from __future__ import annotations

import io
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array
from pydicom.sequence import Sequence
from pydicom.uid import JPEG2000Lossless

from fracture_web.dicom import wavelet_levels
from fracture_web.imaging import COLOUR_WARNING, decode_image, to_model_input
from fracture_web.pixels import InvalidImageError

from dicom_files import jpeg2000, radiograph_dataset, to_bytes
from helpers import ROOT, SAMPLES

FULL_SIZE = (2880, 2304)  # (height, width) of a FracAtlas original
MODEL_SIZE = 384
#: What ``analyse`` asks for (the display image's 640 px): halves each side (1440x1152).
PAGE = 640
#: Asks for a quarter of each side (720x576): DCT 1/4, two JPEG 2000 levels.
SMALL = 300
#: How far the 384-px model input (values in [0, 1]) of a reduced decode may lie from a full-size
#: decode's, as (mean |difference|, largest |difference|). Most of it is resampling, not decoding: full size ->
#: 2x2 means -> 384 px is not full size -> 384 px exactly (sharp edges and noise differ most; with
#: 4x4 means the second resize shrinks by under 2, hence the headroom ``analyse`` keeps). JPEG
#: 2000's low-pass band is centred half a pixel from a 2x2 mean and rings a little at edges.
TOLERANCE = {PAGE: (0.001, 0.05), SMALL: (0.002, 0.15)}
JPEG2000_TOLERANCE = {PAGE: (0.003, 0.1), SMALL: (0.006, 0.25)}
#: A window clips each pixel, but the DICOM lookup table is applied to 2x2 means (a table over the
#: full-size image cost 10 ms more): where a window's edge falls inside a block the two differ.
CHAIN_TOLERANCE = (0.001, 0.1)
FULLRES = ROOT.parent / "shared" / "data" / "fracatlas-fullres" / "images"


@pytest.fixture(scope="module")
def radiograph() -> np.ndarray:
    """A shipped radiograph enlarged to full size, with detector-like noise so it has fine detail."""
    gray = cv2.resize(cv2.imread(str(SAMPLES[0]), cv2.IMREAD_GRAYSCALE), FULL_SIZE[::-1], interpolation=cv2.INTER_CUBIC)
    noise = np.random.default_rng(0).normal(0, 3, FULL_SIZE)
    return np.clip(gray + noise, 0, 255).astype(np.uint8)


def encoded(ext: str, image: np.ndarray, *params: int) -> bytes:
    ok, buffer = cv2.imencode(ext, image, list(params))
    assert ok
    return buffer.tobytes()


def twelve_bit(gray: np.ndarray) -> np.ndarray:
    return gray.astype(np.uint16) * 16 + (gray % 16)  # 12 significant bits, the low ones not empty


FORMATS: dict[str, Callable[[np.ndarray], bytes]] = {
    "JPEG baseline": lambda g: encoded(".jpg", g, cv2.IMWRITE_JPEG_QUALITY, 95),
    "JPEG progressive": lambda g: encoded(".jpg", g, cv2.IMWRITE_JPEG_QUALITY, 95, cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
    "PNG 16-bit": lambda g: encoded(".png", g.astype(np.uint16) * 256 + (255 - g)),
    "TIFF": lambda g: encoded(".tif", g),
    "DICOM MONOCHROME2, windowed": lambda g: to_bytes(radiograph_dataset(
        twelve_bit(g), bits_stored=12, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=800, WindowWidth=3000)),
    "DICOM MONOCHROME1, 16-bit": lambda g: to_bytes(radiograph_dataset(
        65535 - g.astype(np.uint16) * 257, "MONOCHROME1", bits_stored=16, PresentationLUTShape="INVERSE")),
    "DICOM JPEG 2000": lambda g: to_bytes(jpeg2000(radiograph_dataset(twelve_bit(g), bits_stored=12))),
}


@pytest.fixture(scope="module")
def uploads(radiograph) -> dict[str, tuple[bytes, np.ndarray]]:
    """Each format's file and the model input of its full-size decode (made once per module)."""
    files = {name: make(radiograph) for name, make in FORMATS.items()}
    return {name: (data, to_model_input(decode_image(data).pixels, MODEL_SIZE)) for name, data in files.items()}


@pytest.mark.parametrize("long_side", [PAGE, SMALL], ids=["halved", "quartered"])
@pytest.mark.parametrize("name", FORMATS)
def test_a_reduced_decode_gives_the_model_the_same_input_as_a_full_one(uploads, name, long_side):
    data, full_input = uploads[name]
    decoded = decode_image(data, long_side)
    factor = 2 if long_side == PAGE else 4
    assert decoded.size == FULL_SIZE
    assert decoded.pixels.shape == (FULL_SIZE[0] // factor, FULL_SIZE[1] // factor)
    assert decoded.pixels.dtype == np.float32 and decoded.warnings == ()
    assert_close(to_model_input(decoded.pixels, MODEL_SIZE), full_input,
                 (JPEG2000_TOLERANCE if "2000" in name else TOLERANCE)[long_side])


def assert_close(model_input: np.ndarray, expected: np.ndarray, tolerance: tuple[float, float]) -> None:
    difference = np.abs(model_input - expected)
    assert difference.mean() <= tolerance[0] and difference.max() <= tolerance[1], (difference.mean(),
                                                                                    difference.max())


def test_small_images_are_decoded_as_they_are(sample_bytes):
    whole, asked = decode_image(sample_bytes), decode_image(sample_bytes, PAGE)
    np.testing.assert_array_equal(asked.pixels, whole.pixels)
    assert asked.size == whole.pixels.shape


@pytest.mark.skipif(not FULLRES.is_dir(), reason="the FracAtlas originals (../shared/data/fracatlas-fullres) "
                                                  "are not on this machine")
def test_a_real_progressive_fracatlas_original_decodes_halved_within_tolerance():
    data = (FULLRES / "IMG0000040.jpg").read_bytes()  # 2304x2880, progressive, as released
    full, halved = decode_image(data), decode_image(data, PAGE)
    assert halved.size == full.pixels.shape == (2880, 2304) and halved.pixels.shape == (1440, 1152)
    assert_close(to_model_input(halved.pixels, MODEL_SIZE), to_model_input(full.pixels, MODEL_SIZE), TOLERANCE[PAGE])


def todays_float_chain(ds: Dataset) -> np.ndarray:
    """The grayscale pipeline as it ran before the lookup table: floats over every pixel."""
    values = apply_modality_lut(pixel_array(ds, index=0), ds)
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        ends = ([ds.VOILUTSequence[0].LUTDescriptor[1], ds.VOILUTSequence[0].LUTDescriptor[1]
                 + ds.VOILUTSequence[0].LUTDescriptor[0] - 1] if "VOILUTSequence" in ds else [-np.inf, np.inf])
        low, high = sorted(apply_voi_lut(np.array(ends), ds))
        unit = np.clip((apply_voi_lut(values, ds) - low) / (high - low), 0.0, 1.0)
    else:
        unit = (values - values.min()) / (values.max() - values.min())
    if ds.PhotometricInterpretation == "MONOCHROME1":
        unit = 1.0 - unit
    return (np.rint(unit * 255.0) / 255.0).astype(np.float32)


def voi_lut_that_bends(bits: int = 12) -> Sequence:
    item = Dataset()
    item.LUTDescriptor = [2**bits, 0, 16]
    item.LUTData = (65535 * np.sqrt(np.arange(2**bits) / (2**bits - 1))).astype(np.uint16).tobytes()
    item["LUTData"].VR = "OW"
    return Sequence([item])


CHAINS: dict[str, dict] = {
    "rescale, narrow window": {"RescaleSlope": 2, "RescaleIntercept": -1000, "WindowCenter": 3000,
                               "WindowWidth": 2000},
    "sigmoid window": {"WindowCenter": 2048, "WindowWidth": 2500, "VOILUTFunction": "SIGMOID"},
    "VOI LUT sequence": {"VOILUTSequence": voi_lut_that_bends()},
    "MONOCHROME1, no window": {},
}


@pytest.mark.parametrize("name", CHAINS)
def test_the_lookup_table_is_todays_float_chain_and_stays_close_after_the_downscale(radiograph, name):
    photometric = "MONOCHROME1" if "MONOCHROME1" in name else "MONOCHROME2"
    ds = radiograph_dataset(twelve_bit(radiograph), photometric, bits_stored=12, **CHAINS[name])
    data = to_bytes(ds)
    expected = todays_float_chain(pydicom.dcmread(io.BytesIO(data)))
    np.testing.assert_array_equal(decode_image(data).pixels, expected)  # full size: the same values
    assert_close(to_model_input(decode_image(data, PAGE).pixels, MODEL_SIZE), to_model_input(expected, MODEL_SIZE),
                 CHAIN_TOLERANCE)


def test_a_jpeg2000_stream_with_fewer_levels_than_wanted_decodes_at_its_smallest_and_shrinks_the_rest(radiograph):
    stored = twelve_bit(radiograph[::2, ::2])  # 1440x1152: quicker to encode, still shrinks by 4
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, format="JPEG2000", num_resolutions=2, no_jp2=True, irreversible=False)
    ds = radiograph_dataset(stored, bits_stored=12)
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    assert wavelet_levels(buffer.getvalue()) == 1
    decoded = decode_image(to_bytes(ds), SMALL // 2)
    assert decoded.pixels.shape == (360, 288) and decoded.size == (1440, 1152)
    assert_close(to_model_input(decoded.pixels, MODEL_SIZE),
                 to_model_input(decode_image(to_bytes(ds)).pixels, MODEL_SIZE), JPEG2000_TOLERANCE[SMALL])


def test_a_truncated_full_size_jpeg_is_read_with_a_warning_or_refused(radiograph):
    data = FORMATS["JPEG baseline"](radiograph)
    full = decode_image(data[: int(len(data) * 0.9)])
    reduced = decode_image(data[: int(len(data) * 0.9)], PAGE)
    assert reduced.warnings == full.warnings and "incomplete" in reduced.warnings[0]
    with pytest.raises(InvalidImageError, match="incomplete"):
        decode_image(data[: len(data) // 3], PAGE)


def test_a_full_size_colour_photograph_is_flagged_and_a_grey_one_saved_as_rgb_is_not(radiograph):
    cat = cv2.imread(str(Path(__file__).parent / "resources" / "lite0_chelsea_224.png"), cv2.IMREAD_COLOR)
    photo = cv2.resize(cat, FULL_SIZE[::-1], interpolation=cv2.INTER_CUBIC)
    assert COLOUR_WARNING in decode_image(encoded(".jpg", photo), PAGE).warnings
    assert decode_image(encoded(".png", photo), PAGE).warnings == (COLOUR_WARNING,)
    grey_as_rgb = cv2.cvtColor(radiograph, cv2.COLOR_GRAY2BGR)
    assert decode_image(encoded(".jpg", grey_as_rgb), PAGE).warnings == ()


def test_an_exif_rotated_full_size_jpeg_reports_its_upright_size(radiograph):
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: viewers rotate it 90 degrees clockwise
    Image.fromarray(np.rot90(radiograph)).save(buffer, format="JPEG", exif=exif, quality=90)
    decoded = decode_image(buffer.getvalue(), PAGE)
    assert decoded.size == FULL_SIZE and decoded.pixels.shape == (1440, 1152)
    upright = to_model_input(decode_image(FORMATS["JPEG baseline"](radiograph), PAGE).pixels, MODEL_SIZE)
    assert np.abs(to_model_input(decoded.pixels, MODEL_SIZE) - upright).mean() <= 0.01


def test_a_4000_pixel_16_bit_dicom_never_holds_more_than_three_times_its_pixels(radiograph):
    stored = cv2.resize(radiograph, (4000, 4000)).astype(np.uint16) * 257
    data = to_bytes(radiograph_dataset(stored, "MONOCHROME1", bits_stored=16, WindowCenter=30000, WindowWidth=50000))
    tracemalloc.start()
    try:
        decoded = decode_image(data, PAGE)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert decoded.size == (4000, 4000) and decoded.pixels.shape == (2000, 2000)
    assert peak < 3 * stored.nbytes, f"{peak / 1e6:.0f} MB for {stored.nbytes / 1e6:.0f} MB of pixels"


@pytest.fixture(scope="module")
def shipped_model():
    from fracture_web.inference import FractureModel

    return FractureModel(ROOT / "model")


def test_findings_and_the_display_scale_are_in_the_uploads_own_pixels(shipped_model, radiograph):
    from fracture_web.analysis import analyse

    analysis = analyse(FORMATS["JPEG baseline"](radiograph), shipped_model)
    assert analysis.xray.shape == (640, 512)
    assert analysis.display_scale == pytest.approx(512 / FULL_SIZE[1])
    for finding in analysis.prediction.findings:
        x0, y0, x1, y1 = finding.box
        assert 0 <= x0 < x1 <= FULL_SIZE[1] and 0 <= y0 < y1 <= FULL_SIZE[0]
    full = decode_image(FORMATS["JPEG baseline"](radiograph))
    expected = shipped_model.predict(to_model_input(full.pixels, MODEL_SIZE), image_shape=full.size)
    assert analysis.prediction.label == expected.label
    assert abs(analysis.prediction.probability - expected.probability) <= 0.03

"""DICOM radiographs through the one preprocessing path, without Flask: the standard's grayscale
pipeline, refusals a person understands, and no patient data on the way out."""
from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence

from fracture_web.dicom import UNSTATED_WARNING, decode_dataset
from fracture_web.imaging import decode_image, preprocess
from fracture_web.pixels import InvalidImageError

from dicom_files import PATIENT, jpeg2000, jpeg_baseline, radiograph_dataset, rle, to_bytes


@pytest.fixture(scope="module")
def gray(sample_bytes) -> np.ndarray:
    """A real radiograph's 8-bit pixels."""
    return cv2.imdecode(np.frombuffer(sample_bytes, np.uint8), cv2.IMREAD_GRAYSCALE)


@pytest.fixture(scope="module")
def as_png(gray) -> np.ndarray:
    """What the PNG of the same radiograph decodes to."""
    return decode_image(cv2.imencode(".png", gray)[1].tobytes()).pixels


def test_a_monochrome2_dicom_decodes_to_the_same_pixels_as_its_png(gray, as_png):
    decoded = decode_image(to_bytes(radiograph_dataset(gray)))
    assert decoded.pixels.dtype == np.float32 and decoded.warnings == ()
    np.testing.assert_array_equal(decoded.pixels, as_png)


def test_monochrome1_is_inverted_once_even_with_presentation_lut_inverse(gray, as_png):
    for extra in ({}, {"PresentationLUTShape": "INVERSE"}):
        decoded = decode_image(to_bytes(radiograph_dataset(255 - gray, "MONOCHROME1", **extra)))
        np.testing.assert_array_equal(decoded.pixels, as_png)


def test_presentation_lut_inverse_alone_inverts_a_monochrome2_image(gray, as_png):
    decoded = decode_image(to_bytes(radiograph_dataset(255 - gray, PresentationLUTShape="INVERSE")))
    np.testing.assert_array_equal(decoded.pixels, as_png)


def test_signed_12_bit_with_rescale_and_window_follows_the_standard_order(gray, as_png):
    stored = gray.astype(np.int16) * 16 - 2048  # signed stored values
    values = stored + 1024  # after the Modality LUT (rescale intercept 1024)
    low, high = int(values.min()), int(values.max())
    ds = radiograph_dataset(stored, bits_stored=12, RescaleSlope=1, RescaleIntercept=1024,
                            WindowCenter=(low + high) / 2, WindowWidth=high - low)
    np.testing.assert_allclose(decode_image(to_bytes(ds)).pixels, as_png, atol=1 / 255 + 1e-6)


def test_a_narrow_window_clips_what_lies_outside_it(gray):
    stored = gray.astype(np.uint16) * 16
    pixels = decode_image(to_bytes(radiograph_dataset(stored, bits_stored=12, WindowCenter=2048,
                                                      WindowWidth=1024))).pixels
    inside = (stored > 1536 + 64) & (stored < 2560 - 64)
    assert pixels[stored < 1536].max() == 0.0 and pixels[stored >= 2560].min() == 1.0
    assert 0.0 < pixels[inside].min() and pixels[inside].max() < 1.0


def test_a_voi_lut_sequence_is_applied(gray):
    item = Dataset()
    item.LUTDescriptor = [256, 0, 16]
    item.LUTData = (65535 - 257 * np.arange(256, dtype=np.uint16)).tobytes()  # a 16-bit LUT that inverts
    item["LUTData"].VR = "OW"
    ds = radiograph_dataset(gray, VOILUTSequence=Sequence([item]))
    np.testing.assert_allclose(decode_image(to_bytes(ds)).pixels, 1.0 - gray / 255.0, atol=1e-6)


def test_without_window_a_12_bit_image_is_stretched_like_a_16_bit_png(gray, as_png):
    decoded = decode_image(to_bytes(radiograph_dataset(gray.astype(np.uint16) * 16, bits_stored=12)))
    np.testing.assert_array_equal(decoded.pixels, as_png)


@pytest.mark.parametrize("compress", [rle, jpeg2000], ids=["RLE", "JPEG 2000"])
def test_lossless_compressed_dicoms_decode_exactly(gray, as_png, compress):
    ds = compress(radiograph_dataset(gray.astype(np.uint16) * 16, bits_stored=12))
    np.testing.assert_array_equal(decode_image(to_bytes(ds)).pixels, as_png)


def test_jpeg_baseline_dicom_decodes_close_to_the_original(gray, as_png):
    pixels = decode_image(to_bytes(jpeg_baseline(radiograph_dataset(gray)))).pixels
    assert np.abs(pixels - as_png).mean() < 0.01


def test_multi_frame_dicom_uses_the_first_frame_and_says_so(gray, as_png):
    frames = np.stack([gray, 255 - gray, gray // 2])
    decoded = decode_image(to_bytes(radiograph_dataset(frames)))
    np.testing.assert_array_equal(decoded.pixels, as_png)
    assert decoded.warnings == ("The DICOM file holds 3 frames; only the first was analysed.",)


def test_the_header_context_is_shown_but_nothing_that_identifies_the_patient(gray):
    decoded = decode_image(to_bytes(radiograph_dataset(gray)))
    assert decoded.context == {"modality": "DX", "body_part": "HAND", "view_position": "PA", "laterality": "L"}
    text = repr(decoded)
    assert not any(value in text for value in PATIENT.values())


def test_header_facts_outside_their_vocabulary_are_left_out_a_name_typed_into_them_too(gray):
    # A careless or hostile header can hold anything; these facts reach the page, the reads
    # database and the command line.
    ds = radiograph_dataset(gray, BodyPartExamined="DOE JOHN", ViewPosition="JOHN", ImageLaterality="X")
    ds.Laterality = "R"
    assert decode_image(to_bytes(ds)).context == {"modality": "DX", "laterality": "R"}
    ds = radiograph_dataset(gray, BodyPartExamined="wrist", ViewPosition="lat")
    assert decode_image(to_bytes(ds)).context == {"modality": "DX", "body_part": "WRIST", "view_position": "LAT",
                                                  "laterality": "L"}


def test_a_dicom_without_pixel_data_is_refused(gray):
    ds = radiograph_dataset(gray)
    del ds.PixelData
    with pytest.raises(InvalidImageError, match="no image"):
        decode_image(to_bytes(ds))


@pytest.mark.parametrize("modality, kind", [("CT", "a CT scan"), ("MR", "an MRI scan"), ("US", "an ultrasound")])
def test_other_modalities_are_refused_by_name(gray, modality, kind):
    with pytest.raises(InvalidImageError, match=f"{kind}.*not an X-ray radiograph"):
        decode_image(to_bytes(radiograph_dataset(gray, Modality=modality)))


def test_a_dicom_that_does_not_state_its_modality_is_read_with_a_warning(gray):
    assert decode_image(to_bytes(radiograph_dataset(gray, Modality="OT"))).warnings == (UNSTATED_WARNING,)


def test_a_colour_dicom_is_refused(gray):
    rgb = np.repeat(gray[..., np.newaxis], 3, axis=2)
    with pytest.raises(InvalidImageError, match="colour"):
        decode_image(to_bytes(radiograph_dataset(rgb, "RGB")))


def test_a_dicom_pixel_bomb_is_refused_from_its_header_before_decoding(gray):
    ds = radiograph_dataset(gray)
    ds.Rows, ds.Columns = 60_000, 60_000  # the pixel data stays small: only the header lies
    with pytest.raises(InvalidImageError, match="too large"):
        decode_image(to_bytes(ds))


def test_a_damaged_dicom_gets_a_clear_refusal(gray):
    data = to_bytes(radiograph_dataset(gray))
    with pytest.raises(InvalidImageError, match="could not be"):
        decode_image(data[:len(data) // 2])
    with pytest.raises(InvalidImageError, match="DICOM"):
        decode_image(bytes(128) + b"DICM" + b"\xff" * 64)


def test_a_dicom_goes_through_the_shared_preprocessing(gray):
    model_input = preprocess(to_bytes(rle(radiograph_dataset(gray))), 64)
    assert model_input.shape == (64, 64, 1) and 0.0 <= model_input.min() and model_input.max() <= 1.0


def test_a_dicom_decoded_smaller_reports_its_own_size(gray):
    decoded = decode_image(to_bytes(radiograph_dataset(gray.astype(np.uint16) * 16, bits_stored=12)), 128)
    assert decoded.size == gray.shape and decoded.pixels.shape == ((gray.shape[0] + 1) // 2, (gray.shape[1] + 1) // 2)


def test_unused_high_bits_are_ignored_as_the_standard_says(gray, as_png):
    ds = radiograph_dataset(gray.astype(np.uint16) * 16, bits_stored=12)
    ds.PixelData = (np.frombuffer(ds.PixelData, np.uint16) | 0xA000).tobytes()  # junk above bit 12
    np.testing.assert_array_equal(decode_image(to_bytes(ds)).pixels, as_png)


def test_a_refusal_never_repeats_a_header_value_it_does_not_know(gray):
    # Any element can hold a name; a refusal names only values from the standard's vocabulary.
    for elements in ({"Modality": "Doe^Jane"}, {"PhotometricInterpretation": "Doe Jane"}):
        with pytest.raises(InvalidImageError) as refused:
            decode_image(to_bytes(radiograph_dataset(gray, **elements)))
        assert "doe" not in str(refused.value).lower()
    data = to_bytes(radiograph_dataset(gray)).replace(b"1.2.840.10008.1.2.1\x00", b"Doe^Jane PID-0451 \x00\x00", 1)
    with pytest.raises(InvalidImageError) as refused:
        decode_image(data)
    assert "Doe" not in str(refused.value) and "PID" not in str(refused.value)


def test_lower_case_monochrome1_is_read_as_monochrome1(gray, as_png):
    ds = radiograph_dataset(255 - gray, "MONOCHROME1")
    ds.PhotometricInterpretation = "monochrome1"  # accepted by the check, then refused by pydicom as "damaged"
    np.testing.assert_array_equal(decode_image(to_bytes(ds)).pixels, as_png)


def test_an_image_whose_bits_sit_above_the_high_bit_it_declares_is_refused_not_misread(gray):
    values = gray.astype(np.uint16) * 16
    ds = radiograph_dataset(values, bits_stored=12)
    ds.HighBit, ds.PixelData = 15, (values << 4).tobytes()  # bits 4-15: read as 0-11 it was posterised garbage
    with pytest.raises(InvalidImageError, match="High Bit 15"):
        decode_image(to_bytes(ds))


def test_a_window_that_leaves_two_grey_levels_is_refused(gray):
    with pytest.raises(InvalidImageError, match="only 2 grey levels"):
        decode_image(to_bytes(radiograph_dataset(gray, WindowCenter=128, WindowWidth=1)))


def test_pixel_padding_takes_no_part_in_the_images_brightness_range(gray, as_png):
    stored = gray.astype(np.uint16) * 8 + 500
    stored[:, :60] = 4095  # the detector's unexposed border, declared as padding
    decoded = decode_image(to_bytes(radiograph_dataset(stored, bits_stored=12, PixelPaddingValue=4095))).pixels
    assert decoded[:, :60].max() == 0.0  # black, as the letterbox pads
    assert decoded[:, 60:].max() == 1.0 and decoded[:, 60:].min() == 0.0  # the anatomy spans the full range


@pytest.mark.parametrize("frames", ["-2", "2.5", "0"])
def test_a_number_of_frames_that_is_not_a_count_is_refused_saying_so(gray, frames):
    with pytest.raises(InvalidImageError, match="not a whole number of at least 1"):
        decode_image(to_bytes(radiograph_dataset(gray, NumberOfFrames=frames)))


def test_the_web_apps_log_never_quotes_the_header_values_pydicom_warns_about(gray, tmp_path):
    # pydicom warns "Invalid value for VR UI: '<the value>'", and a header can hold a name anywhere.
    upload = tmp_path / "upload.dcm"
    upload.write_bytes(to_bytes(radiograph_dataset(gray)).replace(b"1.2.840.10008.1.2.1\x00",
                                                                   b"Doe^Jane PID-0451 \x00\x00", 1))
    script = ("import sys; from fracture_web import create_app\n"
              f"app = create_app({{'TESTING': True, 'LOAD_MODEL': False, 'DATABASE_URL': 'sqlite:///{tmp_path}/r.db'}})\n"
              "from fracture_web.imaging import decode_image\n"
              "try:\n"
              f"    decode_image(open({str(upload)!r}, 'rb').read())\n"
              "except ValueError as err:\n"
              "    print('refused')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "refused" in done.stdout, done.stderr
    assert "text withheld" in done.stderr and "Doe" not in done.stderr and "PID-0451" not in done.stderr


def test_a_voi_lut_whose_descriptor_is_written_unsigned_for_signed_pixels_is_read(gray, as_png):
    # Explicit-VR files often write the LUT Descriptor as US (65408 for -128); it was refused as damaged.
    item = Dataset()
    item.LUTDescriptor = [256, 65408, 16]
    item["LUTDescriptor"].VR = "US"
    item.LUTData = (np.arange(256) * 257).astype(np.uint16).tobytes()
    item["LUTData"].VR = "OW"
    source = radiograph_dataset(gray.astype(np.int16) - 128, bits_stored=8, VOILUTSequence=Sequence([item]))
    np.testing.assert_array_equal(decode_image(to_bytes(source)).pixels, as_png)
    # A dataset parsed whole (the DICOM node's) is read the same, and left as it came.
    np.testing.assert_array_equal(decode_dataset(source).pixels, as_png)
    assert list(source.VOILUTSequence[0].LUTDescriptor) == [256, 65408, 16]


def test_a_shrunk_image_shows_its_padding_black_up_to_the_picture_not_a_white_seam(gray):
    picture = cv2.resize(gray, (1600, 2000)).astype(np.uint16) * 8 + 500
    picture[:, :301] = 4095  # padding brighter than any picture value: averaged with it, the edge went white
    decoded = decode_image(to_bytes(radiograph_dataset(picture, bits_stored=12, PixelPaddingValue=4095)), 256).pixels
    assert decoded.shape == (1000, 800)  # halved: the last shrunk column of padding holds a picture column too
    assert decoded[:, :150].max() == 0.0 and decoded[:, 150].max() < 0.6

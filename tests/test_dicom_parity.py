"""The same radiograph as PNG and as DICOM gets the same verdict from the shipped model, with a
probability within 0.03, whatever way the DICOM stores it: MONOCHROME2, MONOCHROME1, 16 bits with
rescale and window, or compressed (RLE, JPEG 2000, JPEG baseline)."""
from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest
from pydicom import Dataset

from fracture_web.analysis import analyse
from fracture_web.config import PROJECT_ROOT
from fracture_web.inference import FractureModel

from conftest import SAMPLES
from dicom_files import jpeg2000, jpeg_baseline, radiograph_dataset, rle, to_bytes

TOLERANCE = 0.03


def monochrome2(gray: np.ndarray) -> Dataset:
    return radiograph_dataset(gray)


def monochrome1(gray: np.ndarray) -> Dataset:
    """Low values white, as many CR plates store it (with the Presentation LUT Shape DX requires)."""
    return radiograph_dataset(255 - gray, "MONOCHROME1", PresentationLUTShape="INVERSE")


def signed_16_bit(gray: np.ndarray) -> Dataset:
    """12 significant bits, signed, with a rescale intercept and a window over the image's range."""
    stored = gray.astype(np.int16) * 16 - 2048
    values = stored + 1024
    low, high = int(values.min()), int(values.max())
    return radiograph_dataset(stored, bits_stored=12, RescaleSlope=1, RescaleIntercept=1024,
                              WindowCenter=(low + high) / 2, WindowWidth=high - low)


def unsigned_16_bit(gray: np.ndarray) -> Dataset:
    return radiograph_dataset(gray.astype(np.uint16) * 257, bits_stored=16)


VARIANTS: dict[str, Callable[[np.ndarray], Dataset]] = {
    "MONOCHROME2": monochrome2, "MONOCHROME1": monochrome1, "16-bit signed, windowed": signed_16_bit,
    "16-bit unsigned": unsigned_16_bit, "RLE": lambda g: rle(unsigned_16_bit(g)),
    "JPEG 2000": lambda g: jpeg2000(signed_16_bit(g)), "JPEG baseline": lambda g: jpeg_baseline(monochrome2(g)),
}


@pytest.fixture(scope="module")
def shipped_model() -> FractureModel:
    return FractureModel(PROJECT_ROOT / "model")


@pytest.mark.parametrize("variant", VARIANTS)
def test_png_and_dicom_of_each_sample_get_the_same_verdict(shipped_model, variant):
    for path in SAMPLES:
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        png = analyse(cv2.imencode(".png", gray)[1].tobytes(), shipped_model, images=False).prediction
        dicom = analyse(to_bytes(VARIANTS[variant](gray)), shipped_model, images=False).prediction
        assert dicom.label == png.label, path.name
        assert abs(dicom.probability - png.probability) <= TOLERANCE, path.name

"""The same radiograph uploaded to the API as PNG and as DICOM (in the same ``file`` field) gets the
same verdict from the shipped model, with a probability within 0.03, whatever way the DICOM stores
it: MONOCHROME2, MONOCHROME1, 16 bits with rescale and window, or compressed (RLE, JPEG 2000,
JPEG baseline), at the samples' size and at full size (2880x2304, where both are decoded halved:
the PNG downscaled once, the DICOM through its lookup table, JPEG 2000 at a reduced resolution level)."""
from __future__ import annotations

import io
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from pydicom import Dataset

from fracture_web import create_app
from fracture_web.config import PROJECT_ROOT

from helpers import SAMPLES
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
def shipped_client():
    """The app with the model that ships in model/ (the tiny test model's probabilities mean nothing)."""
    return create_app({"TESTING": True, "MODEL_DIR": str(PROJECT_ROOT / "model")}).test_client()


def verdict(client, data: bytes) -> dict:
    response = client.post("/api/v1/predict", data={"file": (io.BytesIO(data), "upload")})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@pytest.mark.parametrize("variant", VARIANTS)
def test_png_and_dicom_of_each_sample_get_the_same_verdict(shipped_client, variant):
    for path in SAMPLES:
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        png = verdict(shipped_client, cv2.imencode(".png", gray)[1].tobytes())
        dicom = verdict(shipped_client, to_bytes(VARIANTS[variant](gray)))
        assert dicom["label"] == png["label"], path.name
        assert abs(dicom["probability"] - png["probability"]) <= TOLERANCE, path.name
        assert dicom["dicom"]["modality"] == "DX" and "dicom" not in png


@pytest.mark.parametrize("variant", ["MONOCHROME1", "16-bit unsigned", "JPEG 2000"])
def test_full_size_png_and_dicom_of_a_sample_get_the_same_verdict(shipped_client, variant):
    for path in SAMPLES[:2]:
        gray = cv2.resize(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), (2304, 2880), interpolation=cv2.INTER_CUBIC)
        png = verdict(shipped_client, cv2.imencode(".png", gray)[1].tobytes())
        dicom = verdict(shipped_client, to_bytes(VARIANTS[variant](gray)))
        assert dicom["label"] == png["label"], path.name
        assert abs(dicom["probability"] - png["probability"]) <= TOLERANCE, path.name

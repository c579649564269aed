"""DICOM test files made from ordinary images, as a modality or a PACS would write them."""
from __future__ import annotations

import io

import cv2
import numpy as np
from pydicom import Dataset, FileMetaDataset, dcmwrite
from pydicom.encaps import encapsulate
from pydicom.uid import (DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, JPEG2000Lossless,
                         JPEGBaseline8Bit, RLELossless, generate_uid)

#: Identifying values planted in every test file: they must never reach a page, a response or a log.
PATIENT = {"PatientName": "Doe^Jane", "PatientID": "PID-0451-XRAY", "PatientBirthDate": "19700101"}


def radiograph_dataset(pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int | None = None,
                       **elements) -> Dataset:
    """A DX 'for presentation' dataset with these stored pixel values (uint8/uint16/int16, 2-D or frames)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.update(PATIENT)
    ds.PatientSex = "F"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20261120", "101500", "ACC42", "S1"
    ds.ReferringPhysicianName, ds.SeriesNumber, ds.InstanceNumber = "", 1, 1
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition, ds.ImageLaterality = "DX", "HAND", "PA", "L"
    ds.set_pixel_data(pixels, photometric, bits_stored or pixels.dtype.itemsize * 8)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def to_bytes(ds: Dataset) -> bytes:
    """The dataset as a DICOM file (128-byte preamble, 'DICM', file meta)."""
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def rle(ds: Dataset) -> Dataset:
    """The same dataset, RLE Lossless compressed."""
    ds.compress(RLELossless)
    return ds


def jpeg2000(ds: Dataset) -> Dataset:
    """The same dataset, JPEG 2000 lossless compressed (pylibjpeg-openjpeg)."""
    ds.compress(JPEG2000Lossless)
    return ds


def jpeg_baseline(ds: Dataset, quality: int = 95) -> Dataset:
    """The same 8-bit dataset as JPEG baseline, lossy, as many digitisers store radiographs."""
    ok, jpeg = cv2.imencode(".jpg", ds.pixel_array, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    ds.PixelData = encapsulate([jpeg.tobytes()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    return ds

"""Synthetic DX radiographs as DICOM, made from ordinary pixel arrays: the one builder that the
benchmarks, the DICOM burst and the tests (``tests/dicom_files.py``) use.

Each is a digital X-ray 'for presentation' as a modality writes one: new UIDs, the patient and study
attributes a modality must send (present, empty unless given), a hand PA view, and the pixels as
given. No patient is in it unless the caller plants one.
"""
from __future__ import annotations

import io

import numpy as np
from pydicom import Dataset, FileMetaDataset, dcmwrite
from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid


def radiograph_dataset(pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int | None = None,
                       **elements) -> Dataset:
    """A DX 'for presentation' dataset with these stored pixel values (uint8/uint16/int16, 2-D or
    frames), in Explicit VR Little Endian; ``elements`` (keyword=value) set or replace attributes."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = DigitalXRayImageStorageForPresentation, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "", "", "", ""
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "", "", "", ""
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


def dicom_file(pixels: np.ndarray, photometric: str, bits_stored: int, syntax: str | None = None,
               **elements) -> bytes:
    """A DX radiograph as a DICOM file, compressed in ``syntax`` (e.g. JPEG 2000 Lossless, by
    pylibjpeg-openjpeg) when one is given: the uploads the benchmarks make at run time."""
    ds = radiograph_dataset(pixels, photometric, bits_stored, **elements)
    if syntax:
        ds.compress(syntax)
    return to_bytes(ds)

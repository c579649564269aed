"""DICOM test files made from ordinary images, as a modality or a PACS would write them; analyses
of them made by hand (no model), and the node's reports read back as a viewer would."""
from __future__ import annotations

import io
import struct
import zlib

import cv2
import highdicom as hd
import numpy as np
from pydicom import Dataset, FileMetaDataset, dcmread, dcmwrite
from pydicom.encaps import encapsulate
from pydicom.uid import (DeflatedExplicitVRLittleEndian, DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian,
                         JPEG2000Lossless, JPEGBaseline8Bit, RLELossless, generate_uid)

from fracture_web import overlay
from fracture_web.analysis import Analysis
from fracture_web.findings import Finding
from fracture_web.inference import Prediction

#: Identifying values planted in every test file: they must never reach a page, a response or a log.
PATIENT = {"PatientName": "Doe^Jane", "PatientID": "PID-0451-XRAY", "PatientBirthDate": "19700101"}
#: Two findings on a 400 x 320 radiograph, one of each level.
BOXES = (Finding((40.0, 60.5, 150.0, 170.0), 0.91, "definite"), Finding((160.0, 250.0, 300.0, 380.0), 0.42, "possible"))


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


def radiograph_study(images: list[np.ndarray], **elements) -> list[Dataset]:
    """One examination's views as a modality sends them: one patient, study and series, an instance each."""
    first = radiograph_dataset(images[0], InstanceNumber=1, **elements)
    views = ("AP", "LAT", "LL", "RL")
    return [first] + [radiograph_dataset(pixels, StudyInstanceUID=first.StudyInstanceUID,
                                         SeriesInstanceUID=first.SeriesInstanceUID, InstanceNumber=number,
                                         ViewPosition=views[(number - 2) % len(views)], **elements)
                      for number, pixels in enumerate(images[1:], start=2)]


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


def analysis_of(source: Dataset, fractured: bool, findings: tuple[Finding, ...], warnings: tuple[str, ...] = (),
                display_max_side: int = 200, probability: float | None = None) -> Analysis:
    """What the app's analysis of the source would be, with this verdict and these findings (probability
    0.87 or 0.04 unless given; threshold 0.3); the display images are half a 400-pixel source's size,
    so boxes must be scaled to be drawn."""
    xray = overlay.display_image(source.pixel_array / 255.0, display_max_side)
    probability = probability if probability is not None else (0.87 if fractured else 0.04)
    prediction = Prediction("fractured" if fractured else "not_fractured", fractured, probability,
                            0.3, "balanced", "test-model-1", np.zeros((8, 8), np.float32), findings=findings)
    return Analysis(prediction, warnings, xray, overlay.blend(xray, np.zeros(xray.shape, np.float32)))


def report_of(sr: Dataset) -> hd.sr.MeasurementReport:
    """The SR as a viewer reads it: from the file bytes, through highdicom."""
    read = hd.sr.ComprehensiveSR.from_dataset(dcmread(io.BytesIO(to_bytes(sr))))
    assert isinstance(read.content, hd.sr.MeasurementReport)
    return read.content


def deflate_bomb(ds: Dataset, inflated_mb: int) -> bytes:
    """The dataset without its pixels, as Deflated Explicit VR Little Endian, followed by pixel data of
    ``inflated_mb`` megabytes of zeros: a file of about a thousandth of that (repeated deflate blocks,
    each byte-aligned by a full flush, so the bomb is built without deflating it all)."""
    del ds.PixelData
    plain = to_bytes(ds)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    meta = to_bytes(ds)
    meta = meta[:144 + struct.unpack_from("<I", meta, 140)[0]]  # preamble, prefix and group 2
    body = plain[144 + struct.unpack_from("<I", plain, 140)[0]:]
    pixels = b"\xe0\x7f\x10\x00OB\x00\x00" + struct.pack("<I", inflated_mb << 20)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    start = deflater.compress(body + pixels) + deflater.flush(zlib.Z_FULL_FLUSH)
    megabyte = deflater.compress(bytes(1 << 20)) + deflater.flush(zlib.Z_FULL_FLUSH)
    return meta + start + megabyte * inflated_mb + deflater.flush()

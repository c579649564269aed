"""DICOM test files made from ordinary images, as a modality or a PACS would write them; analyses
of them made by hand (no model), and the node's reports read back as a viewer would."""
from __future__ import annotations

import io
from datetime import datetime
import struct
import zlib

import cv2
import highdicom as hd
import numpy as np
from pydicom import Dataset, dcmread
from pydicom.encaps import encapsulate
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

from bench import dx_files
from bench.dx_files import to_bytes
from fracture_web import overlay
from fracture_web.analysis import Analysis
from fracture_web.dicom_node.readings import Reading
from fracture_web.dicom_node.report import measurement_report
from fracture_web.dicom_node.results import secondary_capture
from fracture_web.findings import Finding
from fracture_web.inference import Prediction

#: Identifying values planted in every test file: they must never reach a page, a response or a log.
PATIENT = {"PatientName": "Doe^Jane", "PatientID": "PID-0451-XRAY", "PatientBirthDate": "19700101"}
#: The study every test file belongs to unless a test says otherwise.
STUDY = {"PatientSex": "F", "StudyDate": "20261120", "StudyTime": "101500", "AccessionNumber": "ACC42", "StudyID": "S1"}
#: Two findings on a 400 x 320 radiograph, one of each level.
BOXES = (Finding((40.0, 60.5, 150.0, 170.0), 0.91, "definite"), Finding((160.0, 250.0, 300.0, 380.0), 0.42, "possible"))


def radiograph_dataset(pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int | None = None,
                       **elements) -> Dataset:
    """The lab's DX dataset (:func:`bench.dx_files.radiograph_dataset`) with the test patient and study
    planted, unless ``elements`` say otherwise."""
    return dx_files.radiograph_dataset(pixels, photometric, bits_stored, **(PATIENT | STUDY | elements))


def radiograph_study(images: list[np.ndarray], **elements) -> list[Dataset]:
    """One examination's views as a modality sends them: one patient, study and series, an instance each."""
    first = radiograph_dataset(images[0], InstanceNumber=1, **elements)
    views = ("AP", "LAT", "LL", "RL")
    return [first] + [radiograph_dataset(pixels, StudyInstanceUID=first.StudyInstanceUID,
                                         SeriesInstanceUID=first.SeriesInstanceUID, InstanceNumber=number,
                                         ViewPosition=views[(number - 2) % len(views)], **elements)
                      for number, pixels in enumerate(images[1:], start=2)]


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


def reading_of(source: Dataset, analysis: Analysis, received: float = 0.0) -> Reading:
    """The node's reading of the source from this analysis (its prediction and warnings)."""
    return Reading.of(source, analysis.prediction, analysis.warnings, received)


def sc_of(source: Dataset, analysis: Analysis, now: datetime) -> Dataset:
    """The Secondary Capture the node makes of the source from this analysis (its overlay image)."""
    return secondary_capture(source, analysis.prediction, analysis.warnings, analysis.overlay, now)


def secondary_captures(count: int) -> list[Dataset]:
    """Secondary Captures of ``count`` small uniform radiographs, made without a model, as the node sends them."""
    made = []
    for seed in range(count):
        source = radiograph_dataset(np.full((64, 48), 90 + seed, np.uint8))
        made.append(sc_of(source, analysis_of(source, False, (), display_max_side=32), datetime.now()))
    return made


def report_over(views: list[tuple[Dataset, Analysis]], now: datetime) -> Dataset:
    """The study's Measurement Report over these views (source and analysis), in this order of arrival."""
    return measurement_report([reading_of(source, analysis, float(i)) for i, (source, analysis) in enumerate(views)],
                              now)


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


def cited(sr: Dataset) -> list[str]:
    """The images a report covers."""
    return sorted(ref.ReferencedSOPInstanceUID for series in sr.CurrentRequestedProcedureEvidenceSequence[0]
                  .ReferencedSeriesSequence for ref in series.ReferencedSOPSequence)

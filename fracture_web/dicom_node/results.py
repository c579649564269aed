"""A model's analysis of a received radiograph -> the two DICOM objects sent back to the PACS.

(a) a Secondary Capture image: the X-ray with the heatmap overlay and, burned in above it, the
verdict, probability, operating point, model version and NOT FOR DIAGNOSTIC USE;
(b) a Basic Text SR with the same facts, whose finding is INFERRED FROM the source image.

Each goes in a new series of the source's study (DICOM wants an SR in a series of its own,
modality SR, so the two are separate series). Patient and study attributes are copied from the
source, type 2 ones left empty where the source lacks them: nothing is invented. New UIDs are
derived from the source image's UID, the model version and the operating point, so sending the
same image twice replaces the earlier result instead of duplicating it. Pure functions
(pydicom, numpy, OpenCV); no network, no Flask.
"""
from __future__ import annotations

import textwrap
from datetime import datetime

import cv2
import numpy as np
from pydicom import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import BasicTextSRStorage, ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from ..analysis import Analysis

MANUFACTURER = "fracture-web"
NOT_FOR_DIAGNOSIS = "NOT FOR DIAGNOSTIC USE"
#: Private coding scheme (PS3.16: designators starting with 99) for the concepts DICOM has no code for.
SCHEME = "99FRACTUREWEB"
#: Copied from the source when present; the type 2 ones (in ``REQUIRED_EMPTY``) are kept, empty, when not.
PATIENT_STUDY = ("SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
                 "PatientSex", "PatientAge", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID",
                 "AccessionNumber", "ReferringPhysicianName", "StudyDescription")
REQUIRED_EMPTY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                  "StudyID", "AccessionNumber", "ReferringPhysicianName")
SC_SERIES_NUMBER, SR_SERIES_NUMBER = 9001, 9002


def result_datasets(source: Dataset, analysis: Analysis, now: datetime | None = None) -> list[Dataset]:
    """The Secondary Capture and the Basic Text SR for one analysed source image (with its images)."""
    now = now or datetime.now()
    return [secondary_capture(source, analysis, now), text_report(source, analysis, now)]


def result_uid(source: Dataset, analysis: Analysis, kind: str) -> str:
    """A UID that is new (not the source's) but the same each time this image gets this result."""
    p = analysis.prediction
    return generate_uid(entropy_srcs=[str(source.SOPInstanceUID), p.model_version, p.operating_point, kind])


def summary_lines(analysis: Analysis) -> list[str]:
    """The facts burned into the image, one per line, and the analysis's warnings (wrapped)."""
    p = analysis.prediction
    return [f"{NOT_FOR_DIAGNOSIS} - AI decision aid",
            f"{p.verdict}: probability {p.probability:.1%}",
            f"Operating point {p.operating_point.replace('_', ' ')} (threshold {p.threshold:.1%})",
            f"Model {p.model_version}; heatmap = where the model looked",
            *(line for warning in analysis.warnings for line in textwrap.wrap(f"Warning: {warning}", 70))]


def burn_in(image_rgb: np.ndarray, lines: list[str]) -> np.ndarray:
    """The image with a black band above it holding the lines in white (the first in amber).

    OpenCV's built-in Hershey font: nothing to download. The text is scaled to fit the width.
    """
    width = image_rgb.shape[1]
    font, thickness = cv2.FONT_HERSHEY_SIMPLEX, max(1, width // 600)
    widest = max(cv2.getTextSize(line, font, 1.0, thickness)[0][0] for line in lines)
    scale = min(1.0, 0.96 * width / widest)
    line_height = int(round(40 * scale)) + 4
    band = np.zeros((line_height * len(lines) + 8, width, 3), np.uint8)
    for i, line in enumerate(lines):
        colour = (255, 191, 0) if i == 0 else (255, 255, 255)
        cv2.putText(band, line, (int(0.02 * width), line_height * (i + 1)), font, scale, colour, thickness,
                    cv2.LINE_AA)
    return np.vstack([band, image_rgb])


def secondary_capture(source: Dataset, analysis: Analysis, now: datetime) -> Dataset:
    """The Secondary Capture image (RGB, 8 bits) of the overlay with the summary burned in."""
    pixels = burn_in(analysis.overlay, summary_lines(analysis))
    ds = _new_instance(source, analysis, SecondaryCaptureImageStorage, "sc", now)
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "OT", SC_SERIES_NUMBER, 1
    ds.SeriesDescription = f"Fracture AI heatmap - {NOT_FOR_DIAGNOSIS}"
    ds.ConversionType = "WSD"  # workstation: the image was made by software
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = f"Heatmap overlay and result of fracture-detection model; {NOT_FOR_DIAGNOSIS}"
    ds.BurnedInAnnotation = "YES"
    ds.PatientOrientation = source.get("PatientOrientation", "")
    if "BodyPartExamined" in source:
        ds.BodyPartExamined = source.BodyPartExamined
    ds.SourceImageSequence = Sequence([_reference(source)])
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def text_report(source: Dataset, analysis: Analysis, now: datetime) -> Dataset:
    """The Basic Text SR: verdict (inferred from the source image), probability, operating point, model."""
    p = analysis.prediction
    ds = _new_instance(source, analysis, BasicTextSRStorage, "sr", now)
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "SR", SR_SERIES_NUMBER, 1
    ds.SeriesDescription = f"Fracture AI report - {NOT_FOR_DIAGNOSIS}"
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    ds.PerformedProcedureCodeSequence = Sequence()
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    evidence = Dataset()
    evidence.StudyInstanceUID = source.StudyInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = source.SeriesInstanceUID
    series.ReferencedSOPSequence = Sequence([_reference(source)])
    evidence.ReferencedSeriesSequence = Sequence([series])
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([evidence])
    # The content tree: a titled CONTAINER holding the finding and the facts behind it.
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.ConceptNameCodeSequence = _code("18748-4", "LN", "Diagnostic Imaging Report")
    finding = _text("121071", "DCM", "Finding", p.verdict)
    image = Dataset()
    image.RelationshipType, image.ValueType = "INFERRED FROM", "IMAGE"
    image.ReferencedSOPSequence = Sequence([_reference(source)])
    finding.ContentSequence = Sequence([image])
    ds.ContentSequence = Sequence([
        finding,
        _text("probability", SCHEME, "Probability of fracture", f"{p.probability:.4f} ({p.probability:.1%})"),
        _text("operating-point", SCHEME, "Operating point", f"{p.operating_point} (threshold {p.threshold:.4f})"),
        _text("model-version", SCHEME, "Model version", p.model_version),
        _text("121106", "DCM", "Comment", f"{NOT_FOR_DIAGNOSIS}. Produced by an AI decision aid, not a diagnosis; "
              "the heatmap shows where the model looked, not where a fracture is."),
        *(_text("121106", "DCM", "Comment", warning) for warning in analysis.warnings),
    ])
    return ds


def _new_instance(source: Dataset, analysis: Analysis, sop_class: str, kind: str, now: datetime) -> Dataset:
    """A dataset with the source's patient and study, a new series and instance, and our equipment."""
    ds = Dataset()
    for keyword in PATIENT_STUDY:
        if keyword in source:
            ds[keyword] = source[keyword]
        elif keyword in REQUIRED_EMPTY:
            setattr(ds, keyword, "")
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, result_uid(source, analysis, kind)
    ds.SeriesInstanceUID = result_uid(source, analysis, f"series-{kind}")
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.InstanceCreationDate, ds.InstanceCreationTime = ds.ContentDate, ds.ContentTime
    ds.Manufacturer, ds.ManufacturerModelName = MANUFACTURER, "fracture-detection assistant"
    ds.SoftwareVersions = analysis.prediction.model_version
    ds.file_meta = _file_meta(ds)
    return ds


def _file_meta(ds: Dataset) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _reference(source: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = source.SOPClassUID, source.SOPInstanceUID
    return item


def _code(value: str, scheme: str, meaning: str) -> Sequence:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return Sequence([item])


def _text(value: str, scheme: str, meaning: str, text: str) -> Dataset:
    item = Dataset()
    item.RelationshipType, item.ValueType = "CONTAINS", "TEXT"
    item.ConceptNameCodeSequence = _code(value, scheme, meaning)
    item.TextValue = text
    return item

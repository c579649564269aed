"""A model's prediction for a received radiograph -> the Secondary Capture image sent back to the PACS.

The X-ray with the heatmap overlay and the findings' boxes (solid = definite, dashed = possible,
numbered by score) and, burned in above it, the verdict, probability, findings, operating point,
model version and NOT FOR DIAGNOSTIC USE. The same facts, for all of a study's images and with the
study's verdict, go in the study's Measurement Report (:mod:`fracture_web.dicom_node.report`).

The image goes in a new series of the source's study. Patient and study attributes are copied from
the source, type 2 ones left empty where the source lacks them: nothing is invented. New UIDs are
derived from the source image's UID, the model version and the operating point, so sending the
same image twice replaces the earlier result instead of duplicating it. Pure functions
(pydicom, numpy, OpenCV); no network, no Flask.
"""
from __future__ import annotations

import textwrap
from collections.abc import Iterable
from datetime import datetime

import cv2
import numpy as np
from pydicom import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from .. import overlay
from ..inference import Prediction
from .header import MANUFACTURER, MODEL_NAME, NOT_FOR_DIAGNOSIS, patient_and_study, reference, result_uid

SC_SERIES_NUMBER = 9001


def summary_lines(p: Prediction, warnings: Iterable[str]) -> list[str]:
    """The facts burned into the image, one per line, and the analysis's warnings (wrapped)."""
    return [f"{NOT_FOR_DIAGNOSIS} - AI decision aid",
            f"{p.verdict}: probability {p.probability:.1%}",
            findings_line(p),
            f"Operating point {p.operating_point.replace('_', ' ')} (threshold {p.threshold:.1%})",
            f"Model {p.model_version}; heatmap = where the model looked",
            *(line for warning in warnings for line in textwrap.wrap(f"Warning: {warning}", 70))]


def findings_line(p: Prediction) -> str:
    """How many boxes there are, of which level, and how to tell the levels apart."""
    levels = [finding.level for finding in p.findings]
    if not levels:
        return "No findings marked"
    count = f"{len(levels)} finding{'s' if len(levels) > 1 else ''}"
    return (f"{count}: {levels.count('definite')} definite, {levels.count('possible')} possible "
            "(solid = definite, dashed = possible)")


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


def annotated_overlay(source: Dataset, p: Prediction, shown: np.ndarray) -> np.ndarray:
    """The heatmap overlay (``shown``) with the findings' boxes, scaled from the source's pixels to the overlay's."""
    scale = shown.shape[1] / int(source.Columns)
    return overlay.draw_findings(shown, p.findings, scale)


def secondary_capture(source: Dataset, p: Prediction, warnings: Iterable[str], shown: np.ndarray,
                      now: datetime) -> Dataset:
    """The Secondary Capture image (RGB, 8 bits) of the heatmap overlay (``shown``, RGB) and the
    prediction's boxes, with its summary and the warnings burned in."""
    pixels = burn_in(annotated_overlay(source, p, shown), summary_lines(p, warnings))
    ds = _new_instance(source, p, SecondaryCaptureImageStorage, "sc", now)
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "OT", SC_SERIES_NUMBER, 1
    ds.SeriesDescription = f"Fracture AI heatmap - {NOT_FOR_DIAGNOSIS}"
    ds.Laterality = laterality(source)
    ds.ConversionType = "WSD"  # workstation: the image was made by software
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = (f"Heatmap overlay, suspected fractures boxed and result of fracture-detection "
                                f"model; {NOT_FOR_DIAGNOSIS}")
    ds.BurnedInAnnotation = "YES"
    ds.PatientOrientation = source.get("PatientOrientation", "")
    if "BodyPartExamined" in source:
        ds.BodyPartExamined = source.BodyPartExamined
    ds.SourceImageSequence = Sequence([reference(source)])
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def laterality(source: Dataset) -> str:
    """The source's side (Laterality, else Image Laterality) when it is R or L; else empty (type 2C:
    a paired body part needs the attribute, and "U" or "B" are not values Laterality may take)."""
    side = source.get("Laterality") or source.get("ImageLaterality") or ""
    return side if side in ("R", "L") else ""


def _new_instance(source: Dataset, p: Prediction, sop_class: str, kind: str, now: datetime) -> Dataset:
    """A dataset with the source's patient and study, a new series and instance, and our equipment."""
    ds = patient_and_study(source)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, result_uid(source, p, kind)
    ds.SeriesInstanceUID = result_uid(source, p, f"series-{kind}")
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.InstanceCreationDate, ds.InstanceCreationTime = ds.ContentDate, ds.ContentTime
    ds.Manufacturer, ds.ManufacturerModelName = MANUFACTURER, MODEL_NAME
    ds.SoftwareVersions = p.model_version
    ds.file_meta = _file_meta(ds)
    return ds


def _file_meta(ds: Dataset) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta

"""A study's readings (each radiograph's prediction and warnings) -> one TID 1500 Measurement Report (Comprehensive SR, highdicom).

Laid out as IHE AI Results asks, so a PACS or viewer can read the result without knowing the app:

- first a study-level group (TID 1501, citing no image: it is about the whole study): fracture present
  or absent (SNOMED CT 72704001 "Fracture" with "Present"/"Absent"), the study probability and the
  operating point's threshold (UCUM "1": numbers in [0, 1]) from :func:`fracture_web.study.combine`
  (fractured when any view is; the largest view probability), and comments: NOT FOR DIAGNOSTIC USE
  and the rule with the number of views;
- then for each image, in order of arrival: an image-level group (TID 1501) citing that image, with
  its own verdict, probability and threshold and, as comments, the disclaimer and the analysis's
  warnings; then one planar ROI group (TID 1410) per finding, in rank order: its box as a closed
  5-point POLYLINE in that image's pixel coordinates (the DICOM convention: (0, 0) is the top-left
  corner of the top-left pixel, (Columns, Rows) the bottom-right corner of the last), coded as a
  fracture, with its score and its level (definite or possible);
- every group names the algorithm (TID 4019): "fracture-web", the model version, and the operating
  point and threshold as its parameters; the observer is the software as a device;
- the evidence lists every image the report covers;
- every verdict's probability is inferred from a point (the top-left corner) of its image, the study's
  from its most suspicious view: OHIF (3.13) draws each group of a report on an image and stops
  loading the report at a group without coordinates; it draws the findings' regions as they are.

The report's UIDs derive from the Study Instance UID, the model version and the operating point,
so a report re-issued when a late image arrives replaces the earlier one. A "not fractured" image
without findings is its image-level group alone. Pure functions (highdicom and pydicom); no network,
no Flask.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import highdicom as hd
from highdicom.coding_schemes import CodingSchemeIdentificationItem
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from ..inference import Prediction
from ..findings import Finding
from ..study import StudyVerdict, combine
from .evidence import report_evidence
from .header import MANUFACTURER, MODEL_NAME, NOT_FOR_DIAGNOSIS, SCHEME, result_uid, study_result_uid
from .readings import Reading

log = logging.getLogger(__name__)

SR_SERIES_NUMBER = 9002
FRACTURE = Code("72704001", "SCT", "Fracture")
PROBABILITY = Code("probability", SCHEME, "Probability of fracture")
THRESHOLD = Code("threshold", SCHEME, "Operating point threshold")
SCORE = Code("finding-score", SCHEME, "Finding score")
LEVEL = Code("finding-level", SCHEME, "Finding level")
LEVELS = {"definite": Code("definite", SCHEME, "Definite"), "possible": Code("possible", SCHEME, "Possible")}
IMAGE_ASSESSMENT, STUDY_ASSESSMENT = "Image-level fracture assessment", "Study-level fracture assessment"
STUDY_RULE = "fractured when any view is; its probability is the largest view probability."
DISCLAIMER = (f"{NOT_FOR_DIAGNOSIS}. Produced by an AI decision aid, not a diagnosis; the boxes mark where "
              "the model suspects a fracture (definite or possible), to be checked by a reader.")


def report_uid(readings: Sequence[Reading]) -> str:
    """The study report's SOP Instance UID (the FHIR report is identified by it too)."""
    return study_result_uid(readings[0].source, readings[0].prediction, "sr")


def image_assessment_uid(reading: Reading) -> str:
    """The tracking UID of one image's verdict (the FHIR report's view carries it too)."""
    return result_uid(reading.source, reading.prediction, "image-assessment")


def measurement_report(readings: Sequence[Reading], now: datetime) -> hd.sr.ComprehensiveSR:
    """The SR document for the readings of one study (in order of arrival), in a new series of it."""
    first = readings[0].source  # all of one study, model and operating point
    p = readings[0].prediction
    verdict = combine([reading.prediction for reading in readings])
    algorithm = hd.sr.AlgorithmIdentification(
        name=MANUFACTURER, version=p.model_version,
        parameters=[f"operating point: {p.operating_point}", f"threshold: {p.threshold:.4f}"])
    groups = [study_group(readings, verdict, algorithm)]
    for reading in readings:
        groups += [image_group(reading, algorithm),
                   *(finding_group(reading.source, reading.prediction, rank, finding, algorithm)
                     for rank, finding in enumerate(reading.prediction.findings, start=1))]
    content = hd.sr.MeasurementReport(observation_context=observation_context(p.model_version),
                                      procedure_reported=codes.SCT.PlainRadiography, imaging_measurements=groups)
    # The evidence is each source's identity with only its patient and study: nothing else is copied
    # (values highdicom would refuse the whole report over are mended or emptied first).
    sr = hd.sr.ComprehensiveSR(
        evidence=[report_evidence(reading.source) for reading in readings], content=content[0],
        series_instance_uid=study_result_uid(first, p, "series-sr"), series_number=SR_SERIES_NUMBER,
        sop_instance_uid=report_uid(readings), instance_number=1,
        manufacturer=MANUFACTURER, manufacturer_model_name=MODEL_NAME, software_versions=p.model_version,
        series_description=f"Fracture AI report - {NOT_FOR_DIAGNOSIS}", is_complete=True, is_final=True,
        content_date=now.date(), content_time=now.time(),
        coding_schemes=[CodingSchemeIdentificationItem(SCHEME, name="fracture-web result concepts")])
    sr.InstanceCreationDate, sr.InstanceCreationTime = sr.ContentDate, sr.ContentTime
    return sr


def study_report(readings: Sequence[Reading], now: datetime) -> hd.sr.ComprehensiveSR:
    """The report over a study's readings (in order of arrival); logs the study's verdict (no patient data)."""
    verdict = combine([reading.prediction for reading in readings])
    log.info("reporting a study of %d image(s): %s, probability %.3f", verdict.views, verdict.label,
             verdict.probability)
    return measurement_report(readings, now)


@dataclass(frozen=True)
class StudyReport:
    """A study's report over the readings it could be made with (None: none could), and the readings
    left out with the error that the first try met."""

    report: hd.sr.ComprehensiveSR | None
    left_out: tuple[Reading, ...] = ()
    error: Exception | None = None


def report_what_can_be_reported(readings: Sequence[Reading], now: datetime) -> StudyReport:
    """The study's report; when it cannot be made, the report over the readings that can each be
    reported alone, the others left out (all of them when even those fail together). The faults
    (highdicom, pydicom and numpy raise many kinds on a bad value) are caught whatever their type:
    one image's facts must never cost the study's other views their report."""
    if not readings:
        return StudyReport(None)
    try:
        return StudyReport(study_report(readings, now))
    except Exception as err:  # noqa: BLE001 (see the docstring)
        error = err
    alone = [_can_report(reading, now) for reading in readings]
    good = tuple(reading for reading, ok in zip(readings, alone) if ok)
    left_out = tuple(reading for reading, ok in zip(readings, alone) if not ok)
    try:
        return StudyReport(study_report(good, now) if good else None, left_out, error)
    except Exception:  # noqa: BLE001 - they fail only together: none of them can be reported
        return StudyReport(None, tuple(readings), error)


def _can_report(reading: Reading, now: datetime) -> bool:
    try:
        study_report([reading], now)
    except Exception:  # noqa: BLE001 - any fault: this reading is the one left out
        return False
    return True


def observation_context(model_version: str) -> hd.sr.ObservationContext:
    """The observer: this software, as a device whose UID follows the model version."""
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=[MANUFACTURER, model_version]), name=MANUFACTURER,
        manufacturer_name=MANUFACTURER, model_name=MODEL_NAME)
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(observer_type=codes.cid270.Device,
                                                      observer_identifying_attributes=device))


def study_group(readings: Sequence[Reading], verdict: StudyVerdict,
                algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """The study-level verdict, probability and threshold, citing no image (its probability inferred
    from the most suspicious view), with the disclaimer and the rule."""
    first = readings[0]
    suspicious = max(readings, key=lambda reading: reading.prediction.probability)
    group = verdict_group(hd.sr.TrackingIdentifier(uid=study_result_uid(first.source, first.prediction,
                                                                        "study-assessment"),
                                                   identifier=STUDY_ASSESSMENT),
                          algorithm, verdict.probability, verdict.threshold, verdict.fractured,
                          on_image(suspicious.source))
    views = f"{verdict.views} view{'s' if verdict.views > 1 else ''}"
    return with_comments(group, DISCLAIMER, f"Study verdict from {views}: {STUDY_RULE}")


def image_group(reading: Reading,
                algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """One image's verdict, probability (inferred from that image) and threshold, with the
    disclaimer and warnings as comments."""
    source, p = reading.source, reading.prediction
    group = verdict_group(hd.sr.TrackingIdentifier(uid=image_assessment_uid(reading),
                                                   identifier=IMAGE_ASSESSMENT),
                          algorithm, p.probability, p.threshold, p.fractured, on_image(source),
                          [hd.sr.SourceImageForMeasurementGroup(source.SOPClassUID, source.SOPInstanceUID)])
    return with_comments(group, DISCLAIMER, *reading.warnings)


def verdict_group(tracking: hd.sr.TrackingIdentifier, algorithm: hd.sr.AlgorithmIdentification,
                  probability: float, threshold: float, fractured: bool,
                  inferred_from: hd.sr.CoordinatesForMeasurement,
                  source_images: list[hd.sr.SourceImageForMeasurementGroup] | None = None,
                  ) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """A verdict group (TID 1501): fracture present or absent, the probability (inferred from a
    point of an image) and the threshold."""
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking, algorithm_id=algorithm,
        measurements=[hd.sr.Measurement(PROBABILITY, probability, codes.UCUM.NoUnits,
                                        referenced_coordinates=[inferred_from]),
                      hd.sr.Measurement(THRESHOLD, threshold, codes.UCUM.NoUnits)],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(FRACTURE, present_or_absent(fractured))],
        source_images=source_images)


def present_or_absent(fractured: bool) -> Code:
    return codes.SCT.Present if fractured else codes.SCT.Absent


def with_comments(group: hd.sr.MeasurementsAndQualitativeEvaluations,
                  *texts: str) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """The group with each text added as a Comment (highdicom takes no free text here)."""
    for text in texts:
        group[0].ContentSequence.append(hd.sr.TextContentItem(
            name=codes.DCM.Comment, value=text, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    return group


def finding_group(source: Dataset, p: Prediction, rank: int, finding: Finding,
                  algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """One finding: its box on the source image, coded as a fracture, with its score and level."""
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=rectangle(finding.box),
        source_image=hd.sr.SourceImageForRegion(source.SOPClassUID, source.SOPInstanceUID))
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=result_uid(source, p, f"finding-{rank}"),
                                                     identifier=f"Finding {rank}"),
        referenced_region=region, finding_type=FRACTURE, algorithm_id=algorithm,
        measurements=[hd.sr.Measurement(SCORE, finding.score, codes.UCUM.NoUnits)],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(LEVEL, LEVELS[finding.level])])


def on_image(source: Dataset) -> hd.sr.CoordinatesForMeasurement:
    """The image a verdict is inferred from, as a point at its top-left corner: OHIF places every
    measurement of a report on an image and stops at one that has no coordinates."""
    return hd.sr.CoordinatesForMeasurement(hd.sr.GraphicTypeValues.POINT, np.array([[0.0, 0.0]], dtype=np.float32),
                                           hd.sr.SourceImageForRegion(source.SOPClassUID, source.SOPInstanceUID))


def rectangle(box: tuple[float, float, float, float]) -> np.ndarray:
    """A box (x0, y0, x1, y1) as a closed polyline: 5 (column, row) points, the first repeated last."""
    x0, y0, x1, y1 = box
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float32)

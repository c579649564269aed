"""What a PACS receives for a study of one radiograph, read back as a viewer would: the Secondary
Capture with the findings boxed, and the TID 1500 Measurement Report with each finding a region of the
source image (highdicom); both valid DICOM by dciodvfy (dicom3tools). No model: the analyses are made
by hand. Studies of several images: tests/test_dicom_study_report.py."""
from __future__ import annotations

import copy
import shutil
import subprocess
from datetime import datetime

import highdicom as hd
import numpy as np
import pytest
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ComprehensiveSRStorage, SecondaryCaptureImageStorage

from fracture_web import overlay
from fracture_web.analysis import Analysis
from fracture_web.dicom_node.report import FRACTURE
from fracture_web.dicom_node.results import NOT_FOR_DIAGNOSIS, findings_line
from fracture_web.inference import Prediction

from dicom_files import BOXES, analysis_of, radiograph_dataset, report_of, report_over, sc_of
from helpers import synthetic_xray

DCIODVFY = shutil.which("dciodvfy")
NOW = datetime(2026, 11, 27, 1, 2, 3)


@pytest.fixture(scope="module")
def source() -> Dataset:
    """A 400 x 320 DX radiograph of the left hand, as a modality sends it."""
    return radiograph_dataset(synthetic_xray(np.random.default_rng(0), crack=True, size=(400, 320)))


def result_datasets(source: Dataset, analysis: Analysis, now: datetime) -> list[Dataset]:
    """What the node sends for a study of this one image: its Secondary Capture and the study's report."""
    return [sc_of(source, analysis, now), report_over([(source, analysis)], now)]


def texts(group: hd.sr.templates.Template, concept) -> list[str]:
    return [item.value for item in hd.sr.utils.find_content_items(group[0], name=concept)]


def test_each_finding_is_a_fracture_region_of_the_source_image_in_its_own_pixels(source):
    _sc, sr = result_datasets(source, analysis_of(source, True, BOXES), NOW)
    groups = report_of(sr).get_planar_roi_measurement_groups()
    assert len(groups) == len(BOXES)
    for rank, (group, finding) in enumerate(zip(groups, BOXES), start=1):
        x0, y0, x1, y1 = finding.box
        assert group.roi.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
        np.testing.assert_allclose(group.roi.value, [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
        assert group.roi.ContentSequence[0].referenced_sop_instance_uid == source.SOPInstanceUID
        assert group.finding_type == FRACTURE and FRACTURE.value == "72704001" and FRACTURE.scheme_designator == "SCT"
        assert group.tracking_identifier == f"Finding {rank}"
        (score,) = group.get_measurements()
        assert score.value == pytest.approx(finding.score) and score.unit == codes.UCUM.NoUnits
        (level,) = group.get_qualitative_evaluations()
        assert level.value.meaning.lower() == finding.level
        assert texts(group, codes.DCM.AlgorithmName) == ["fracture-web"]
        assert texts(group, codes.DCM.AlgorithmVersion) == ["test-model-1"]


def test_the_report_gives_the_verdict_probability_and_operating_point_for_the_image(source):
    _sc, sr = result_datasets(source, analysis_of(source, True, BOXES, ("A warning for the reader",)), NOW)
    assert sr.SOPClassUID == ComprehensiveSRStorage and sr.Modality == "SR"
    assert (sr.CompletionFlag, sr.VerificationFlag) == ("COMPLETE", "UNVERIFIED")
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    (image,) = report_of(sr).get_image_measurement_groups(referenced_sop_instance_uid=source.SOPInstanceUID)
    assert [s.referenced_sop_instance_uid for s in image.source_images] == [source.SOPInstanceUID]
    (verdict,) = image.get_qualitative_evaluations()
    assert (verdict.name, verdict.value) == (FRACTURE, codes.SCT.Present)
    measured = {m.name.meaning: (m.value, m.unit) for m in image.get_measurements()}
    assert measured == {"Probability of fracture": (pytest.approx(0.87), codes.UCUM.NoUnits),
                        "Operating point threshold": (pytest.approx(0.3), codes.UCUM.NoUnits)}
    assert texts(image, codes.DCM.AlgorithmParameters) == ["operating point: balanced", "threshold: 0.3000"]
    disclaimer, warning = texts(image, codes.DCM.Comment)
    assert disclaimer.startswith(NOT_FOR_DIAGNOSIS) and warning == "A warning for the reader"
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID


def test_a_negative_image_without_findings_gets_the_image_level_verdict_alone(source):
    _sc, sr = result_datasets(source, analysis_of(source, False, ()), NOW)
    report = report_of(sr)
    assert report.get_planar_roi_measurement_groups() == []
    (image,) = report.get_image_measurement_groups(referenced_sop_instance_uid=source.SOPInstanceUID)
    (verdict,) = image.get_qualitative_evaluations()
    assert (verdict.name, verdict.value) == (FRACTURE, codes.SCT.Absent)
    assert dict((m.name.meaning, m.value) for m in image.get_measurements())["Probability of fracture"] == 0.04


def test_the_report_keeps_patient_study_and_new_deterministic_uids(source):
    sc, sr = result_datasets(source, analysis_of(source, True, BOXES), NOW)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                    "StudyTime", "AccessionNumber", "StudyID", "ReferringPhysicianName"):
        assert sr[keyword].value == source[keyword].value, keyword
    assert "PatientAge" not in sr and "StudyDescription" not in sr  # nothing invented
    assert len({sr.SOPInstanceUID, sr.SeriesInstanceUID, sc.SeriesInstanceUID, source.SeriesInstanceUID}) == 4
    again = result_datasets(source, analysis_of(source, True, BOXES), NOW)[1]
    assert (again.SOPInstanceUID, again.SeriesInstanceUID) == (sr.SOPInstanceUID, sr.SeriesInstanceUID)
    assert (str(sr.ContentDate), str(sr.ContentTime)) == ("20261127", "010203")


def test_the_secondary_capture_draws_each_box_scaled_to_the_display_and_says_how_many(source):
    analysis = analysis_of(source, True, BOXES)
    sc, _sr = result_datasets(source, analysis, NOW)
    assert sc.SOPClassUID == SecondaryCaptureImageStorage and sc.Columns == analysis.overlay.shape[1]
    band = sc.Rows - analysis.overlay.shape[0]
    image = sc.pixel_array[band:]
    scale = analysis.overlay.shape[1] / source.Columns  # 0.5: the display is half the source
    for finding in BOXES:
        colour, _solid = overlay.BOX_STYLES[finding.level]
        x0, y0, x1, y1 = (round(v * scale) for v in finding.box)
        left_edge = image[y0:y1, x0 - 1:x0 + 2].reshape(-1, 3)
        assert (np.abs(left_edge.astype(int) - colour).max(axis=1) < 30).sum() >= (y1 - y0) // 3, finding.level
    inside = image[round(65 * scale):round(165 * scale), round(45 * scale):round(145 * scale)]
    assert not (np.abs(inside.astype(int) - overlay.BOX_STYLES["definite"][0]).max(axis=2) < 30).any()


def test_the_burned_in_text_counts_the_findings_by_level():
    positive = Prediction("fractured", True, 0.9, 0.3, "balanced", "m", np.zeros((2, 2)), findings=BOXES)
    negative = Prediction("not_fractured", False, 0.1, 0.3, "balanced", "m", np.zeros((2, 2)))
    assert findings_line(positive) == ("2 findings: 1 definite, 1 possible "
                                                      "(solid = definite, dashed = possible)")
    assert findings_line(negative) == "No findings marked"


@pytest.mark.parametrize("side, expected", [({"ImageLaterality": "L"}, "L"), ({"Laterality": "R"}, "R"),
                                            ({"ImageLaterality": "U"}, ""), ({}, "")],
                         ids=["image-laterality", "laterality", "unpaired", "unstated"])
def test_the_secondary_capture_carries_the_side_of_the_body(source, side, expected):
    sided = copy.deepcopy(source)
    del sided.ImageLaterality
    for keyword, value in side.items():
        setattr(sided, keyword, value)
    sc, _sr = result_datasets(sided, analysis_of(sided, False, ()), NOW)
    assert sc.Laterality == expected


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy is not installed (make test installs the Debian package "
                    "'dicom3tools' when it runs as root with apt-get)")
@pytest.mark.parametrize("fractured, findings, side", [(True, BOXES, "L"), (False, (), None)],
                         ids=["two-findings-left-hand", "negative-side-unstated"])
def test_both_results_pass_dciodvfy_without_errors(source, tmp_path, fractured, findings, side):
    sided = copy.deepcopy(source)
    if side is None:
        del sided.ImageLaterality, sided.PatientSex
    for ds in result_datasets(sided, analysis_of(sided, fractured, findings, ("A warning",)), NOW):
        path = tmp_path / f"{ds.Modality}.dcm"
        ds.save_as(path, enforce_file_format=True)
        done = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
        report = done.stdout + done.stderr
        assert not [line for line in report.splitlines() if "Error" in line], report

"""A hospital's story with a real PACS: Orthanc holds a three-view study (a fractured leg among the
views), sends it to the DICOM node running the shipped model, and finds back in the same study a
Secondary Capture per view (findings boxed) and one Measurement Report for the study (its verdict,
each view's verdict, each finding a region of its own view). Another site has the node deliver by
DICOMweb STOW-RS, signed in, instead of C-STORE.

Orthanc (the Debian package ``orthanc``, and ``orthanc-dicomweb`` for its DICOMweb plugin, which
``make test`` installs when it can) runs on free loopback ports with a temporary configuration and
storage folder (:mod:`servers`); the node runs as ``python -m fracture_web.dicom_node``, as in production.
"""
from __future__ import annotations

import io
import time
from pathlib import Path

import cv2
import highdicom as hd
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.sr.codedict import codes
from pydicom.uid import ComprehensiveSRStorage, SecondaryCaptureImageStorage

from bench.local_server import free_port
from fracture_web import overlay
from fracture_web.analysis import analyse
from fracture_web.dicom_node.report import FRACTURE, STUDY_ASSESSMENT
from fracture_web.dicom_node.results import NOT_FOR_DIAGNOSIS
from fracture_web.inference import FractureModel
from fracture_web.study import combine

from helpers import SAMPLES
from dicom_files import PATIENT, radiograph_dataset, radiograph_study, to_bytes
from servers import (DICOMWEB_PLUGIN, ORTHANC, ORTHANC_AE, PASSWORD, SHIPPED_MODEL, USER, Orthanc, node, orthanc,
                     wait_for)

pytestmark = pytest.mark.skipif(ORTHANC is None, reason="Orthanc is not installed and could not be installed here "
                                "(make test installs the Debian package 'orthanc' when it runs as root with apt-get)")
#: A fractured radiograph on which the shipped model marks at least one finding.
LEG = next(path for path in SAMPLES if path.name.startswith("leg_fractured"))
#: The study's other two views.
OTHERS = [next(path for path in SAMPLES if path.name.startswith(name)) for name in ("leg_not", "hand_not")]
#: The node's settling time: longer than it takes to read a view, so the three views make one report.
SETTLE_SECONDS = 4
SETTLED = {"FRACTURE_DICOM_SETTLE_SECONDS": str(SETTLE_SECONDS)}


@pytest.fixture(scope="module")
def shipped_model() -> FractureModel:
    return FractureModel(SHIPPED_MODEL)


def radiograph(path: Path):
    return cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_GRAYSCALE)


def send_to_node(pacs: Orthanc, sources) -> str:
    """Store the sources in Orthanc, then have Orthanc send their study to the node; returns the study's Orthanc ID."""
    stored = [pacs.rest("/instances", to_bytes(source)) for source in sources]
    study = stored[0]["ParentStudy"]
    pacs.rest("/modalities/fracture/store", {"Resources": [study], "Synchronous": True})
    return study


def results_in(pacs: Orthanc, study: str, scs: int) -> dict[str, list]:
    """The study's instances by modality, read with pydicom, once the SR and ``scs`` SCs are there."""
    def found():
        series = pacs.rest(f"/studies/{study}/series")
        by_modality = {}
        for s in series:
            by_modality.setdefault(s["MainDicomTags"]["Modality"], []).extend(s["Instances"])
        return by_modality if len(by_modality.get("OT", [])) == scs and by_modality.get("SR") else None

    wait_for(found, "the node's results in the study")
    time.sleep(SETTLE_SECONDS)  # a re-issued report would replace the first by now
    instances = wait_for(found, "the node's results in the study")
    assert len(instances["SR"]) == 1
    return {modality: [dcmread(io.BytesIO(pacs.rest(f"/instances/{uid}/file"))) for uid in uids]
            for modality, uids in instances.items()}


def test_orthanc_sends_a_three_view_study_and_gets_three_scs_and_one_study_report(tmp_path, shipped_model):
    sources = radiograph_study([radiograph(LEG), *(radiograph(path) for path in OTHERS)], BodyPartExamined="LEG")
    expected = {source.SOPInstanceUID: analyse(to_bytes(source), shipped_model, images=False).prediction
                for source in sources}
    assert expected[sources[0].SOPInstanceUID].findings, "the shipped model marks no finding on the fractured leg"
    node_port = free_port()
    with orthanc(tmp_path, node_port) as pacs:
        destination = {"FRACTURE_DICOM_DEST_HOST": "127.0.0.1", "FRACTURE_DICOM_DEST_PORT": str(pacs.dicom_port),
                       "FRACTURE_DICOM_DEST_AE_TITLE": ORTHANC_AE}
        with node(tmp_path, pacs, node_port, destination | SETTLED) as node_log:
            study = send_to_node(pacs, sources)
            found = results_in(pacs, study, scs=3)
        log_text = node_log.read_text()
    assert set(found) == {"DX", "OT", "SR"} and len(found["DX"]) == 3, log_text
    by_source = {sc.SourceImageSequence[0].ReferencedSOPInstanceUID: sc for sc in found["OT"]}
    assert set(by_source) == set(expected)  # one SC per view
    check_secondary_capture(by_source[sources[0].SOPInstanceUID], sources[0], expected[sources[0].SOPInstanceUID])
    (sr,) = found["SR"]
    check_study_report(sr, sources, expected)
    assert not any(value in log_text for value in PATIENT.values())
    assert not list((tmp_path / "queue").glob("*.dcm"))  # delivered at once: nothing waited in the outbox


@pytest.mark.skipif(DICOMWEB_PLUGIN is None, reason="Orthanc's DICOMweb plugin is not installed (make test installs "
                    "the Debian package 'orthanc-dicomweb' when it runs as root with apt-get)")
def test_the_node_delivers_by_dicomweb_stow_rs_signed_in(tmp_path, shipped_model):
    source = radiograph_dataset(radiograph(LEG), BodyPartExamined="LEG")
    expected = {source.SOPInstanceUID: analyse(to_bytes(source), shipped_model, images=False).prediction}
    node_port = free_port()
    with orthanc(tmp_path, node_port, dicomweb=True) as pacs:
        destination = {"FRACTURE_DICOMWEB_URL": f"{pacs.url}/dicom-web", "FRACTURE_DICOMWEB_USER": USER,
                       "FRACTURE_DICOMWEB_PASSWORD": PASSWORD}  # and no C-STORE destination at all
        with node(tmp_path, pacs, node_port, destination | SETTLED) as node_log:
            study = send_to_node(pacs, [source])
            found = results_in(pacs, study, scs=1)
            origins = {pacs.rest(f"/instances/{uid}/metadata/Origin").decode()
                       for s in pacs.rest(f"/studies/{study}/series") if s["MainDicomTags"]["Modality"] != "DX"
                       for uid in s["Instances"]}
        log_text = node_log.read_text()
    assert origins == {"Plugins"}, log_text  # stored through the DICOMweb plugin, not by C-STORE
    check_secondary_capture(found["OT"][0], source, expected[source.SOPInstanceUID])
    check_study_report(found["SR"][0], [source], expected)
    assert PASSWORD not in log_text and not any(value in log_text for value in PATIENT.values())


def check_same_patient_and_study(ds, source) -> None:
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                    "AccessionNumber", "StudyDate"):
        assert ds[keyword].value == source[keyword].value, keyword
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID and ds.SOPInstanceUID != source.SOPInstanceUID


def check_secondary_capture(sc, source, expected) -> None:
    assert sc.SOPClassUID == SecondaryCaptureImageStorage and sc.BurnedInAnnotation == "YES"
    check_same_patient_and_study(sc, source)
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert sc.SoftwareVersions == expected.model_version and NOT_FOR_DIAGNOSIS in sc.SeriesDescription
    pixels = sc.pixel_array
    assert pixels.ndim == 3 and pixels.shape[1] == source.Columns and pixels.shape[0] > source.Rows
    image = pixels[-source.Rows:].astype(int)  # below the burned-in band: the overlay, at the source's size
    for finding in expected.findings:  # each box's left edge is drawn in its level's colour
        colour = overlay.BOX_STYLES[finding.level][0]
        x0, y0, _x1, y1 = (round(v) for v in finding.box)
        edge = image[y0:y1, max(x0 - 2, 0):x0 + 3]
        assert (np.abs(edge - colour).max(axis=2) < 30).any(axis=1).mean() > 0.3, finding
    assert sc.Laterality == source.ImageLaterality


def check_study_report(sr, sources, expected: dict) -> None:
    """The study's verdict by the documented rule, every view cited with its own verdict, each finding on its view."""
    assert sr.SOPClassUID == ComprehensiveSRStorage and sr.VerificationFlag == "UNVERIFIED"
    check_same_patient_and_study(sr, sources[0])
    cited = [ref.ReferencedSOPInstanceUID for series in sr.CurrentRequestedProcedureEvidenceSequence[0]
             .ReferencedSeriesSequence for ref in series.ReferencedSOPSequence]
    assert sorted(cited) == sorted(expected)
    report = hd.sr.ComprehensiveSR.from_dataset(sr).content
    verdict = combine(list(expected.values()))
    (study,) = [g for g in report.get_image_measurement_groups() if g.tracking_identifier == STUDY_ASSESSMENT]
    check_verdict(study, verdict.fractured, verdict.probability)
    for source in sources:
        p = expected[source.SOPInstanceUID]
        (image,) = report.get_image_measurement_groups(referenced_sop_instance_uid=source.SOPInstanceUID)
        check_verdict(image, p.fractured, p.probability)
        comments = hd.sr.utils.find_content_items(image[0], name=codes.DCM.Comment)
        assert comments[0].value.startswith(NOT_FOR_DIAGNOSIS)
        groups = [group for group in report.get_planar_roi_measurement_groups()
                  if group.roi.ContentSequence[0].referenced_sop_instance_uid == source.SOPInstanceUID]
        assert [group.finding_type for group in groups] == [FRACTURE] * len(p.findings)
        for group, finding in zip(groups, p.findings):
            np.testing.assert_allclose(group.roi.value[[0, 2]].ravel(), finding.box, rtol=1e-6)
            (level,) = group.get_qualitative_evaluations()
            assert level.value.meaning.lower() == finding.level
            algorithm = hd.sr.utils.find_content_items(group[0], name=codes.DCM.AlgorithmVersion)
            assert [item.value for item in algorithm] == [p.model_version]


def check_verdict(group, fractured: bool, probability: float) -> None:
    (verdict,) = group.get_qualitative_evaluations()
    assert (verdict.name, verdict.value) == (FRACTURE, codes.SCT.Present if fractured else codes.SCT.Absent)
    measured = {m.name.meaning: m.value for m in group.get_measurements()}
    assert measured["Probability of fracture"] == pytest.approx(probability, abs=1e-6)

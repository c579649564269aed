"""A hospital's story with a real PACS: Orthanc holds a fractured leg's radiograph, sends it to the
DICOM node running the shipped model, and finds the node's Secondary Capture (findings boxed) and
Measurement Report (each finding a region of the radiograph) back in the same study.

Orthanc (the Debian package ``orthanc``, which ``make test`` installs when it can) runs on
free loopback ports with a temporary configuration and storage folder; the node runs as
``python -m fracture_web.dicom_node``, as in production.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import cv2
import highdicom as hd
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.sr.codedict import codes
from pydicom.uid import ComprehensiveSRStorage, SecondaryCaptureImageStorage

from fracture_web import overlay
from fracture_web.analysis import analyse
from fracture_web.dicom_node.report import FRACTURE
from fracture_web.dicom_node.results import NOT_FOR_DIAGNOSIS
from fracture_web.inference import FractureModel
from fracture_web.local_server import free_port

from helpers import ROOT, SAMPLES
from dicom_files import PATIENT, radiograph_dataset, to_bytes

ORTHANC = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin:/usr/local/sbin")
pytestmark = pytest.mark.skipif(ORTHANC is None, reason="Orthanc is not installed and could not be installed here "
                                "(make test installs the Debian package 'orthanc' when it runs as root with apt-get)")
NODE_AE, ORTHANC_AE = "FRACTURE_AI", "ORTHANC"
MODEL_DIR = ROOT / "model"
#: A radiograph on which the shipped model marks both a definite and a possible fracture.
LEG = next(path for path in SAMPLES if path.name.startswith("leg_fractured"))


def rest(base: str, path: str, data: bytes | dict | None = None) -> dict | list | bytes:
    """Call Orthanc's REST API; JSON answers are parsed."""
    body = json.dumps(data).encode() if isinstance(data, dict) else data
    request = urllib.request.Request(base + path, data=body, method="GET" if body is None else "POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        content = response.read()
        return json.loads(content) if response.headers.get_content_type() == "application/json" else content


def wait_for(check, what: str, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.5)


@contextmanager
def running(command: list[str], log: Path, env: dict[str, str] | None = None):
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def orthanc(tmp_path: Path, node_port: int):
    """Orthanc on free loopback ports with the node registered as a modality; yields its REST URL and DICOM port."""
    http_port, dicom_port = free_port(), free_port()
    config = {"Name": "fracture-test", "StorageDirectory": str(tmp_path / "storage"),
              "IndexDirectory": str(tmp_path / "storage"), "HttpPort": http_port, "DicomPort": dicom_port,
              "DicomAet": ORTHANC_AE, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
              "Plugins": [], "DicomAlwaysAllowStore": True, "StableAge": 1,
              "DicomModalities": {"fracture": [NODE_AE, "127.0.0.1", node_port]}}
    path = tmp_path / "orthanc.json"
    path.write_text(json.dumps(config))
    base = f"http://127.0.0.1:{http_port}"
    with running([ORTHANC, str(path)], tmp_path / "orthanc.log") as process:
        wait_for(lambda: process.poll() is None and rest(base, "/system"), "Orthanc to start")
        yield base, dicom_port


def test_orthanc_sends_a_radiograph_to_the_node_and_gets_sc_and_sr_back_in_the_same_study(tmp_path):
    gray = cv2.imdecode(np.frombuffer(LEG.read_bytes(), np.uint8), cv2.IMREAD_GRAYSCALE)
    source = radiograph_dataset(gray, BodyPartExamined="LEG")
    dicom = to_bytes(source)
    expected = analyse(dicom, FractureModel(MODEL_DIR), images=False).prediction
    assert expected.findings, "the shipped model marks no finding on the fractured leg"
    node_port = free_port()
    with orthanc(tmp_path, node_port) as (base, orthanc_port):
        env = os.environ | {"FRACTURE_MODEL_DIR": str(MODEL_DIR), "FRACTURE_DICOM_AE_TITLE": NODE_AE,
                            "FRACTURE_DICOM_BIND": "127.0.0.1", "FRACTURE_DICOM_PORT": str(node_port),
                            "FRACTURE_DICOM_DEST_HOST": "127.0.0.1", "FRACTURE_DICOM_DEST_PORT": str(orthanc_port),
                            "FRACTURE_DICOM_DEST_AE_TITLE": ORTHANC_AE,
                            "FRACTURE_DICOM_QUEUE_DIR": str(tmp_path / "queue")}
        node_log = tmp_path / "node.log"
        with running([sys.executable, "-m", "fracture_web.dicom_node"], node_log, env) as node:
            # Orthanc's own "test connection" (C-ECHO) tells when the node listens.
            wait_for(lambda: node.poll() is None and rest(base, "/modalities/fracture/echo", {}) is not None,
                     "the node to answer C-ECHO")
            stored = rest(base, "/instances", dicom)
            study = stored["ParentStudy"]
            rest(base, "/modalities/fracture/store", {"Resources": [stored["ID"]], "Synchronous": True})
            series = wait_for(lambda: len(found := rest(base, f"/studies/{study}/series")) == 3 and found,
                              "the SC and SR series in the study")
            by_modality = {s["MainDicomTags"]["Modality"]: instance_file(base, s) for s in series}
        log_text = node_log.read_text()
    assert set(by_modality) == {"DX", "OT", "SR"}, log_text
    check_secondary_capture(by_modality["OT"], source, expected)
    check_report(by_modality["SR"], source, expected)
    assert not any(value in log_text for value in PATIENT.values())
    assert list((tmp_path / "queue").iterdir()) == []  # delivered at once: nothing waited on disk


def instance_file(base: str, series: dict):
    """The one instance of a series, as Orthanc stored it, read with pydicom."""
    (instance,) = series["Instances"]
    return dcmread(io.BytesIO(rest(base, f"/instances/{instance}/file")))


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


def check_report(sr, source, expected) -> None:
    assert sr.SOPClassUID == ComprehensiveSRStorage and sr.VerificationFlag == "UNVERIFIED"
    check_same_patient_and_study(sr, source)
    report = hd.sr.ComprehensiveSR.from_dataset(sr).content
    (image,) = report.get_image_measurement_groups()
    (verdict,) = image.get_qualitative_evaluations()
    assert (verdict.name, verdict.value) == (FRACTURE, codes.SCT.Present if expected.fractured else codes.SCT.Absent)
    measured = {m.name.meaning: m.value for m in image.get_measurements()}
    assert measured["Probability of fracture"] == pytest.approx(expected.probability, abs=1e-6)
    comments = hd.sr.utils.find_content_items(image[0], name=codes.DCM.Comment)
    assert comments[0].value.startswith(NOT_FOR_DIAGNOSIS)
    groups = report.get_planar_roi_measurement_groups()
    assert [group.finding_type for group in groups] == [FRACTURE] * len(expected.findings)
    for group, finding in zip(groups, expected.findings):
        assert group.roi.ContentSequence[0].referenced_sop_instance_uid == source.SOPInstanceUID
        np.testing.assert_allclose(group.roi.value[[0, 2]].ravel(), finding.box, rtol=1e-6)
        (level,) = group.get_qualitative_evaluations()
        assert level.value.meaning.lower() == finding.level
        algorithm = hd.sr.utils.find_content_items(group[0], name=codes.DCM.AlgorithmVersion)
        assert [item.value for item in algorithm] == [expected.model_version]

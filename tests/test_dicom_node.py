"""The DICOM node's story without a PACS product: what it sends back for a radiograph, how it is
configured, that nothing is lost while the destination is down or the node restarts, even killed
mid-burst (pynetdicom on both ends), and how results go by DICOMweb STOW-RS (to a small HTTP server made here)."""
from __future__ import annotations

import base64
import copy
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import highdicom as hd
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.sr.codedict import codes
from pydicom.uid import ComprehensiveSRStorage, CTImageStorage, ExplicitVRLittleEndian, SecondaryCaptureImageStorage
from pynetdicom import AE

from bench.local_server import free_port, running_process
from fracture_web.analysis import analyse
from fracture_web.dicom_node import worker
from fracture_web.dicom_node.config import DicomWebDestination, NodeConfig, NodeConfigError, from_environment
from fracture_web.dicom_node.outbox import Outbox
from fracture_web.dicom_node.results import NOT_FOR_DIAGNOSIS
from fracture_web.dicom_node.server import Node, sender_for

from dicom_files import PATIENT, analysis_of, radiograph_dataset, radiograph_study, report_over, sc_of, to_bytes
from helpers import synthetic_xray, wait_until
from servers import c_store, node_answers, storage_scp

#: The calling AE title the tests' modality uses, as the node's allowed callers.
MODALITY = ("MODALITY",)


@pytest.fixture(scope="module")
def source(sample_bytes):
    """A DX radiograph as a modality sends it (no PatientAge, no StudyDescription)."""
    gray = cv2.imdecode(np.frombuffer(sample_bytes, np.uint8), cv2.IMREAD_GRAYSCALE)
    return radiograph_dataset(gray)


def results(source, model):
    """The analysis and what the node sends for a study of this one image: its SC and the study's report."""
    analysis, now = analyse(to_bytes(source), model), datetime(2026, 11, 27, 1, 2, 3)
    return analysis, [sc_of(source, analysis, now), report_over([(source, analysis)], now)]


def test_results_are_a_secondary_capture_and_a_measurement_report_in_new_series_of_the_same_study(source, model):
    analysis, (sc, sr) = results(source, model)
    assert (sc.SOPClassUID, sr.SOPClassUID) == (SecondaryCaptureImageStorage, ComprehensiveSRStorage)
    assert (sc.Modality, sr.Modality) == ("OT", "SR")
    uids = {sc.SOPInstanceUID, sr.SOPInstanceUID, sc.SeriesInstanceUID, sr.SeriesInstanceUID,
            source.SOPInstanceUID, source.SeriesInstanceUID}
    assert len(uids) == 6  # every new UID is new
    assert sc.StudyInstanceUID == sr.StudyInstanceUID == source.StudyInstanceUID
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                    "AccessionNumber", "StudyID", "ReferringPhysicianName"):
        assert sc[keyword].value == sr[keyword].value == source[keyword].value, keyword
    assert "PatientAge" not in sc and "StudyDescription" not in sr  # nothing invented
    assert results(source, model)[1][0].SOPInstanceUID == sc.SOPInstanceUID  # a resend replaces, not duplicates


def test_type_2_patient_attributes_missing_from_the_source_stay_empty(source, model):
    anonymous = copy.deepcopy(source)
    del anonymous.PatientSex, anonymous.PatientBirthDate
    _analysis, (sc, sr) = results(anonymous, model)
    assert sc.PatientSex == "" and sr.PatientBirthDate == ""


def test_the_secondary_capture_shows_the_overlay_under_a_burned_in_banner(source, model):
    analysis, (sc, _sr) = results(source, model)
    overlay = analysis.overlay
    pixels = sc.pixel_array
    assert sc.PhotometricInterpretation == "RGB" and sc.BurnedInAnnotation == "YES"
    assert pixels.shape[1] == overlay.shape[1] and pixels.shape[0] > overlay.shape[0]
    banner = pixels[:pixels.shape[0] - overlay.shape[0]]
    red, green, blue = (banner[..., i].astype(int) for i in range(3))
    amber = (red > 200) & (green > 120) & (green < 230) & (blue < 80)  # the NOT FOR DIAGNOSTIC USE line
    white = banner.min(axis=2) > 200  # verdict, probability, operating point, model
    assert amber.sum() > 100 and white.sum() > 300
    ref = sc.SourceImageSequence[0]
    assert (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) == (source.SOPClassUID, source.SOPInstanceUID)
    assert analysis.prediction.model_version in sc.SoftwareVersions


def test_the_report_states_the_models_verdict_probability_and_findings_on_the_image(source, model):
    analysis, (_sc, sr) = results(source, model)
    p = analysis.prediction
    report = hd.sr.ComprehensiveSR.from_dataset(sr).content
    (image,) = report.get_image_measurement_groups(referenced_sop_instance_uid=source.SOPInstanceUID)
    (verdict,) = image.get_qualitative_evaluations()
    assert verdict.value == (codes.SCT.Present if p.fractured else codes.SCT.Absent)
    measured = {m.name.meaning: m.value for m in image.get_measurements()}
    assert measured["Probability of fracture"] == pytest.approx(p.probability)
    assert measured["Operating point threshold"] == pytest.approx(p.threshold)
    assert [s.referenced_sop_instance_uid for s in image.source_images] == [source.SOPInstanceUID]
    comments = hd.sr.utils.find_content_items(image[0], name=codes.DCM.Comment)
    assert comments[0].value.startswith(NOT_FOR_DIAGNOSIS)
    regions = [group.roi.value for group in report.get_planar_roi_measurement_groups()]
    assert len(regions) == len(p.findings)
    for region, finding in zip(regions, p.findings):
        np.testing.assert_allclose(region[[0, 2]].ravel(), finding.box, rtol=1e-6)  # top-left, bottom-right


def test_results_are_valid_dicom_files(source, model, tmp_path):
    for ds in results(source, model)[1]:
        path = tmp_path / f"{ds.Modality}.dcm"
        ds.save_as(path, enforce_file_format=True)
        assert dcmread(path).SOPInstanceUID == ds.SOPInstanceUID


def test_the_node_is_configured_by_environment(tmp_path):
    with pytest.raises(NodeConfigError, match="FRACTURE_DICOM_DEST_HOST and FRACTURE_DICOM_DEST_AE_TITLE"):
        from_environment({})
    config = from_environment({"FRACTURE_DICOM_DEST_HOST": "pacs.local", "FRACTURE_DICOM_DEST_AE_TITLE": "PACS",
                               "FRACTURE_DICOM_DEST_PORT": "4242", "FRACTURE_DICOM_AE_TITLE": "XRAY_AI",
                               "FRACTURE_DICOM_PORT": "11113", "FRACTURE_DICOM_QUEUE_DIR": str(tmp_path)})
    assert (config.dest_host, config.dest_port, config.dest_ae_title) == ("pacs.local", 4242, "PACS")
    assert (config.ae_title, config.port, config.queue_dir) == ("XRAY_AI", 11113, tmp_path)
    assert (config.backend, config.threads) == ("auto", None)
    slim = from_environment({"FRACTURE_DICOM_DEST_HOST": "h", "FRACTURE_DICOM_DEST_AE_TITLE": "A",
                             "FRACTURE_BACKEND": "litert", "FRACTURE_THREADS": "1"})
    assert (slim.backend, slim.tflite_file, slim.threads) == ("litert", "auto", 1)
    with pytest.raises(NodeConfigError, match="^FRACTURE_DICOM_PORT takes a whole number"):
        from_environment({"FRACTURE_DICOM_DEST_HOST": "h", "FRACTURE_DICOM_DEST_AE_TITLE": "A",
                          "FRACTURE_DICOM_PORT": "eleven"})
    assert (config.settle_seconds, config.keep_studies_days, config.dicomweb) == (5.0, 7.0, None)
    settled = from_environment({"FRACTURE_DICOM_DEST_HOST": "h", "FRACTURE_DICOM_DEST_AE_TITLE": "A",
                                "FRACTURE_DICOM_SETTLE_SECONDS": "2.5", "FRACTURE_DICOM_KEEP_STUDIES_DAYS": "1"})
    assert (settled.settle_seconds, settled.keep_studies_days) == (2.5, 1.0)


def test_with_a_broker_url_the_work_goes_to_workers_which_refuse_to_start_without_one(caplog):
    pacs = {"FRACTURE_DICOM_DEST_HOST": "pacs.local", "FRACTURE_DICOM_DEST_AE_TITLE": "PACS"}
    config = from_environment(pacs | {"FRACTURE_BROKER_URL": "redis://:s3cret@broker.local:6379/0"})
    assert config.broker_url == "redis://:s3cret@broker.local:6379/0" and "s3cret" not in repr(config)
    assert from_environment(pacs).broker_url is None  # one box
    with pytest.raises(NodeConfigError, match="redis:// or rediss://"):
        from_environment(pacs | {"FRACTURE_BROKER_URL": "amqp://broker.local"})
    with pytest.raises(NodeConfigError, match="VISIBILITY_TIMEOUT must be longer"):
        from_environment(pacs | {"FRACTURE_BROKER_URL": "redis://b", "FRACTURE_BROKER_VISIBILITY_TIMEOUT": "10"})
    with caplog.at_level(logging.ERROR):
        assert worker.main(pacs) == 2
    assert "Set FRACTURE_BROKER_URL" in caplog.text


def test_results_can_go_by_dicomweb_with_a_password_or_a_token_instead_of_c_store():
    web = from_environment({"FRACTURE_DICOMWEB_URL": "https://pacs.local/dicom-web/",
                            "FRACTURE_DICOMWEB_USER": "node", "FRACTURE_DICOMWEB_PASSWORD": "s3cret"})
    assert (web.dicomweb.url, web.dicomweb.user, web.dicomweb.password) == ("https://pacs.local/dicom-web", "node",
                                                                              "s3cret")
    assert "s3cret" not in repr(web)  # a logged setting never shows the password
    token = from_environment({"FRACTURE_DICOMWEB_URL": "http://pacs:8042/dicom-web", "FRACTURE_DICOMWEB_TOKEN": "t0k"})
    assert (token.dicomweb.token, token.dicomweb.user) == ("t0k", None) and "t0k" not in repr(token)
    for env, problem in (({"FRACTURE_DICOMWEB_URL": "pacs.local"}, "http:// or https://"),
                         ({"FRACTURE_DICOMWEB_URL": "http://p", "FRACTURE_DICOMWEB_USER": "node"}, "both"),
                         ({"FRACTURE_DICOMWEB_URL": "http://p", "FRACTURE_DICOMWEB_USER": "u",
                           "FRACTURE_DICOMWEB_PASSWORD": "p", "FRACTURE_DICOMWEB_TOKEN": "t"}, "not both"),
                         ({"FRACTURE_DICOMWEB_TOKEN": "t"}, "without FRACTURE_DICOMWEB_URL")):
        with pytest.raises(NodeConfigError, match=problem):
            from_environment(env)


def test_the_disk_queue_is_private_and_keeps_order(source, tmp_path):
    outbox = Outbox(tmp_path / "queue")
    first, second = outbox.put(source), outbox.put(source)
    assert stat.S_IMODE((tmp_path / "queue").stat().st_mode) == 0o700
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    assert outbox.pending() == [first, second]
    outbox.remove(first)
    assert outbox.pending() == [second] and outbox.read(second).SOPInstanceUID == source.SOPInstanceUID



def test_results_wait_on_disk_while_the_destination_is_down_then_are_sent_and_deleted(source, model, tmp_path,
                                                                                      caplog):
    node_port, dest_port = free_port(), free_port()
    config = NodeConfig(dest_host="127.0.0.1", dest_port=dest_port, dest_ae_title="DEST", bind="127.0.0.1",
                        allowed_ae_titles=MODALITY, port=node_port, queue_dir=tmp_path / "queue", retries=2,
                        retry_delay=0.1, resend_interval=0.5, settle_seconds=0.2)
    node = Node(config, model)
    node.start()
    try:
        with caplog.at_level(logging.INFO):
            assert c_store(node_port, source) == 0x0000  # the destination is down: nothing listens there
            wait_until(lambda: len(node.outbox.pending()) == 2)
            assert stat.S_IMODE(config.queue_dir.stat().st_mode) == 0o700
            with storage_scp(dest_port) as received:  # the destination comes back
                wait_until(lambda: len(received) == 2 and not node.outbox.pending())
    finally:
        node.stop()
    assert {ds.SOPClassUID for ds in received} == {SecondaryCaptureImageStorage, ComprehensiveSRStorage}
    assert all(ds.StudyInstanceUID == source.StudyInstanceUID for ds in received)
    assert [path.name for path in config.queue_dir.iterdir()] == ["studies"]  # the queue is empty
    assert not any(path.suffix == ".dcm" for path in config.studies_dir.rglob("*"))  # only readings for late views
    assert "retrying in 0.1 s" in caplog.text and "queued" in caplog.text
    assert not any(value in caplog.text for value in PATIENT.values())


def test_non_radiographs_are_accepted_and_ignored(source, model, tmp_path, caplog):
    node_port, dest_port = free_port(), free_port()
    config = NodeConfig(dest_host="127.0.0.1", dest_port=dest_port, dest_ae_title="DEST", bind="127.0.0.1",
                        allowed_ae_titles=MODALITY, port=node_port, queue_dir=tmp_path / "queue", retry_delay=0.1,
                        settle_seconds=0.2)
    ct = copy.deepcopy(source)
    ct.SOPClassUID, ct.Modality = CTImageStorage, "CT"
    node = Node(config, model)
    node.start()
    try:
        with storage_scp(dest_port) as received, caplog.at_level(logging.INFO):
            assert c_store(node_port, ct) == 0x0000
            assert c_store(node_port, source) == 0x0000
            wait_until(lambda: len(received) == 2)
    finally:
        node.stop()
    assert "ignored a CT Image Storage instance: not a radiograph" in caplog.text
    assert all(ds.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
               for ds in received if ds.Modality == "OT")


def test_a_study_received_before_a_restart_is_reported_after_it(sample_bytes, model, tmp_path):
    gray = cv2.imdecode(np.frombuffer(sample_bytes, np.uint8), cv2.IMREAD_GRAYSCALE)
    views = radiograph_study([gray, cv2.flip(gray, 1)])
    dest_port = free_port()
    config = NodeConfig(dest_host="127.0.0.1", dest_port=dest_port, dest_ae_title="DEST", bind="127.0.0.1",
                        allowed_ae_titles=MODALITY, port=free_port(), queue_dir=tmp_path / "queue", retry_delay=0.1,
                        settle_seconds=3600)
    before = Node(config, model)
    before.start()
    try:
        assert [c_store(config.port, view) for view in views] == [0x0000, 0x0000]
    finally:
        before.stop()  # the node stops while the study settles: both views were acknowledged
    after = Node(replace(config, port=free_port(), settle_seconds=0.2), model)
    with storage_scp(dest_port) as received:
        after.start()
        try:
            wait_until(lambda: len(received) == 3)
        finally:
            after.stop()
    (sr,) = [ds for ds in received if ds.SOPClassUID == ComprehensiveSRStorage]
    cited = [ref.ReferencedSOPInstanceUID for series in sr.CurrentRequestedProcedureEvidenceSequence[0]
             .ReferencedSeriesSequence for ref in series.ReferencedSOPSequence]
    assert sorted(cited) == sorted(view.SOPInstanceUID for view in views)
    assert sorted(ds.SourceImageSequence[0].ReferencedSOPInstanceUID for ds in received if ds.Modality == "OT") == \
        sorted(cited)


@contextmanager
def dicomweb_server(answers: list[tuple[int, dict | None]]):
    """A DICOMweb server on a free loopback port that answers each STOW-RS request with the next
    (status, DICOM JSON) of ``answers``; yields its URL and the requests it got (path, headers, body)."""
    got = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            got.append((self.path, dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
            status, answer = answers[len(got) - 1]
            body = json.dumps(answer).encode() if answer is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/dicom-web", got
    finally:
        server.shutdown()
        server.server_close()


def stow_answer(ds, failed: bool = False) -> dict:
    """A STOW-RS answer listing the instance as stored, or as not stored (Failed SOP Sequence)."""
    item = {"00081150": {"vr": "UI", "Value": [ds.SOPClassUID]}, "00081155": {"vr": "UI", "Value": [ds.SOPInstanceUID]}}
    if failed:
        return {"00081198": {"vr": "SQ", "Value": [item | {"00081197": {"vr": "US", "Value": [0xA700]}}]}}
    return {"00081199": {"vr": "SQ", "Value": [item]}}


@pytest.fixture(scope="module")
def small_report():
    """A study report made without a model: small enough to post in one piece."""
    source = radiograph_dataset(np.full((64, 48), 90, np.uint8))
    return report_over([(source, analysis_of(source, False, (), display_max_side=32))], datetime(2026, 11, 28))


def test_stow_rs_sends_the_token_and_retries_until_every_instance_is_stored(small_report, caplog):
    answers = [(503, None), (200, stow_answer(small_report, failed=True)), (200, stow_answer(small_report))]
    with dicomweb_server(answers) as (url, got), caplog.at_level(logging.WARNING):
        config = NodeConfig(dicomweb=DicomWebDestination(url, token="t0k"), retries=3, retry_delay=0.01)
        assert sender_for(config).send([small_report])
    assert len(got) == 3 and {path for path, _headers, _body in got} == {"/dicom-web/studies"}
    assert all(headers["Authorization"] == "Bearer t0k" for _path, headers, _body in got)
    assert got[0][1]["Content-Type"].startswith('multipart/related; type="application/dicom"')
    assert str(small_report.SOPInstanceUID).encode() in got[0][2]
    assert "503 Server Error" in caplog.text and "1 of 1 instances not stored" in caplog.text
    assert "t0k" not in caplog.text


def test_stow_rs_signs_in_with_user_and_password_and_gives_up_after_the_retries(small_report, caplog):
    with dicomweb_server([(401, None), (401, None)]) as (url, got), caplog.at_level(logging.WARNING):
        config = NodeConfig(dicomweb=DicomWebDestination(url, "node", "s3cret"), retries=2, retry_delay=0.01)
        assert not sender_for(config).send([small_report])  # the node then queues the results on disk
    assert len(got) == 2 and got[0][1]["Authorization"] == "Basic " + base64.b64encode(b"node:s3cret").decode()
    assert "401 Client Error" in caplog.text and "s3cret" not in caplog.text


def test_warnings_reach_the_image_and_the_report(source, model):
    from fracture_web.dicom import UNSTATED_WARNING

    unstated = copy.deepcopy(source)
    unstated.Modality = "OT"
    (plain_sc, _), (warned_sc, warned_sr) = results(source, model)[1], results(unstated, model)[1]
    assert warned_sc.Rows > plain_sc.Rows  # the warning is burned in under the summary
    (image,) = hd.sr.ComprehensiveSR.from_dataset(warned_sr).content.get_image_measurement_groups(
        referenced_sop_instance_uid=unstated.SOPInstanceUID)
    comments = hd.sr.utils.find_content_items(image[0], name=codes.DCM.Comment)
    assert UNSTATED_WARNING in [item.value for item in comments]


def test_the_node_refuses_to_start_without_a_destination_and_says_which_setting_is_missing():
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRACTURE_DICOM_")}
    done = subprocess.run([sys.executable, "-m", "fracture_web.dicom_node"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert "cannot start" in done.stderr and "FRACTURE_DICOM_DEST_HOST" in done.stderr


def send_until_refused(port: int, datasets, acknowledged: list) -> None:
    """Send the datasets one by one as a modality does, noting each the node acknowledged, until it stops answering."""
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(datasets[0].SOPClassUID, ExplicitVRLittleEndian)
    for ds in datasets:
        assoc = ae.associate("127.0.0.1", port, ae_title="FRACTURE_AI")
        if not assoc.is_established:
            return
        status = assoc.send_c_store(ds)
        if assoc.is_established:
            assoc.release()
        if getattr(status, "Status", None) != 0x0000:
            return
        acknowledged.append(ds.SOPInstanceUID)


def test_a_node_killed_mid_burst_without_a_broker_loses_nothing_it_acknowledged(tiny_model_dir, tmp_path):
    rng = np.random.default_rng(7)
    views = radiograph_study([synthetic_xray(rng, crack=i % 3 == 0, size=(320, 256)) for i in range(24)])
    node_port, dest_port = free_port(), free_port()
    env = os.environ | {"FRACTURE_MODEL_DIR": str(tiny_model_dir), "FRACTURE_DICOM_DEST_HOST": "127.0.0.1",
                        "FRACTURE_DICOM_DEST_PORT": str(dest_port), "FRACTURE_DICOM_DEST_AE_TITLE": "DEST",
                        "FRACTURE_DICOM_BIND": "127.0.0.1", "FRACTURE_DICOM_PORT": str(node_port),
                        "FRACTURE_DICOM_QUEUE_DIR": str(tmp_path / "queue"), "FRACTURE_DICOM_SETTLE_SECONDS": "1",
                        "FRACTURE_DICOM_ALLOWED_AE_TITLES": "MODALITY"}
    acknowledged: list = []
    command = [sys.executable, "-m", "fracture_web.dicom_node"]
    with storage_scp(dest_port) as received:
        with running_process(command, tmp_path / "first.log", env) as first:
            wait_until(lambda: node_answers(node_port), timeout=120)
            burst = threading.Thread(target=send_until_refused, args=(node_port, views, acknowledged))
            burst.start()
            wait_until(lambda: len(acknowledged) >= 3)
            os.kill(first.pid, signal.SIGKILL)  # mid-burst, with no warning
            burst.join(timeout=60)
        assert 3 <= len(acknowledged) < len(views)
        with running_process(command, tmp_path / "second.log", env):
            wait_until(lambda: node_answers(node_port), timeout=120)
            rest = [view for view in views if view.SOPInstanceUID not in acknowledged]
            send_until_refused(node_port, rest, acknowledged)  # the modality resends what was not acknowledged
            wait_until(lambda: {ds.SourceImageSequence[0].ReferencedSOPInstanceUID for ds in received
                              if ds.Modality == "OT"} == {view.SOPInstanceUID for view in views}, timeout=120)
    assert sorted(acknowledged) == sorted(view.SOPInstanceUID for view in views)
    assert any(ds.SOPClassUID == ComprehensiveSRStorage for ds in received)


def test_each_radiograph_the_node_reads_is_counted_in_its_metrics_served_on_its_port(source, model):
    from prometheus_client import REGISTRY

    from fracture_web.dicom_node.radiograph import read_radiograph
    from fracture_web.metrics import DriftMonitor

    drift = DriftMonitor.for_model(model, 4)
    before = {label: REGISTRY.get_sample_value("fracture_verdicts_total", {"label": label, "operating_point":
                                                                           model.default_operating_point}) or 0
              for label in model.labels}
    prediction = read_radiograph(source, model, None, drift).prediction
    after = REGISTRY.get_sample_value("fracture_verdicts_total", {"label": prediction.label,
                                                                  "operating_point": prediction.operating_point})
    assert after == before[prediction.label] + 1
    assert REGISTRY.get_sample_value("fracture_fractured_share_recent") == float(prediction.fractured)
    config = from_environment({"FRACTURE_DICOM_DEST_HOST": "pacs", "FRACTURE_DICOM_DEST_AE_TITLE": "PACS",
                               "FRACTURE_DICOM_METRICS_PORT": "9101"})
    assert config.metrics_port == 9101

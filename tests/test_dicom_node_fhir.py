"""A site whose EMR takes FHIR sets ``FRACTURE_FHIR_URL``: each study the node reports on also reaches
the EMR's FHIR server as one valid R4 report citing the study and its images, and a FHIR server that
is down or refuses a report loses nothing and holds up nothing."""
from __future__ import annotations

import sys
from datetime import datetime

import cv2
import numpy as np
import pytest
from fhir.resources.R4B.bundle import Bundle
from pydicom.uid import ComprehensiveSRStorage

from bench.local_server import free_port, running_process
from fracture_web.dicom_node.config import NodeConfig, NodeConfigError, from_environment
from fracture_web.dicom_node.fhir_report import study_bundle
from fracture_web.dicom_node.readings import Reading
from fracture_web.dicom_node.server import Node
from fracture_web.findings import Finding
from fracture_web.inference import Prediction

from dicom_files import PATIENT, radiograph_study
from helpers import wait_until
from servers import REDIS, c_store_all, fhir_server, node_env, redis_server, storage_scp, wait_for

MODALITY = ("MODALITY",)
NOW = datetime(2026, 12, 6, 3, 4, 5)


@pytest.fixture(scope="module")
def views(sample_bytes):
    """Two views of one study, as a modality sends them."""
    gray = cv2.imdecode(np.frombuffer(sample_bytes, np.uint8), cv2.IMREAD_GRAYSCALE)
    return radiograph_study([gray, cv2.flip(gray, 1)])


def node_config(tmp_path, fhir_url: str, **settings) -> NodeConfig:
    return NodeConfig(dest_host="127.0.0.1", dest_port=free_port(), dest_ae_title="DEST", bind="127.0.0.1",
                      allowed_ae_titles=MODALITY, port=free_port(), queue_dir=tmp_path / "queue", retry_delay=0.1,
                      resend_interval=0.3, settle_seconds=0.3, fhir_url=fhir_url, **settings)


@pytest.fixture()
def running(model):
    """Start a node with these settings; stopped after the test."""
    nodes = []

    def start(config: NodeConfig) -> Node:
        nodes.append(Node(config, model))
        nodes[-1].start()
        return nodes[-1]

    yield start
    for node in nodes:
        node.stop()


def resources(bundle: dict, kind: str) -> list[dict]:
    return [entry["resource"] for entry in bundle["entry"] if entry["resource"]["resourceType"] == kind]


def observations(bundle: dict) -> dict[str, dict]:
    return {entry["fullUrl"]: entry["resource"] for entry in bundle["entry"]
            if entry["resource"]["resourceType"] == "Observation"}


def parts(observation: dict) -> dict[str, dict]:
    return {c["code"]["coding"][0]["code"]: c for c in observation["component"]}


def test_the_fhir_server_gets_one_valid_transaction_per_study_citing_its_images(views, running, tmp_path):
    with fhir_server() as emr:
        config = node_config(tmp_path, emr.url)
        with storage_scp(config.dest_port) as pacs:
            node = running(config)
            assert c_store_all(config.port, views) == [0x0000, 0x0000]
            wait_until(lambda: len(pacs) == 3 and emr.received)
    [bundle] = emr.received  # the server validated every resource in it before keeping it
    assert emr.paths == ["/fhir"] and emr.headers[0]["Content-Type"] == "application/fhir+json"
    assert bundle["type"] == "transaction"
    [report] = resources(bundle, "DiagnosticReport")
    [sr] = [ds for ds in pacs if ds.SOPClassUID == ComprehensiveSRStorage]
    # the FHIR report is the SR's twin: identified by its UID, replacing an earlier one of the study
    assert report["identifier"][0]["value"] == f"urn:oid:{sr.SOPInstanceUID}"
    [request] = [entry["request"] for entry in bundle["entry"] if entry["resource"] is report]
    assert request == {"method": "PUT",
                       "url": f"DiagnosticReport?identifier=urn:dicom:uid|urn:oid:{sr.SOPInstanceUID}"}
    assert report["imagingStudy"][0]["identifier"]["value"] == f"urn:oid:{views[0].StudyInstanceUID}"
    assert report["basedOn"][0]["identifier"]["value"] == views[0].AccessionNumber
    per_view = [o for o in observations(bundle).values() if "identifier" in o]
    assert [parts(o)["121112"]["valueString"] for o in per_view] == [f"urn:oid:{v.SOPInstanceUID}" for v in views]
    assert "subject" not in report and not any(value in str(bundle) for value in PATIENT.values())
    assert not list(node.config.fhir_dir.iterdir())  # nothing waits


@pytest.mark.skipif(REDIS is None, reason="redis-server is not installed and could not be installed here (make "
                    "test installs the Debian package 'redis-server' when it runs as root with apt-get)")
def test_with_a_broker_a_worker_posts_the_report_retrying_while_the_fhir_server_is_down(views, tmp_path):
    node_port, dest_port = free_port(), free_port()
    with redis_server(tmp_path) as broker, fhir_server(down_for=1) as emr, storage_scp(dest_port) as pacs:
        env = node_env(tmp_path, node_port, {
            "FRACTURE_BROKER_URL": broker, "FRACTURE_FHIR_URL": emr.url, "FRACTURE_DICOM_DEST_HOST": "127.0.0.1",
            "FRACTURE_DICOM_DEST_PORT": str(dest_port), "FRACTURE_DICOM_DEST_AE_TITLE": "DEST",
            "FRACTURE_DICOM_SETTLE_SECONDS": "1", "FRACTURE_DICOM_RETRY_DELAY": "0.2",
            "FRACTURE_DICOM_RESEND_INTERVAL": "1", "FRACTURE_THREADS": "1"})
        with running_process([sys.executable, "-m", "fracture_web.dicom_node"], tmp_path / "node.log", env), \
                running_process([sys.executable, "-m", "fracture_web.dicom_node.worker"], tmp_path / "worker.log", env):
            wait_for(lambda: "listening" in (tmp_path / "node.log").read_text(), "the node to listen")
            assert c_store_all(node_port, views) == [0x0000, 0x0000]
            wait_for(lambda: emr.received and len(pacs) == 3, "the results and the FHIR report", timeout=300)
    assert len(emr.paths) == 2  # refused once (503), then filed
    [report] = resources(emr.received[0], "DiagnosticReport")
    [sr] = [ds for ds in pacs if ds.SOPClassUID == ComprehensiveSRStorage]
    assert report["identifier"][0]["value"] == f"urn:oid:{sr.SOPInstanceUID}"
    assert "fracture.deliver_fhir" in (tmp_path / "worker.log").read_text()


def finding_reading(view, findings: tuple[Finding, ...]) -> Reading:
    p = Prediction("Fractured", True, 0.9, 0.5, "balanced", "2026.1", np.zeros((1, 1), np.float32),
                   findings=findings)
    return Reading.of(view, p, ("Low contrast",), 1.0)


def test_each_views_findings_are_observations_with_their_boxes_on_that_view(views):
    boxed = (Finding((10.0, 20.0, 110.0, 220.0), 0.93, "definite"), Finding((30.0, 40.0, 50.0, 90.0), 0.41,
                                                                           "possible"))
    readings = [finding_reading(views[0], boxed), finding_reading(views[1], ())]
    bundle = Bundle.model_validate_json(study_bundle(readings, NOW)).model_dump(mode="json", exclude_none=True)
    found = observations(bundle)
    first, second = [o for o in found.values() if "identifier" in o]
    assert "hasMember" not in second and first["note"] == [{"text": "Low contrast"}]
    members = [found[member["reference"]] for member in first["hasMember"]]
    for member, finding in zip(members, boxed, strict=True):
        box = [parts(member)[f"box-{corner}"]["valueQuantity"]["value"] for corner in ("x0", "y0", "x1", "y1")]
        assert box == list(finding.box) and parts(member)["finding-level"]["valueCodeableConcept"][
            "coding"][0]["code"] == finding.level


def test_a_fhir_server_that_is_down_gets_the_report_when_it_is_back(views, running, tmp_path):
    with fhir_server(down_for=2) as emr:
        config = node_config(tmp_path, emr.url)
        with storage_scp(config.dest_port) as pacs:
            node = running(config)
            assert c_store_all(config.port, views[:1]) == [0x0000]
            wait_until(lambda: len(pacs) == 2 and len(emr.paths) >= 1)
            wait_until(lambda: emr.received)
            wait_until(lambda: not node.fhir_outbox.pending())
    assert len(emr.paths) == 3 and len(emr.received) == 1
    assert not node.dead_letters.items()


def test_a_report_the_fhir_server_keeps_refusing_is_set_aside_and_the_next_study_still_goes(views, running,
                                                                                            tmp_path, sample_bytes):
    gray = cv2.imdecode(np.frombuffer(sample_bytes, np.uint8), cv2.IMREAD_GRAYSCALE)
    [other] = radiograph_study([gray])
    with fhir_server(refuse_studies=frozenset({views[0].StudyInstanceUID})) as emr:
        config = node_config(tmp_path, emr.url, dead_letter_after=2)
        with storage_scp(config.dest_port) as pacs:
            node = running(config)
            assert c_store_all(config.port, views[:1]) == [0x0000]
            wait_until(lambda: node.dead_letters.items())
            assert c_store_all(config.port, [other]) == [0x0000]
            wait_until(lambda: emr.received and len(pacs) == 4)
    [refused] = node.dead_letters.items()
    assert refused.suffix == ".json" and "-refused-" in refused.name
    assert Bundle.model_validate_json(refused.read_text()).type == "transaction"  # kept whole, to send again
    [delivered] = emr.received
    [report] = resources(delivered, "DiagnosticReport")
    assert report["imagingStudy"][0]["identifier"]["value"] == f"urn:oid:{other.StudyInstanceUID}"


def test_the_fhir_server_is_a_setting_with_an_optional_token_never_shown():
    pacs = {"FRACTURE_DICOM_DEST_HOST": "pacs.local", "FRACTURE_DICOM_DEST_AE_TITLE": "PACS"}
    assert from_environment(pacs).fhir_url is None  # off unless set
    config = from_environment(pacs | {"FRACTURE_FHIR_URL": "https://emr.local/fhir",
                                      "FRACTURE_FHIR_TOKEN": "t0k3n"})
    assert (config.fhir_url, config.fhir_token) == ("https://emr.local/fhir", "t0k3n") and "t0k3n" not in repr(config)
    with pytest.raises(NodeConfigError, match="FRACTURE_FHIR_URL.*http:// or https://"):
        from_environment(pacs | {"FRACTURE_FHIR_URL": "emr.local"})
    with pytest.raises(NodeConfigError, match="FRACTURE_FHIR_TOKEN is set without FRACTURE_FHIR_URL"):
        from_environment(pacs | {"FRACTURE_FHIR_TOKEN": "t0k3n"})

"""A PACS-side reader's story: the DICOM node's result (a Secondary Capture) arrives in the PACS; the
reader's answer for it, sent with the result's SOP Instance UID, is counted like a read on the page,
because the node keeps its results' analyses in the same database as the web app."""
from __future__ import annotations

import numpy as np
from pydicom.uid import SecondaryCaptureImageStorage

from bench.local_server import free_port
from dicom_files import PATIENT, radiograph_dataset
from fracture_web import create_app
from fracture_web.dicom_node.config import NodeConfig
from fracture_web.dicom_node.server import Node
from fracture_web.inference import FractureModel
from fracture_web.web.reads import KEY
from helpers import synthetic_xray, wait_until
from servers import SHIPPED_MODEL, c_store, storage_scp


def test_a_read_sent_with_the_node_results_uid_is_counted_on_the_site_page(tmp_path, caplog):
    database = f"sqlite:///{tmp_path / 'reads.sqlite3'}"
    node_port, dest_port = free_port(), free_port()
    config = NodeConfig(dest_host="127.0.0.1", dest_port=dest_port, dest_ae_title="DEST", bind="127.0.0.1",
                        allowed_ae_titles=("MODALITY",), port=node_port, queue_dir=tmp_path / "queue",
                        retry_delay=0.1, settle_seconds=0.2, database_url=database)
    source = radiograph_dataset(synthetic_xray(np.random.default_rng(3), crack=True), BodyPartExamined="WRIST")
    node = Node(config, FractureModel(SHIPPED_MODEL, backend="litert"))
    node.start()
    try:
        with storage_scp(dest_port) as received:
            assert c_store(node_port, source) == 0x0000
            wait_until(lambda: any(ds.SOPClassUID == SecondaryCaptureImageStorage for ds in received))
    finally:
        node.stop()
    (result,) = [ds for ds in received if ds.SOPClassUID == SecondaryCaptureImageStorage]

    app = create_app({"TESTING": True, "DATABASE_URL": database})
    client = app.test_client()
    sent = client.post("/api/v1/reads", json={"request_id": result.SOPInstanceUID, "read": "fractured"})
    assert sent.status_code == 200, sent.get_json()
    stored = client.get(f"/api/v1/analyses/{result.SOPInstanceUID}").get_json()
    assert stored["source"] == "dicom" and stored["body_part"] == "WRIST" and stored["read"] == "fractured"
    assert stored["model_version"] == result.SoftwareVersions
    page = client.get("/site").get_data(as_text=True)
    assert 'class="read-count">1<' in page and 'data-part="WRIST"' in page
    app.extensions[KEY].dispose()
    assert not any(value in caplog.text for value in PATIENT.values())


def test_with_the_database_down_the_node_still_sends_its_results(tmp_path):
    node_port, dest_port = free_port(), free_port()
    config = NodeConfig(dest_host="127.0.0.1", dest_port=dest_port, dest_ae_title="DEST", bind="127.0.0.1",
                        allowed_ae_titles=("MODALITY",), port=node_port, queue_dir=tmp_path / "queue",
                        retry_delay=0.1, settle_seconds=0.2,
                        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")  # nothing listens
    node = Node(config, FractureModel(SHIPPED_MODEL, backend="litert"))
    node.start()
    try:
        with storage_scp(dest_port) as received:
            assert c_store(node_port, radiograph_dataset(synthetic_xray(np.random.default_rng(4), crack=False))) == 0
            wait_until(lambda: len(received) == 2)  # the Secondary Capture and the study's report
    finally:
        node.stop()

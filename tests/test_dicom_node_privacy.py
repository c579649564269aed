"""A modality sends the node ordinary studies with untidy headers (an ISO birth date, a one-word
name, a sex spelt out) and a few hostile ones (a patient name sent as a number, a frame count that
is a word): the node answers each, keeps serving, and its log (stdout and stderr of the real
process, ``python -m fracture_web.dicom_node``) quotes none of the patients' values."""
from __future__ import annotations

import sys
import time

import numpy as np
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.uid import ComprehensiveSRStorage, ExplicitVRLittleEndian
from pynetdicom import AE

from bench.local_server import free_port, running_process
from dicom_files import radiograph_dataset
from helpers import synthetic_xray, wait_until
from servers import node_answers, node_env, storage_scp

MARK = "ZZLEAK"  # in every patient value: none may show in the log


def patient(n: int, **elements):
    """A radiograph of patient ``n`` whose patient values all carry ``MARK``."""
    pixels = synthetic_xray(np.random.default_rng(n), crack=False, size=(400, 320))
    values = {"PatientName": f"{MARK}Doe^Jane{n}", "PatientID": f"{MARK}ID{n}"} | elements
    return radiograph_dataset(pixels, **values)


def with_raw(ds, keyword: str, vr: str, value: bytes):
    """``ds`` with one element as a hostile sender writes it: any VR, any bytes."""
    tag = Tag(tag_for_keyword(keyword))
    value += b" " * (len(value) % 2)
    ds._dict[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)
    return ds


def answers(port: int, datasets: list) -> list[tuple[int | None, str]]:
    """C-STORE each dataset on one association; each answer's status and Error Comment."""
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(datasets[0].SOPClassUID, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="FRACTURE_AI")
    assert assoc.is_established
    try:
        statuses = [assoc.send_c_store(ds) for ds in datasets]
        return [(status.get("Status"), str(status.get("ErrorComment", ""))) for status in statuses]
    finally:
        assoc.release()


def test_untidy_and_hostile_headers_are_answered_and_none_of_their_values_reach_the_node_log(tmp_path):
    node_port, dest_port, log = free_port(), free_port(), tmp_path / "node.log"
    settings = {"FRACTURE_DICOM_DEST_HOST": "127.0.0.1", "FRACTURE_DICOM_DEST_PORT": str(dest_port),
                "FRACTURE_DICOM_DEST_AE_TITLE": "DEST", "FRACTURE_DICOM_SETTLE_SECONDS": "0.5",
                "FRACTURE_DICOM_RETRIES": "1", "FRACTURE_DICOM_RETRY_DELAY": "0.1"}
    untidy = patient(1, PatientName=f"{MARK}SOLO", PatientBirthDate="1970-01-01", PatientSex="female",
                     PatientAge=f"{MARK}AGE")
    hostile = [with_raw(patient(2), "PatientName", "DS", f"{MARK}DS".encode()),
               with_raw(patient(3), "StudyDescription", "IS", f"{MARK}IS".encode()),
               with_raw(patient(4), "NumberOfFrames", "IS", b"abc")]
    last = patient(5)
    with storage_scp(dest_port) as received, \
            running_process([sys.executable, "-m", "fracture_web.dicom_node"], log,
                            node_env(tmp_path, node_port, settings)):
        wait_until(lambda: node_answers(node_port), timeout=180)
        assert answers(node_port, [untidy])[0][0] == 0x0000
        refused = answers(node_port, hostile)
        assert [status for status, _ in refused] == [0xC000] * 3  # a failure with a reason, not pynetdicom's 0xC211
        assert all(comment and MARK not in comment for _, comment in refused)
        assert answers(node_port, [last])[0][0] == 0x0000  # the node keeps serving
        reported = {untidy.StudyInstanceUID, last.StudyInstanceUID}  # the untidy study gets its report too
        wait_until(lambda: reported <= {ds.StudyInstanceUID for ds in received
                                        if ds.SOPClassUID == ComprehensiveSRStorage}, timeout=60)
        time.sleep(0.5)  # let the log catch up
    text = log.read_text(errors="replace")
    assert "withheld" in text  # that pydicom or highdicom had something to say stays in the log
    for value in (MARK, "1970-01-01", "female", "Traceback"):
        assert value not in text, value

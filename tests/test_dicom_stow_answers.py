"""A result sent by STOW-RS counts as delivered only when the DICOMweb server says it stored it.

A site puts its DICOMweb server behind an auth proxy, or the server answers with a charset in its
media type, a login page, a redirect, an empty body, or lists another instance. None of these stored
the result: the node must keep it (retry, then the dead letter), never mark it sent and forget it.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler

import numpy as np
import pytest

from fracture_web.dicom_node.config import DicomWebDestination, NodeConfig
from fracture_web.dicom_node.destinations import sender_for

from dicom_files import analysis_of, radiograph_dataset, report_over
from servers import serving

DICOM_JSON = "application/dicom+json"
LOGIN_PAGE = b"<html><body>Please sign in</body></html>"


@pytest.fixture(scope="module")
def report():
    """A small study report (made without a model) to send."""
    source = radiograph_dataset(np.full((64, 48), 90, np.uint8))
    return report_over([(source, analysis_of(source, False, (), display_max_side=32))], datetime(2026, 11, 28))


def stored(uid: str, sop_class: str, failed: bool = False) -> bytes:
    """A STOW-RS answer listing ``uid`` as stored (Referenced SOP Sequence) or as failed."""
    item = {"00081150": {"vr": "UI", "Value": [sop_class]}, "00081155": {"vr": "UI", "Value": [uid]}}
    if failed:
        return json.dumps({"00081198": {"vr": "SQ", "Value": [item | {"00081197": {"vr": "US", "Value": [0xA700]}}]}
                           }).encode()
    return json.dumps({"00081199": {"vr": "SQ", "Value": [item]}}).encode()


@contextmanager
def dicomweb_server(status: int, content_type: str | None, body: bytes):
    """A DICOMweb server that answers every STOW-RS post with (status, content type, body); a 3xx
    sends the client to ``/login``, whose GET is a login page. Yields its URL and the methods it got."""
    methods: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            methods.append("GET")
            self._answer(200, "text/html", LOGIN_PAGE)

        def do_POST(self):
            methods.append("POST")
            self.rfile.read(int(self.headers["Content-Length"]))
            self._answer(status, content_type, body)

        def _answer(self, code: int, kind: str | None, data: bytes) -> None:
            self.send_response(code)
            if 300 <= code < 400:
                self.send_header("Location", "/login")
            if kind:
                self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    with serving(Handler) as server:
        yield f"http://127.0.0.1:{server.server_port}/dicom-web", methods


def send_to(url: str, report):
    """One STOW-RS attempt of the node's sender: None when it counts the report as stored."""
    return sender_for(NodeConfig(dicomweb=DicomWebDestination(url), retries=1, retry_delay=0.01)).attempt([report])


NOT_STORED = {
    "failed, with a charset in the media type": lambda r: (200, f"{DICOM_JSON}; charset=utf-8",
                                                           stored(r.SOPInstanceUID, r.SOPClassUID, failed=True)),
    "an auth proxy's login page": lambda r: (200, "text/html", LOGIN_PAGE),
    "a redirect to the login page": lambda r: (302, None, b""),
    "an empty answer": lambda r: (200, DICOM_JSON, b""),
    "another instance stored": lambda r: (200, DICOM_JSON, stored("1.2.3.4", r.SOPClassUID)),
    "DICOM JSON that is not JSON": lambda r: (200, DICOM_JSON, b"{not json"),
    "202 with the instance failed": lambda r: (202, DICOM_JSON, stored(r.SOPInstanceUID, r.SOPClassUID, True)),
}


@pytest.mark.parametrize("answer", list(NOT_STORED))
def test_a_report_the_dicomweb_server_did_not_store_is_kept_to_send_again_and_counts_toward_the_dead_letter(
        report, answer):
    with dicomweb_server(*NOT_STORED[answer](report)) as (url, methods):
        failure = send_to(url, report)
    assert failure is not None, f"{answer}: taken as stored"
    assert failure.counts, f"{answer}: taken as 'not reached', retried forever and never set aside"
    assert methods == ["POST"], "a redirect is not followed"


@pytest.mark.parametrize("status, content_type", [(200, f"{DICOM_JSON}; charset=utf-8"), (202, DICOM_JSON),
                                                  (200, "application/json")])
def test_a_report_the_server_lists_as_stored_counts_as_delivered_whatever_the_media_type_parameters(
        report, status, content_type):
    with dicomweb_server(status, content_type, stored(report.SOPInstanceUID, report.SOPClassUID)) as (url, _):
        assert send_to(url, report) is None

"""A study's report as FHIR R4 for an EMR (``FRACTURE_FHIR_URL``), beside its DICOM SR.

The same report the web API answers in FHIR (:mod:`fracture_web.fhir`): the study's verdict, its
probability and threshold, one observation per view with its findings and their boxes, the device;
it cites the study by Study Instance UID and the order by accession number, and is identified by
the SR's SOP Instance UID. It goes to the FHIR server as a transaction Bundle posted to the base
URL (:func:`fracture_web.fhir.transaction`: what FHIR servers take to file several resources at
once; the report replaces an earlier one of the same study). What cannot be sent waits in the
node's FHIR outbox, or as a task's retry with a broker, and what the server keeps refusing goes
to the dead letter, as the DICOM results do.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

import requests
from pydicom import Dataset
from pydicom.multival import MultiValue

from .. import fhir
from .config import NodeConfig
from .report import image_assessment_uid, report_uid
from .readings import Reading
from .sender import Failure
from .stow import NOT_A_REFUSAL, TIMEOUT


def study_bundle(readings: Sequence[Reading], now: datetime) -> str:
    """The transaction Bundle (JSON) of a study's report over its readings (in order of arrival)."""
    first = readings[0].source
    views = [fhir.DicomView(str(r.source.SOPInstanceUID), image_assessment_uid(r), r.prediction, r.warnings)
             for r in readings]
    bundle = fhir.dicom_study_bundle(str(first.StudyInstanceUID), accession_of(first), report_uid(readings), views,
                                     now.astimezone())
    return fhir.transaction(bundle).model_dump_json(exclude_none=True)


def accession_of(source: Dataset) -> str | None:
    """The study's accession number, None when it has none; of several (``A1\\A2``, one study filling
    several orders) the first, since an identifier holds one value."""
    value = source.get("AccessionNumber")
    if isinstance(value, MultiValue):
        value = next((item for item in value if item), None)
    return str(value).strip() or None if value else None


def name_of(bundle: str) -> str:
    """A file name for a bundle in the outbox or the dead letter that reveals nothing of it."""
    return hashlib.sha256(bundle.encode()).hexdigest()[:40]


class FhirSender:
    """Posts transaction Bundles to the FHIR server's base URL."""

    kind = "fhir"

    def __init__(self, config: NodeConfig) -> None:
        self.url = config.fhir_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update({"Content-Type": fhir.FHIR_JSON, "Accept": fhir.FHIR_JSON})
        if config.fhir_token:
            self.session.headers["Authorization"] = f"Bearer {config.fhir_token}"

    def attempt(self, bundle: str) -> Failure | None:
        """One post; None once the server has filed it, else what went wrong (*refused* for a 4xx
        that says something against the bundle itself)."""
        try:
            answer = self.session.post(self.url, data=bundle.encode(), timeout=TIMEOUT)
        except requests.RequestException as err:
            return Failure(f"FHIR transaction failed ({type(err).__name__})")
        if answer.ok:
            return None
        status = answer.status_code
        return Failure(f"FHIR server answered {status}", 400 <= status < 500 and status not in NOT_A_REFUSAL)

    @property
    def destination(self) -> str:
        return self.url

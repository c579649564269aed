"""A result as FHIR R4 for an EMR: a ``Bundle`` (type collection) holding one ``DiagnosticReport``,
its ``Observation``s and the ``Device`` that made them. Pure; no Flask.

Built and validated with ``fhir.resources``' R4B models: R4B (4.3) changed none of the resources used
here (Bundle, DiagnosticReport, Observation, Device), so the JSON is R4 (4.0.1) as well.

- The conclusion is coded twice, as the DICOM SR does it and as an EMR can match it: an ``Observation``
  coded SNOMED CT 72704001 "Fracture" whose value is SNOMED CT "Present" or "Absent"; and the report's
  ``conclusionCode``: 72704001 itself when present, and when absent a SNOMED CT expression (a
  "finding with explicit context" whose context is "Known absent") that no system can mistake for the bare
  fracture code, with the verdict in words as its text.
- The probability and the operating point's threshold are ``Observation``s with UCUM unit "1" (numbers
  in [0, 1]); each finding is an ``Observation`` coded as a fracture, present, with its score, its level
  and its box as components (the box's corners in the image's own pixels, top-left origin).
- No patient data: the report has no ``subject`` and says so in its narrative; the EMR links it by its order.
- A DICOM study's report (the DICOM node's, :func:`dicom_study_bundle`) cites the study by its Study
  Instance UID (``imagingStudy``, a reference by identifier as FHIR's ImagingStudy identifies a
  study) and the order by its accession number (``basedOn``); the report is identified by its SR's
  SOP Instance UID and each view's observation by its SR group's tracking UID, so the two reports
  can be matched, and each view names its image by SOP Instance UID (DICOM's "Source of Measurement").
  :func:`transaction` makes the Bundle an EMR's FHIR server takes at its base URL.
"""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from importlib.metadata import version

from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation, ObservationComponent
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.resource import Resource

from .analysis import Analysis, StudyAnalysis
from .findings import Finding
from .inference import VERDICTS, Prediction
from .study import combine

FHIR_JSON = "application/fhir+json"
SNOMED, LOINC, UCUM = "http://snomed.info/sct", "http://loinc.org", "http://unitsofmeasure.org"
#: A private code system for what no standard one names (as the SR's ``99FRACTUREWEB`` scheme does);
#: ``.invalid`` can never be anyone else's domain.
LOCAL = "http://fracture-web.invalid/fhir/CodeSystem/result"
#: Where a report's identifier (the request id) comes from.
REQUEST_IDS = "http://fracture-web.invalid/fhir/request-id"
FRACTURE = (SNOMED, "72704001", "Fracture")
PRESENT, ABSENT = (SNOMED, "52101004", "Present"), (SNOMED, "2667000", "Absent")
NO_FRACTURE_EXPRESSION = ("413350009 |Finding with explicit context| : { 246090004 |Associated finding| = "
                          "72704001 |Fracture|, 408729009 |Finding context| = 410516002 |Known absent| }")
EXAMINATION = (LOINC, "18748-4", "Diagnostic imaging study")
RADIOLOGY = ("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD", "Radiology")
IMAGING = ("http://terminology.hl7.org/CodeSystem/observation-category", "imaging", "Imaging")
#: DICOM UIDs as FHIR writes them (an identifier's system, the UID as ``urn:oid:``).
DICOM_UID = "urn:dicom:uid"
SOURCE_OF_MEASUREMENT = ("http://dicom.nema.org/resources/ontology/DCM", "121112", "Source of Measurement")
ACCESSION = ("http://terminology.hl7.org/CodeSystem/v2-0203", "ACSN", "Accession ID")
DEVICE_NAME, MANUFACTURER = "fracture-detection assistant", "fracture-web"
NO_SUBJECT = ("No patient data is kept: this report names no subject. The EMR links it to the patient "
              "through its own order.")
DISCLAIMER = "NOT FOR DIAGNOSTIC USE. Produced by an AI decision aid, to be checked by a reader."
BOX = (("box-x0", "Box left edge"), ("box-y0", "Box top edge"), ("box-x1", "Box right edge"),
       ("box-y1", "Box bottom edge"))


def concept(*codings: tuple[str, str, str], text: str | None = None) -> CodeableConcept:
    """A CodeableConcept of (system, code, display) codings."""
    return CodeableConcept(coding=[{"system": system, "code": code, "display": display}
                                   for system, code, display in codings], text=text)


def _local(code: str, display: str) -> CodeableConcept:
    return concept((LOCAL, code, display))


def dicom_uid(uid: str) -> dict:
    """A DICOM UID as a FHIR identifier."""
    return {"system": DICOM_UID, "value": f"urn:oid:{uid}"}


def _ratio(value: float) -> dict:
    """A number in [0, 1] as a Quantity (UCUM "1")."""
    return {"value": round(value, 6), "unit": "1", "system": UCUM, "code": "1"}


class _Ids:
    """Stable ``urn:uuid`` full URLs, the same each time one report is built again."""

    def __init__(self, report_id: str) -> None:
        self.report_id, self.count = report_id, 0

    def next(self) -> str:
        self.count += 1
        return uuid.uuid5(uuid.NAMESPACE_URL, f"{REQUEST_IDS}/{self.report_id}/{self.count}").urn


def device(model_version: str) -> Device:
    """The software as a device: its name, the model's version and the app's own version."""
    return Device(deviceName=[{"name": DEVICE_NAME, "type": "model-name"}], manufacturer=MANUFACTURER,
                  version=[{"type": _local("model-version", "Model version"), "value": model_version},
                           {"type": _local("software-version", "Software version"),
                            "value": version("fracture-web")}])


class _Builder:
    """Collects a report's observations, each with its full URL, all made by one device at one time."""

    def __init__(self, report_id: str, model_version: str, issued: datetime) -> None:
        self.ids, self.issued = _Ids(report_id), issued.isoformat()
        self.device_url = self.ids.next()
        self.entries: list[tuple[str, Resource]] = [(self.device_url, device(model_version))]

    def observe(self, code: CodeableConcept, **fields) -> dict:
        """Add a final imaging Observation; a reference to it."""
        url = self.ids.next()
        self.entries.append((url, Observation(
            status="final", category=[concept(IMAGING)], code=code, effectiveDateTime=self.issued,
            issued=self.issued, device={"reference": self.device_url}, **fields)))
        return {"reference": url}

    def verdict(self, fractured: bool, probability: float, threshold: float, operating_point: str) -> list[dict]:
        """The coded verdict, the probability and the threshold: three observations."""
        return [self.observe(concept(FRACTURE), valueCodeableConcept=concept(PRESENT if fractured else ABSENT)),
                self.observe(_local("probability", "Probability of fracture"), valueQuantity=_ratio(probability)),
                self.observe(_local("threshold", "Operating point threshold"), valueQuantity=_ratio(threshold),
                             note=[{"text": f"Operating point: {operating_point}"}])]

    def finding(self, rank: int, finding: Finding) -> dict:
        """One suspected fracture: present, with its score, level and box."""
        box = [ObservationComponent(code=_local(code, display),
                                    valueQuantity={"value": round(v, 1), "unit": "pixel", "system": UCUM,
                                                   "code": "{pixel}"})
               for (code, display), v in zip(BOX, finding.box)]
        return self.observe(concept(FRACTURE, text=f"Suspected fracture {rank}"),
                            valueCodeableConcept=concept(PRESENT),
                            component=[ObservationComponent(code=_local("finding-score", "Finding score"),
                                                            valueQuantity=_ratio(finding.score)),
                                       ObservationComponent(code=_local("finding-level", "Finding level"),
                                                            valueCodeableConcept=_local(finding.level,
                                                                                        finding.level.title())),
                                       *box])

    def findings(self, prediction: Prediction) -> list[dict]:
        return [self.finding(rank, f) for rank, f in enumerate(prediction.findings, start=1)]

    def view(self, number: int, p: Prediction, warnings: Sequence[str], identifier: dict,
             *cites: ObservationComponent) -> list[dict]:
        """One view's observation (its verdict and probability, ``cites`` as further components, its
        findings as members), then its findings."""
        members = self.findings(p)
        return [self.observe(
            concept(FRACTURE, text=f"Fracture in view {number}"), identifier=[identifier],
            valueCodeableConcept=concept(PRESENT if p.fractured else ABSENT), hasMember=members or None,
            component=[ObservationComponent(code=_local("probability", "Probability of fracture"),
                                            valueQuantity=_ratio(p.probability)), *cites],
            note=[{"text": text} for text in warnings] or None), *members]

    def bundle(self, identifier: dict, fractured: bool, results: list[dict], notes: Sequence[str],
               **cites: list[dict]) -> Bundle:
        """The Bundle: the report first, then the device and the observations. A DiagnosticReport (R4)
        has no ``note``: the verdict, the disclaimer, the missing subject and ``notes`` are its narrative."""
        paragraphs = "".join(f"<p>{escape(text)}</p>" for text in (VERDICTS[fractured], DISCLAIMER, NO_SUBJECT, *notes))
        report = DiagnosticReport(
            identifier=[identifier], status="final", **cites,
            category=[concept(RADIOLOGY)], code=concept(EXAMINATION, text="Radiograph fracture detection (AI)"),
            text={"status": "additional", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{paragraphs}</div>'},
            effectiveDateTime=self.issued, issued=self.issued, result=results,
            conclusion=VERDICTS[fractured], conclusionCode=[conclusion_code(fractured)])
        entries = [(self.ids.next(), report), *self.entries]
        return Bundle(type="collection", timestamp=self.issued,
                      entry=[BundleEntry(fullUrl=url, resource=resource) for url, resource in entries])


def conclusion_code(fractured: bool) -> CodeableConcept:
    """SNOMED CT "Fracture" when present; when absent, the expression saying it is known absent."""
    if fractured:
        return concept(FRACTURE, text=VERDICTS[True])
    return concept((SNOMED, NO_FRACTURE_EXPRESSION, "Fracture known absent"), text=VERDICTS[False])


def report_bundle(analysis: Analysis, report_id: str, issued: datetime) -> Bundle:
    """One image's result as a report: verdict, probability, threshold, one observation per finding;
    its warnings in the report's narrative."""
    p = analysis.prediction
    build = _Builder(report_id, p.model_version, issued)
    results = build.verdict(p.fractured, p.probability, p.threshold, p.operating_point) + build.findings(p)
    return build.bundle(_request(report_id), p.fractured, results, analysis.warnings)


def _request(report_id: str) -> dict:
    return {"system": REQUEST_IDS, "value": report_id}


def study_bundle(study: StudyAnalysis, report_id: str, view_ids: Sequence[str], issued: datetime) -> Bundle:
    """A study's result as one report: the study verdict, probability and threshold, then per readable
    view an observation (identified by the view's own id) with its probability, whose members are its
    findings; study warnings and each unreadable file's reason in the narrative."""
    v = study.verdict
    build = _Builder(report_id, v.model_version, issued)
    results = build.verdict(v.fractured, v.probability, v.threshold, v.operating_point)
    notes = list(study.warnings)
    for number, (image, view_id) in enumerate(zip(study.images, view_ids), start=1):
        if image.analysis is None:
            notes.append(f"File {number}: {image.error}")
            continue
        results += build.view(number, image.analysis.prediction, image.analysis.warnings, _request(view_id))
    return build.bundle(_request(report_id), v.fractured, results, notes)


@dataclass(frozen=True)
class DicomView:
    """One radiograph of a DICOM study as its report cites it: the image's SOP Instance UID, the UID
    identifying its assessment (its group's tracking UID in the SR), its prediction and warnings."""

    instance_uid: str
    assessment_uid: str
    prediction: Prediction
    warnings: tuple[str, ...] = ()


def dicom_study_bundle(study_uid: str, accession: str | None, report_uid: str, views: Sequence[DicomView],
                       issued: datetime) -> Bundle:
    """A DICOM study's result as one report, as :func:`study_bundle` makes it, citing the study by its
    Study Instance UID, its order by accession number (when it has one) and each view's image by its
    SOP Instance UID; identified by ``report_uid`` (the SR's SOP Instance UID)."""
    v = combine([view.prediction for view in views])
    build = _Builder(report_uid, v.model_version, issued)
    results = build.verdict(v.fractured, v.probability, v.threshold, v.operating_point)
    for number, view in enumerate(views, start=1):
        image = ObservationComponent(code=concept(SOURCE_OF_MEASUREMENT), valueString=f"urn:oid:{view.instance_uid}")
        results += build.view(number, view.prediction, view.warnings, dicom_uid(view.assessment_uid), image)
    cites = {"imagingStudy": [{"type": "ImagingStudy", "identifier": dicom_uid(study_uid)}]}
    if accession:
        cites["basedOn"] = [{"type": "ServiceRequest",
                             "identifier": {"type": concept(ACCESSION), "value": accession}}]
    return build.bundle(dicom_uid(report_uid), v.fractured, results, [], **cites)


def transaction(bundle: Bundle) -> Bundle:
    """The Bundle as a transaction for an EMR's FHIR server (posted to its base URL): all or nothing,
    its ``urn:uuid`` references resolved by the server. The report is a conditional update on its
    identifier, so a report made again (a late image) replaces the one before; the rest is created."""
    entries = []
    for entry in bundle.entry:
        kind = entry.resource.get_resource_type()
        if kind == "DiagnosticReport":
            identifier = entry.resource.identifier[0]
            request = {"method": "PUT", "url": f"{kind}?identifier={identifier.system}|{identifier.value}"}
        else:
            request = {"method": "POST", "url": kind}
        entries.append(BundleEntry(fullUrl=entry.fullUrl, resource=entry.resource, request=request))
    return Bundle(type="transaction", timestamp=bundle.timestamp, entry=entries)


#: The FHIR issue type of each HTTP status the app refuses with (``processing`` for any other).
ISSUE_TYPES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
               408: "timeout", 413: "too-long", 415: "not-supported", 422: "invalid", 429: "throttled",
               500: "exception", 503: "transient"}


def operation_outcome(message: str, status: int) -> OperationOutcome:
    """A refusal as FHIR answers one: an OperationOutcome with one error, its type by ``status``."""
    return OperationOutcome(issue=[{"severity": "error" if status < 500 else "fatal",
                                    "code": ISSUE_TYPES.get(status, "processing"), "diagnostics": message}])

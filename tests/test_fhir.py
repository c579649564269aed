"""An EMR that takes FHIR R4 asks the API for it and gets a DiagnosticReport it can file; everyone else
keeps the plain JSON answer."""
from __future__ import annotations

import io
from datetime import datetime, timezone

import numpy as np
import pytest
from fhir.resources.R4B.bundle import Bundle

from helpers import SAMPLES
from fracture_web import fhir
from fracture_web.analysis import Analysis
from fracture_web.findings import Finding
from fracture_web.inference import Prediction

FHIR_JSON = "application/fhir+json"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def prediction(fractured: bool, findings: tuple[Finding, ...] = ()) -> Prediction:
    return Prediction("Fractured" if fractured else "Non_fractured", fractured, 0.81 if fractured else 0.12, 0.5,
                      "balanced", "2026.1", np.zeros((8, 8), np.float32), findings=findings)


def parsed(text: str) -> Bundle:
    """The bundle as an EMR reads it back: every resource in it validated by its own FHIR model."""
    bundle = Bundle.model_validate_json(text)
    for entry in bundle.entry:
        type(entry.resource).model_validate(entry.resource.model_dump())
    return bundle


def resources(bundle: Bundle, kind: str) -> list:
    return [entry.resource for entry in bundle.entry if entry.resource.get_resource_type() == kind]


def by_url(bundle: Bundle) -> dict:
    return {entry.fullUrl: entry.resource for entry in bundle.entry}


def fracture_answer(observation) -> str:
    """The SNOMED CT answer ("Present" or "Absent") of an observation coded as a fracture."""
    assert observation.code.coding[0].code == "72704001"
    return observation.valueCodeableConcept.coding[0].display


def test_an_emr_asking_for_fhir_gets_a_valid_report_bundle_with_no_patient_data(client, sample_bytes):
    answer = client.post("/api/v1/predict", data=sample_bytes, content_type="image/jpeg",
                         headers={"Accept": FHIR_JSON})
    assert answer.status_code == 200 and answer.mimetype == FHIR_JSON
    bundle = parsed(answer.get_data(as_text=True))
    assert bundle.type == "collection"
    [report] = resources(bundle, "DiagnosticReport")
    assert report.status == "final" and report.category[0].coding[0].code == "RAD"
    assert report.identifier[0].value == answer.headers["X-Request-ID"]
    assert report.issued and report.effectiveDateTime
    assert report.subject is None and "No patient data" in report.text.div
    # the report's results are the bundle's observations, each made by the bundle's device
    urls = by_url(bundle)
    [device_url] = [url for url, resource in urls.items() if resource.get_resource_type() == "Device"]
    observations = [urls[ref.reference] for ref in report.result]
    assert observations == resources(bundle, "Observation")
    assert {o.device.reference for o in observations} == {device_url}


def test_the_devices_version_is_the_models_version(client, sample_bytes):
    model_version = client.get("/healthz").get_json()["model_version"]
    answer = client.post("/api/v1/predict", data=sample_bytes, content_type="image/jpeg",
                         headers={"Accept": FHIR_JSON})
    [device] = resources(parsed(answer.get_data(as_text=True)), "Device")
    versions = {v.type.coding[0].code: v.value for v in device.version}
    assert versions["model-version"] == model_version
    assert device.deviceName[0].name and versions["software-version"]


@pytest.mark.parametrize("fractured, answer", [(True, "Present"), (False, "Absent")])
def test_the_conclusion_is_coded_present_or_absent(fractured, answer):
    bundle = parsed(fhir.report_bundle(Analysis(prediction(fractured), ()), "r1", NOW).model_dump_json())
    [report] = resources(bundle, "DiagnosticReport")
    verdict, probability, threshold = [by_url(bundle)[ref.reference] for ref in report.result]
    assert fracture_answer(verdict) == answer
    assert float(probability.valueQuantity.value) == (0.81 if fractured else 0.12)
    assert threshold.valueQuantity.value == 0.5 and probability.valueQuantity.code == "1"
    [code] = report.conclusionCode[0].coding
    assert report.conclusion == report.conclusionCode[0].text
    if fractured:
        assert code.code == "72704001"
    else:  # never the bare fracture code: the expression says it is known absent
        assert code.code != "72704001" and "410516002 |Known absent|" in code.code


def test_each_finding_is_an_observation_with_its_score_level_and_box():
    findings = (Finding((10.0, 20.0, 110.0, 220.0), 0.93, "definite"),
                Finding((300.0, 40.0, 350.0, 90.0), 0.41, "possible"))
    bundle = parsed(fhir.report_bundle(Analysis(prediction(True, findings), ()), "r1", NOW).model_dump_json())
    observations = resources(bundle, "Observation")[3:]  # after the verdict, the probability and the threshold
    assert len(observations) == len(findings)
    for observation, finding in zip(observations, findings):
        assert fracture_answer(observation) == "Present"
        parts = {c.code.coding[0].code: c for c in observation.component}
        box = [float(parts[f"box-{corner}"].valueQuantity.value) for corner in ("x0", "y0", "x1", "y1")]
        assert box == list(finding.box)
        assert float(parts["finding-score"].valueQuantity.value) == finding.score
        assert parts["finding-level"].valueCodeableConcept.coding[0].code == finding.level


def test_a_study_answers_one_report_with_an_observation_per_view(client):
    views = [path.read_bytes() for path in SAMPLES[:2]]
    upload = {"file": [(io.BytesIO(data), f"view{i}.jpg") for i, data in enumerate(views, start=1)]}
    answer = client.post("/api/v1/studies", data=upload, headers={"Accept": FHIR_JSON})
    assert answer.mimetype == FHIR_JSON
    bundle = parsed(answer.get_data(as_text=True))
    [report] = resources(bundle, "DiagnosticReport")
    request_id = answer.headers["X-Request-ID"]
    assert report.identifier[0].value == request_id
    per_view = [o for o in resources(bundle, "Observation") if o.identifier]
    assert [o.identifier[0].value for o in per_view] == [f"{request_id}-{n}" for n in (1, 2)]
    assert all(fracture_answer(o) in ("Present", "Absent") for o in per_view)


@pytest.mark.parametrize("accept", [None, "application/json", f"{FHIR_JSON}, application/json", "*/*"])
def test_a_client_not_asking_for_fhir_alone_gets_plain_json(client, sample_bytes, accept):
    headers = {"Accept": accept} if accept else {}
    answer = client.post("/api/v1/predict", data=sample_bytes, content_type="image/jpeg", headers=headers)
    assert answer.mimetype == "application/json"
    assert answer.get_json()["request_id"] == answer.headers["X-Request-ID"]


@pytest.mark.parametrize("upload, status, issue", [(b"not an image at all", 400, "invalid"),
                                                   (None, 400, "invalid")])
def test_an_emr_asking_for_fhir_is_refused_in_fhir_with_an_operation_outcome(client, upload, status, issue):
    from fhir.resources.R4B.operationoutcome import OperationOutcome

    data = {} if upload is None else {"file": (io.BytesIO(upload), "x.jpg")}
    answer = client.post("/api/v1/predict", data=data, headers={"Accept": FHIR_JSON})
    assert answer.status_code == status and answer.mimetype == FHIR_JSON
    outcome = OperationOutcome.model_validate_json(answer.get_data(as_text=True))
    (problem,) = outcome.issue
    assert problem.severity == "error" and problem.code == issue and problem.diagnostics

"""A study ordered twice over (one examination filling two orders) carries two accession numbers,
``A1\\A2``. Its FHIR report must still be made and filed against an order, not set aside."""
from __future__ import annotations

from datetime import datetime

import numpy as np
from fhir.resources.R4B.bundle import Bundle

from fracture_web.dicom_node.fhir_report import study_bundle
from fracture_web.dicom_node.readings import Reading
from fracture_web.inference import Prediction

from dicom_files import radiograph_dataset


def reading_with_accession(accession) -> Reading:
    view = radiograph_dataset(np.full((64, 48), 90, np.uint8))
    view.AccessionNumber = accession
    p = Prediction("Fractured", True, 0.9, 0.5, "balanced", "2026.1", np.zeros((1, 1), np.float32))
    return Reading.of(view, p, (), 1.0)


def orders(bundle_json: str) -> list[str]:
    bundle = Bundle.model_validate_json(bundle_json).model_dump(mode="json", exclude_none=True)
    (report,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
    return [ref["identifier"]["value"] for ref in report.get("basedOn", [])]


def test_a_study_with_two_accession_numbers_gets_its_fhir_report_filed_against_the_first_order():
    assert orders(study_bundle([reading_with_accession(["A1", "A2"])], datetime(2026, 12, 6))) == ["A1"]


def test_a_study_with_one_or_no_accession_number_is_filed_as_before():
    assert orders(study_bundle([reading_with_accession("A7")], datetime(2026, 12, 6))) == ["A7"]
    assert orders(study_bundle([reading_with_accession("")], datetime(2026, 12, 6))) == []

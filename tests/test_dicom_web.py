"""A clinician uploads a DICOM file from the PACS viewer: page, API, command line and evaluation
read it like any image, show where it came from, and never show or log who the patient is."""
from __future__ import annotations

import io
import json
import logging
import re
import shutil

import cv2
import numpy as np
import pytest

from fracture_web import create_app

from helpers import post_form, run_script
from dicom_files import PATIENT, radiograph_dataset, rle, to_bytes


@pytest.fixture(scope="module")
def dicom_bytes(sample_bytes) -> bytes:
    gray = cv2.imdecode(np.frombuffer(sample_bytes, np.uint8), cv2.IMREAD_GRAYSCALE)
    return to_bytes(rle(radiograph_dataset(gray)))


@pytest.fixture(scope="module")
def png_bytes(sample_bytes) -> bytes:
    gray = cv2.imdecode(np.frombuffer(sample_bytes, np.uint8), cv2.IMREAD_GRAYSCALE)
    return cv2.imencode(".png", gray)[1].tobytes()


def upload(data: bytes, name: str = "image.dcm") -> dict:
    return {"file": (io.BytesIO(data), name)}


def test_the_api_reads_a_dicom_in_the_file_field_and_returns_its_header_context(client, dicom_bytes, png_bytes):
    response = client.post("/api/v1/predict", data=upload(dicom_bytes))
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["dicom"] == {"modality": "DX", "body_part": "HAND", "view_position": "PA", "laterality": "L"}
    as_png = client.post("/api/v1/predict", data=upload(png_bytes, "image.png")).get_json()
    assert "dicom" not in as_png
    assert body["label"] == as_png["label"] and body["probability"] == pytest.approx(as_png["probability"], abs=1e-4)
    assert not any(value in response.get_data(as_text=True) for value in PATIENT.values())


def test_a_dicom_without_an_extension_is_recognised_by_its_preamble(client, dicom_bytes):
    response = client.post("/api/v1/predict", data=upload(dicom_bytes, "IM000001"))
    assert response.status_code == 200 and response.get_json()["dicom"]["modality"] == "DX"


def test_the_result_page_shows_modality_body_part_view_and_laterality_but_not_the_patient(client, dicom_bytes):
    response = post_form(client, upload(dicom_bytes))
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert re.search(r"From the DICOM header:\s*modality <strong>DX</strong>, body part <strong>HAND</strong>, "
                     r"view position <strong>PA</strong>, laterality <strong>L</strong>", page)
    assert len(re.findall(r'(?:src|href)="data:image/(?:png|jpeg);base64,', page)) == 2  # the X-ray, the overlay
    text = re.sub(r"data:image/(?:png|jpeg);base64,[^\"]+", "", page)  # base64 may hold any short string by chance
    assert not any(value in text for value in PATIENT.values()) and "Doe" not in text


def test_the_upload_form_offers_dicom_files(client):
    page = client.get("/").get_data(as_text=True)
    assert ".dcm" in page and "DICOM" in page


@pytest.mark.parametrize("changes, message", [
    ({"Modality": "CT"}, "a CT scan"), ({"Modality": "MR"}, "an MRI scan"), ({"PixelData": None}, "no image")])
def test_a_ct_an_mri_or_a_dicom_without_pixels_gets_a_400_with_a_reason(client, sample_bytes, changes, message):
    gray = cv2.imdecode(np.frombuffer(sample_bytes, np.uint8), cv2.IMREAD_GRAYSCALE)
    ds = radiograph_dataset(gray)
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    data = to_bytes(ds)
    api = client.post("/api/v1/predict", data=upload(data))
    assert api.status_code == 400 and message in api.get_json()["error"]
    page = post_form(client, upload(data))
    assert page.status_code == 400 and message in page.get_data(as_text=True)


def test_dicom_uploads_leave_no_patient_data_in_the_logs_or_the_audit_trail(tiny_model_dir, dicom_bytes,
                                                                           tmp_path, caplog):
    audit_file = tmp_path / "audit.log"
    client = create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir), "AUDIT_LOG": str(audit_file)}).test_client()
    with caplog.at_level(logging.DEBUG):
        for response in client.post("/api/v1/predict", data=upload(dicom_bytes)), post_form(client, upload(dicom_bytes)):
            assert response.status_code == 200
            response.close()  # the server has sent the answer: the audit line is written
    logged = audit_file.read_text() + caplog.text
    assert len(audit_file.read_text().splitlines()) == 2
    assert not any(value in logged for value in PATIENT.values())


def test_the_command_line_reads_dicom_files(tiny_model_dir, dicom_bytes, tmp_path):
    path = tmp_path / "hand.dcm"
    path.write_bytes(dicom_bytes)
    done = run_script("predict.py", "--model", str(tiny_model_dir), "--json", "--image", str(path))
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout)
    assert line["dicom"]["body_part"] == "HAND" and line["label"] in ("fractured", "not_fractured")
    plain = run_script("predict.py", "--model", str(tiny_model_dir), "--image", str(path))
    assert "[DX HAND PA L]" in plain.stdout and "Doe" not in plain.stdout + plain.stderr


def test_evaluation_and_training_pick_up_dcm_files_in_class_folders(tiny_model_dir, tiny_dataset, tmp_path):
    from fracture_web.evaluation.scoring import score_folder
    from fracture_web.inference import FractureModel

    folder = tmp_path / "data"
    shutil.copytree(tiny_dataset, folder)
    for png in list(folder.rglob("*.png"))[::2]:  # half the images as DICOM, the PNG removed
        gray = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
        png.with_suffix(".dcm").write_bytes(to_bytes(radiograph_dataset(gray)))
        png.unlink()
    records, probs, unreadable, _warnings = score_folder(folder, FractureModel(tiny_model_dir))
    assert unreadable == [] and len(records) == len(list(tiny_dataset.rglob("*.png")))
    assert sum(path.suffix == ".dcm" for path in records.paths) == len(records) // 2
    assert np.all((probs >= 0) & (probs <= 1))

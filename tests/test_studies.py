"""A study, not an image: the views of one examination sent together, read as one, on the API and the page."""
from __future__ import annotations

import hashlib
import io
import json
import re

from helpers import SAMPLES, post_form, same_answer
from fracture_web import create_app

NOT_AN_IMAGE = b"this is a letter, not a radiograph"


def files(*contents: bytes) -> dict:
    """Several files in the repeated ``file`` field, as a browser or curl sends them."""
    return {"file": [(io.BytesIO(data), f"view{i}.jpg") for i, data in enumerate(contents, start=1)]}


def three_views_and_a_letter() -> list[bytes]:
    """Three radiographs with an unreadable file among them (third of four)."""
    views = [path.read_bytes() for path in SAMPLES[:3]]
    return views[:2] + [NOT_AN_IMAGE] + views[2:]


def test_a_study_answers_for_each_view_as_if_alone_and_for_the_study_as_its_most_suspicious_view(client):
    uploads = three_views_and_a_letter()
    response = client.post("/api/v1/studies", data=files(*uploads))
    study = response.get_json()
    assert response.status_code == 200
    assert len(study["images"]) == 4
    assert set(study["images"][2]) == {"error"} and "not an image" in study["images"][2]["error"]
    read = [entry for entry in study["images"] if "error" not in entry]
    alone = [client.post("/api/v1/predict", data=files(data)).get_json() for data in uploads if data != NOT_AN_IMAGE]
    # each view's entry is exactly its single-image answer, findings included (each with its own id)
    assert [same_answer(entry) for entry in read] == [same_answer(answer) for answer in alone]
    top = max(alone, key=lambda entry: entry["probability"])
    assert study["probability"] == top["probability"] and study["label"] == top["label"]
    assert (study["label"] == "fractured") == (study["probability"] >= study["threshold"])
    assert study["threshold"] == top["threshold"] and study["operating_point"] == top["operating_point"]
    assert study["model_version"] == top["model_version"]
    assert study["warnings"][0] == "1 of 4 files could not be analysed."
    # and, where the view the verdict comes from has warnings of its own, that it has
    assert study["warnings"][1:] == (["The study's verdict is file {}'s, which carries a warning of its own (below): "
                                      "weigh the verdict with it.".format(1 + study["images"].index(
                                          next(e for e in study["images"] if e.get("probability") == top["probability"])))]
                                     if top["warnings"] else [])


def test_a_study_takes_the_operating_point_and_heatmaps_as_a_single_image_does(client):
    uploads = [path.read_bytes() for path in SAMPLES[:2]]
    query = "?operating_point=high_sensitivity&heatmap=1"
    study = client.post(f"/api/v1/studies{query}", data=files(*uploads)).get_json()
    alone = [client.post(f"/api/v1/predict{query}", data=files(data)).get_json() for data in uploads]
    assert [same_answer(entry) for entry in study["images"]] == [same_answer(answer) for answer in alone]
    assert study["operating_point"] == "high_sensitivity"
    assert all(entry["heatmap_png"] for entry in study["images"])
    assert not any("could not be analysed" in warning for warning in study["warnings"])  # every file was read


def test_a_study_with_no_readable_file_is_refused_with_each_files_reason(client):
    response = client.post("/api/v1/studies", data=files(NOT_AN_IMAGE, b""))
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert "None of the study's files could be analysed" in error
    assert "File 1: The file is not an image" in error and "File 2: The file is empty" in error


def test_too_many_files_or_none_are_refused_before_any_analysis(client, sample_bytes):
    too_many = client.post("/api/v1/studies", data=files(*[sample_bytes] * 9))
    assert too_many.status_code == 400
    assert too_many.get_json()["error"] == "Too many files: a study takes at most 8 images, and 9 were sent."
    nothing = client.post("/api/v1/studies", data={})
    assert nothing.status_code == 400 and "No file was uploaded" in nothing.get_json()["error"]
    unknown = client.post("/api/v1/studies?operating_point=lucky", data=files(sample_bytes))
    assert unknown.status_code == 400 and "balanced" in unknown.get_json()["error"]


def test_the_largest_study_and_the_token_are_the_sites_settings(tiny_model_dir, sample_bytes, reads_url):
    client = create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir), "MAX_STUDY_IMAGES": 2,
                         "API_TOKEN": "s3cret-token-for-tests", "DATABASE_URL": reads_url}).test_client()
    bearer = {"Authorization": "Bearer s3cret-token-for-tests"}
    assert client.post("/api/v1/studies", data=files(sample_bytes, sample_bytes)).status_code == 401
    refused = client.post("/api/v1/studies", data=files(*[sample_bytes] * 3), headers=bearer)
    assert refused.status_code == 400 and "at most 2 images" in refused.get_json()["error"]
    assert client.post("/api/v1/studies", data=files(sample_bytes, sample_bytes), headers=bearer).status_code == 200


def test_each_analysed_view_leaves_its_audit_line_under_its_own_stored_id(tiny_model_dir, tmp_path, reads_url):
    audit_file = tmp_path / "audit.log"
    client = create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir), "AUDIT_LOG": str(audit_file),
                         "DATABASE_URL": reads_url}).test_client()
    uploads = three_views_and_a_letter()
    response = client.post("/api/v1/studies", data=files(*uploads))
    response.close()  # the server has sent the answer: the lines are written
    lines = [json.loads(line) for line in audit_file.read_text().splitlines()]
    readable = [data for data in uploads if data != NOT_AN_IMAGE]
    assert [line["sha256"] for line in lines] == [hashlib.sha256(data).hexdigest() for data in readable]
    entries = [entry for entry in response.get_json()["images"] if "error" not in entry]
    # the study's request id and the view's number: the id its analysis is stored and read under
    assert [line["request_id"] for line in lines] == [entry["request_id"] for entry in entries]
    assert all(line["request_id"].startswith(response.headers["X-Request-ID"] + "-") for line in lines)
    assert [line["probability"] for line in lines] == [entry["probability"] for entry in entries]


def test_the_page_reads_several_views_as_one_study_with_a_row_per_view(client):
    response = post_form(client, files(*three_views_and_a_letter()))
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    study = page[page.index('<section class="result study"'):]
    assert re.search(r'<h2 class="verdict (positive|negative)">(Fracture suspected|No fracture detected)</h2>', study)
    assert re.search(r"Probability of a fracture in this study: <strong>\d+%</strong>", study)
    assert 'class="confidence"' in study and "1 of 4 files could not be analysed." in study
    rows = re.findall(r'<tr class="view( unreadable)?">(.*?)</tr>', study, re.S)
    assert [bool(unreadable) for unreadable, _ in rows] == [False, False, True, False]
    for unreadable, row in rows:
        if unreadable:
            assert "could not be analysed" in row and "not an image" in row
        else:  # each view: its X-ray with its boxes, its verdict and probability
            assert 'class="xray-boxes"' in row and 'href="data:image/png;base64,' in row
            assert re.search(r"(Fracture suspected|No fracture detected)", row) and re.search(r"<strong>\d+%</strong>", row)
    assert "heatmap overlaid" not in page  # the heatmaps are for one view at a time


def test_one_file_on_the_page_still_gets_the_single_image_result(client, sample_bytes):
    page = post_form(client, files(sample_bytes)).get_data(as_text=True)
    assert re.search(r"Probability of a fracture: <strong>\d+%</strong>", page)
    assert "heatmap overlaid" in page and "study-views" not in page


def test_the_page_explains_a_study_it_cannot_read(client):
    response = post_form(client, files(NOT_AN_IMAGE, b""))
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and "None of the study&#39;s files could be analysed" in page
    form = page[page.index("<form"):page.index("</form>")]
    assert re.search(r'<input id="file" name="file" type="file"[^>]* multiple required>', form)


def dicom_of(path, patient_id: str) -> bytes:
    """A sample radiograph as a DICOM file naming the patient ``patient_id``."""
    import cv2
    import numpy as np
    from dicom_files import radiograph_dataset, to_bytes
    ds = radiograph_dataset(cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_GRAYSCALE))
    ds.PatientID, ds.PatientName = patient_id, f"DOE^{patient_id}"
    return to_bytes(ds)


def test_views_of_two_patients_are_refused_as_one_study(client):
    # One patient's fractured hand would otherwise give the other patient's study its verdict.
    answer = client.post("/api/v1/studies", data=files(dicom_of(SAMPLES[0], "A1"), dicom_of(SAMPLES[1], "B2")))
    assert answer.status_code == 400 and "2 different patients" in answer.get_json()["error"]
    same_patient = client.post("/api/v1/studies", data=files(dicom_of(SAMPLES[0], "A1"), dicom_of(SAMPLES[1], "A1")))
    assert same_patient.status_code == 200 and all("error" not in image for image in same_patient.get_json()["images"])


def test_a_file_sent_twice_in_a_study_is_read_once_and_said_so(client):
    view = SAMPLES[0].read_bytes()
    study = client.post("/api/v1/studies", data=files(view, view)).get_json()
    assert study["images"][1] == {"error": "The same file as file 1; each view is read once."}
    assert study["probability"] == study["images"][0]["probability"]


def test_a_study_verdict_drawn_from_a_view_with_a_warning_says_so_at_the_top(reads_url):
    # The study's verdict is its most suspicious view's; when that view was read with a warning
    # (cut off, out of scope, a photo ...), the warning sat only on that view's row.
    fractured = next(path for path in SAMPLES if "_fractured" in path.name).read_bytes()
    normal = next(path for path in SAMPLES if "not_fractured" in path.name).read_bytes()
    cut_off = fractured[:len(fractured) * 9 // 10]
    client = create_app({"TESTING": True, "DATABASE_URL": reads_url}).test_client()  # the shipped model
    study = client.post("/api/v1/studies", data=files(normal, cut_off)).get_json()
    assert study["images"][1]["warnings"] and study["probability"] == study["images"][1]["probability"]
    assert any("verdict is file 2's, which carries a warning" in warning for warning in study["warnings"])
    calm = client.post("/api/v1/studies", data=files(normal[:len(normal) * 9 // 10], fractured)).get_json()
    assert calm["probability"] == calm["images"][1]["probability"]
    assert not any("verdict is file" in warning for warning in calm["warnings"])

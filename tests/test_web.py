"""A clinician's and an integrator's story through the Flask test client, against a real small model."""
from __future__ import annotations

import base64
import io
import json
import re
import shutil

import cv2
import numpy as np
import pytest

from helpers import post_form, same_answer
from fracture_web import create_app
from fracture_web.analysis import OUT_OF_SCOPE


def upload(data: bytes, name: str = "xray.jpg", field: str = "file") -> dict:
    return {field: (io.BytesIO(data), name)}


def test_the_upload_form_is_the_first_form_on_the_page(client):
    page = client.get("/").get_data(as_text=True)
    first_form = page[page.index("<form"):page.index("</form>")]
    assert 'enctype="multipart/form-data"' in first_form and 'name="file"' in first_form
    assert "Decision aid, not a diagnosis" in page
    assert "hand, leg, hip and shoulder" in page and "children" in page


def test_uploading_an_xray_shows_verdict_confidence_bar_and_heatmap(client, sample_bytes):
    response = post_form(client, upload(sample_bytes))
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert re.search(r"Fracture suspected|No fracture detected", page)
    assert re.search(r"Probability of a fracture: <strong>\d+%</strong>", page)
    assert 'class="confidence"' in page and 'class="threshold"' in page
    images = re.findall(r'(?:src|href)="data:image/(?:png|jpeg);base64,([^"]+)"', page)
    assert len(images) == 2  # the plain X-ray and the overlay
    overlay = cv2.imdecode(np.frombuffer(base64.b64decode(images[1]), np.uint8), cv2.IMREAD_COLOR)
    assert overlay is not None and overlay.shape[2] == 3
    # The tiny model has a fracture map (trained without outlines here): the page says what it shows.
    assert "Fracture map" in page and "It is not a finding" in page
    assert "Not validated on children" in page


def test_page_can_use_the_high_sensitivity_operating_point(client, sample_bytes):
    data = upload(sample_bytes) | {"operating_point": "high_sensitivity"}
    page = post_form(client, data).get_data(as_text=True)
    assert "<em>high sensitivity</em>" in page


def test_api_returns_the_verdict_as_json(client, app, sample_bytes):
    response = client.post("/api/v1/predict", data=upload(sample_bytes))
    body = response.get_json()
    assert response.status_code == 200
    assert set(body) == {"label", "probability", "threshold", "operating_point", "model_version", "calibration",
                         "findings", "warnings", "request_id", "stored"}
    assert body["request_id"] == response.headers["X-Request-ID"] and body["stored"] is True  # a read can follow
    assert body["calibration"] == "development"  # the tiny model's own thresholds, not re-fitted at a site
    assert body["label"] in ("fractured", "not_fractured")
    assert 0.0 <= body["probability"] <= 1.0
    # The tiny test model was trained on synthetic images, so a real X-ray is out of its scope.
    assert body["warnings"] == [OUT_OF_SCOPE]
    assert (body["probability"] >= body["threshold"]) == (body["label"] == "fractured")
    assert body["model_version"] == app.extensions["fracture_model"].version


@pytest.fixture()
def flag_everything_client(tiny_model_dir, tmp_path, reads_url):
    """The tiny model with an extra operating point at threshold 0: every image is "fractured"."""
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    metadata = json.loads((model_dir / "metadata.json").read_text())
    metadata["operating_points"]["everything"] = {"threshold": 0.0}
    (model_dir / "metadata.json").write_text(json.dumps(metadata))
    return create_app({"TESTING": True, "MODEL_DIR": str(model_dir), "DATABASE_URL": reads_url}).test_client()


def test_api_findings_are_boxes_in_the_uploads_pixels_that_agree_with_the_verdict(flag_everything_client,
                                                                                  sample_bytes):
    height, width = cv2.imdecode(np.frombuffer(sample_bytes, np.uint8), cv2.IMREAD_GRAYSCALE).shape
    for point in ("balanced", "high_sensitivity", "everything"):
        body = flag_everything_client.post(f"/api/v1/predict?operating_point={point}",
                                           data=upload(sample_bytes)).get_json()
        findings = body["findings"]
        assert [f["score"] for f in findings] == sorted((f["score"] for f in findings), reverse=True)
        for f in findings:
            x0, y0, x1, y1 = f["box"]
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
            assert f["level"] in ("definite", "possible") and 0 <= f["score"] <= 1
        if body["label"] == "fractured":
            assert findings, point  # a fractured verdict always shows where
        else:
            assert all(f["level"] == "possible" for f in findings), point
    assert body["label"] == "fractured"  # at threshold 0


def test_the_page_draws_each_finding_as_a_box_with_a_legend(flag_everything_client, sample_bytes):
    page = post_form(flag_everything_client, upload(sample_bytes) | {"operating_point": "everything"}).get_data(
        as_text=True)
    drawing = page[page.index('class="xray-boxes"'):]
    boxes = re.findall(r'<rect class="box (definite|possible)"', drawing[:drawing.index("</svg>")])
    listed = re.findall(r'<li class="finding (definite|possible)">', page)
    assert boxes == listed and len(boxes) >= 1
    assert "definite: a fracture here is likely" in page and "possible: worth a second look" in page
    assert 'alt="The X-ray with the model\'s heatmap overlaid"' in page  # the heatmap stays beside the boxes


def test_api_heatmap_is_a_png_on_request(client, sample_bytes):
    body = client.post("/api/v1/predict?heatmap=1", data=upload(sample_bytes)).get_json()
    png = base64.b64decode(body["heatmap_png"])
    assert png.startswith(b"\x89PNG")


def test_the_api_overlays_the_heatmap_on_the_image_as_the_model_saw_it(app, client, sample_bytes):
    # The API's overlay is the model's view (its input without the letterbox's bars), the page's
    # the larger display image; the verdict is the same either way.
    size = app.extensions["fracture_model"].input_size
    height, width = cv2.imdecode(np.frombuffer(sample_bytes, np.uint8), cv2.IMREAD_GRAYSCALE).shape
    body = client.post("/api/v1/predict?heatmap=1", data=upload(sample_bytes)).get_json()
    shown = cv2.imdecode(np.frombuffer(base64.b64decode(body["heatmap_png"]), np.uint8), cv2.IMREAD_COLOR)
    assert max(shown.shape[:2]) == size and abs(shown.shape[1] / shown.shape[0] - width / height) < 0.05
    page = post_form(client, upload(sample_bytes)).get_data(as_text=True)
    overlay_uri = re.search(r'<img src="data:image/jpeg;base64,([^"]+)" alt="The X-ray with the model', page)
    on_page = cv2.imdecode(np.frombuffer(base64.b64decode(overlay_uri.group(1)), np.uint8), cv2.IMREAD_COLOR)
    assert on_page.shape[:2] == (height, width) and f"{body['probability'] * 100:.0f}%" in page


def test_api_heatmap_as_a_jpeg_on_request_under_a_key_naming_it(client, sample_bytes):
    # A client that asks for JPEG gets a ninth of the bytes; the key says which format came.
    as_png = client.post("/api/v1/predict?heatmap=1", data=upload(sample_bytes)).get_json()
    as_jpeg = client.post("/api/v1/predict?heatmap=jpeg", data=upload(sample_bytes)).get_json()
    assert "heatmap_png" not in as_jpeg and "heatmap_jpeg" not in as_png
    jpeg = base64.b64decode(as_jpeg["heatmap_jpeg"])
    png = base64.b64decode(as_png["heatmap_png"])
    assert jpeg.startswith(b"\xff\xd8") and len(jpeg) < len(png)
    decode = lambda data: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # noqa: E731
    assert cv2.PSNR(decode(jpeg), decode(png)) > 30  # the tiny test model's 64-pixel view: chroma shows more
    verdict = lambda answer: {key: value for key, value in same_answer(answer).items()  # noqa: E731
                              if not key.startswith("heatmap_")}
    assert verdict(as_jpeg) == verdict(as_png)
    study = client.post("/api/v1/studies?heatmap=jpeg", data=upload(sample_bytes)).get_json()
    assert base64.b64decode(study["images"][0]["heatmap_jpeg"]).startswith(b"\xff\xd8")


def test_the_page_shows_the_heatmap_as_a_jpeg_and_the_xray_as_a_png(client, sample_bytes):
    page = post_form(client, upload(sample_bytes)).get_data(as_text=True)
    heatmap = re.search(r'<img src="data:(image/\w+);base64,[^"]+" alt="The X-ray with the model', page)
    assert heatmap and heatmap.group(1) == "image/jpeg"
    assert '<image href="data:image/png;base64,' in page  # the X-ray under the boxes stays lossless


def test_api_and_page_agree_with_the_model_called_directly(client, app, sample_bytes):
    from fracture_web.imaging import preprocess

    model = app.extensions["fracture_model"]
    expected = model.predict(preprocess(sample_bytes, model.input_size)).probability
    body = client.post("/api/v1/predict", data=upload(sample_bytes)).get_json()
    assert body["probability"] == pytest.approx(expected, abs=1e-5)


def test_api_takes_the_file_as_the_request_body_too(client, sample_bytes):
    # A PACS script or curl --data-binary sends the bytes themselves, with no form around them.
    from_form = client.post("/api/v1/predict?heatmap=1", data=upload(sample_bytes)).get_json()
    for content_type in ("image/jpeg", "application/octet-stream", "application/dicom"):
        raw = client.post("/api/v1/predict?heatmap=1", data=sample_bytes, content_type=content_type)
        assert raw.status_code == 200 and same_answer(raw.get_json()) == same_answer(from_form), content_type
    empty = client.post("/api/v1/predict", data=b"", content_type="application/dicom")
    assert empty.status_code == 400 and "body is empty" in empty.get_json()["error"]
    wrong = client.post("/api/v1/predict", data=b"not an image", content_type="image/png")
    assert wrong.status_code == 400 and "not an image" in wrong.get_json()["error"]


def test_file_format_comes_from_the_bytes_not_the_name(client, sample_bytes):
    body = client.post("/api/v1/predict", data=upload(sample_bytes, name="scan.txt")).get_json()
    assert "label" in body
    response = client.post("/api/v1/predict", data=upload(b"not an image at all", name="scan.png"))
    assert response.status_code == 400 and "not an image" in response.get_json()["error"]


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"hello, this is text", "not an image"),
])
def test_bad_files_get_a_clear_message_on_the_page_and_in_the_api(client, data, message):
    page = post_form(client, upload(data))
    assert page.status_code == 400 and message in page.get_data(as_text=True)
    api = client.post("/api/v1/predict", data=upload(data))
    assert api.status_code == 400 and message in api.get_json()["error"]


def test_missing_or_misnamed_field_is_explained(client, sample_bytes):
    response = client.post("/api/v1/predict", data=upload(sample_bytes, field="image"))
    assert response.status_code == 400 and "'file'" in response.get_json()["error"]
    assert "'image'" in response.get_json()["error"]


def test_several_files_are_refused(client, sample_bytes):
    data = {"file": [(io.BytesIO(sample_bytes), "a.jpg"), (io.BytesIO(sample_bytes), "b.jpg")]}
    response = client.post("/api/v1/predict", data=data)
    assert response.status_code == 400 and "one image" in response.get_json()["error"]


def test_unknown_operating_point_is_refused(client, sample_bytes):
    response = client.post("/api/v1/predict?operating_point=lucky", data=upload(sample_bytes))
    assert response.status_code == 400 and "balanced" in response.get_json()["error"]


def test_oversized_upload_gets_413_with_a_message(tiny_model_dir, sample_bytes, reads_url):
    app = create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir), "MAX_CONTENT_LENGTH": 1024 * 1024,
                      "DATABASE_URL": reads_url})
    client = app.test_client()
    big = sample_bytes + b"\0" * (2 * 1024 * 1024)
    api = client.post("/api/v1/predict", data=upload(big))
    assert api.status_code == 413 and "too large" in api.get_json()["error"]
    page = post_form(client, upload(big))
    assert page.status_code == 413 and "too large" in page.get_data(as_text=True)


def test_healthz_reports_the_model_version_when_loaded(client, app):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["model_version"] == app.extensions["fracture_model"].version
    # training's export wrote and checked the .tflite file, so the default backend serves it
    assert response.get_json()["backend"] == "litert"


def test_healthz_is_503_and_predictions_refused_without_a_model(sample_bytes, reads_url):
    client = create_app({"TESTING": True, "LOAD_MODEL": False, "DATABASE_URL": reads_url}).test_client()
    assert client.get("/healthz").status_code == 503
    response = client.post("/api/v1/predict", data=upload(sample_bytes))
    assert response.status_code == 503 and "not loaded" in response.get_json()["error"]


def test_the_model_takes_its_label_names_from_its_metadata(tiny_model_dir, sample_bytes, tmp_path, reads_url):
    import json
    import shutil

    from fracture_web.inference import ModelLoadError

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    metadata = json.loads((model_dir / "metadata.json").read_text())
    metadata["labels"] = ["intact", "broken"]
    # Two operating points whose thresholds every probability passes and none does.
    metadata["operating_points"] |= {"always": {"threshold": 0.0}, "never": {"threshold": 2.0}}
    (model_dir / "metadata.json").write_text(json.dumps(metadata))
    client = create_app({"TESTING": True, "MODEL_DIR": str(model_dir), "DATABASE_URL": reads_url}).test_client()
    for point, label, verdict in (("always", "broken", "Fracture suspected"), ("never", "intact", "No fracture detected")):
        body = client.post(f"/api/v1/predict?operating_point={point}", data=upload(sample_bytes)).get_json()
        assert body["label"] == label
        page = post_form(client, upload(sample_bytes) | {"operating_point": point}).get_data(as_text=True)
        assert verdict in page  # the verdict's wording is the app's, whatever the model calls its classes
    for garbled in (None, ["fractured"], ["same", "same"], "not_fractured,fractured", [0, 1]):
        if garbled is None:
            del metadata["labels"]
        else:
            metadata["labels"] = garbled
        (model_dir / "metadata.json").write_text(json.dumps(metadata))
        with pytest.raises(ModelLoadError, match="labels"):
            create_app({"TESTING": True, "MODEL_DIR": str(model_dir)})


def test_a_missing_model_directory_fails_at_startup(tmp_path):
    from fracture_web.inference import ModelLoadError

    with pytest.raises(ModelLoadError, match="metadata.json"):
        create_app({"MODEL_DIR": str(tmp_path / "nowhere")})


def test_unknown_pages_get_a_404_page_not_a_traceback(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404 and "no page at this address" in response.get_data(as_text=True)


def test_every_response_has_security_headers_and_the_page_loads_nothing_external(client):
    response = client.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert not re.search(r'(src|href)="(https?:)?//', response.get_data(as_text=True))


def test_no_answer_that_carries_a_result_is_kept_in_a_cache(client, sample_bytes):
    # A shared reporting station's browser, or a proxy, must not keep a patient's verdict and image.
    page = post_form(client, upload(sample_bytes))
    api = client.post("/api/v1/predict?heatmap=1", data=upload(sample_bytes))
    for response in (page, api, client.get("/"), client.get("/no-such-page")):
        assert response.headers["Cache-Control"] == "no-store"
    assert "no-store" not in client.get("/static/style.css").headers.get("Cache-Control", "")


def test_large_uploads_stay_in_memory(app, sample_bytes):
    from flask import request

    big = sample_bytes + b"\0" * (1024 * 1024)  # over Werkzeug's 500 KB limit for in-memory files
    with app.test_request_context("/api/v1/predict", method="POST", data=upload(big)):
        stream = request.files["file"].stream
        assert isinstance(stream, io.BytesIO)  # Werkzeug's default would spool to a temp file
        assert stream.getvalue() == big


def test_a_body_is_received_whole_in_large_pieces_and_a_cut_off_one_ends_where_it_stops(monkeypatch):
    from fracture_web.web import uploads

    body = bytes(range(256)) * 5000  # 1.28 MB
    monkeypatch.setattr(uploads, "PIECE", 100_000)
    reader = uploads.LargeReads(io.BytesIO(body), len(body))
    assert reader.read(70_000) + reader.read(1) + reader.read() == body  # in whatever sizes are asked for
    cut_off = uploads.LargeReads(io.BytesIO(body[:1000]), len(body))  # the client went away mid-upload
    assert cut_off.read() == body[:1000] and cut_off.read(10) == b""


def test_16_bit_and_rgb_versions_of_an_xray_get_the_same_answer(client, sample_bytes):
    gray = cv2.imdecode(np.frombuffer(sample_bytes, np.uint8), cv2.IMREAD_GRAYSCALE)
    versions = {"8-bit": gray, "16-bit": gray.astype(np.uint16) * 257, "rgb": cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)}
    probabilities = {}
    for name, image in versions.items():
        data = cv2.imencode(".png", image)[1].tobytes()
        body = client.post("/api/v1/predict", data=upload(data, name="xray.png")).get_json()
        probabilities[name] = body["probability"]
    assert probabilities["16-bit"] == pytest.approx(probabilities["8-bit"], abs=1e-4)
    assert probabilities["rgb"] == pytest.approx(probabilities["8-bit"], abs=1e-4)


def test_each_prediction_leaves_one_audit_line_without_patient_data(tiny_model_dir, sample_bytes, tmp_path,
                                                                    reads_url):
    import hashlib
    import json

    audit_file = tmp_path / "audit.log"
    client = create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir), "AUDIT_LOG": str(audit_file),
                         "DATABASE_URL": reads_url}).test_client()
    response = client.post("/api/v1/predict", data=upload(sample_bytes, name="Doe_John_1970-01-01.jpg"))
    assert audit_file.read_text() == ""  # the answer does not wait for the line (hashing a DICOM takes ms) ...
    response.close()  # ... which is written once the server has sent the answer and closes it
    client.post("/api/v1/predict", data=upload(b"not an image")).close()  # refused: no prediction, no audit line
    lines = audit_file.read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["sha256"] == hashlib.sha256(sample_bytes).hexdigest()
    assert entry["request_id"] == response.headers["X-Request-ID"]
    assert entry["verdict"] == response.get_json()["label"]
    assert entry["probability"] == response.get_json()["probability"]
    assert set(entry) == {"time", "request_id", "sha256", "model_version", "operating_point", "probability", "verdict"}
    assert "Doe" not in lines[0]


def test_cross_site_browser_posts_are_refused_but_scripts_and_the_page_itself_work(client, sample_bytes):
    def post(headers):
        return client.post("/api/v1/predict", data=upload(sample_bytes), headers=headers).status_code

    assert post({"Sec-Fetch-Site": "cross-site"}) == 403
    assert post({"Origin": "http://evil.example"}) == 403
    assert post({"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}) == 200
    assert post({"Origin": "http://localhost"}) == 200  # the test client's own host
    assert post({}) == 200  # curl and scripts send neither header
    page = post_form(client, upload(sample_bytes), headers={"Origin": "http://evil.example"})
    assert page.status_code == 403 and "other web sites" in page.get_data(as_text=True)


def test_a_form_post_without_the_pages_token_is_refused_with_advice(client, sample_bytes):
    forged = client.post("/", data=upload(sample_bytes), content_type="multipart/form-data")
    assert forged.status_code == 400 and "Reload the page" in forged.get_data(as_text=True)
    client.get("/")  # a real session cookie, but a token that this app did not sign
    wrong = client.post("/", data=upload(sample_bytes) | {"csrf_token": "made-up"},
                        content_type="multipart/form-data")
    assert wrong.status_code == 400 and "Reload the page" in wrong.get_data(as_text=True)


def test_the_api_needs_neither_token_nor_cookie(app, sample_bytes):
    response = app.test_client(use_cookies=False).post("/api/v1/predict", data=upload(sample_bytes))
    assert response.status_code == 200 and "Set-Cookie" not in response.headers


def test_a_form_from_one_worker_is_accepted_by_another(tiny_model_dir, sample_bytes, reads_url):
    first, second = (create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir), "DATABASE_URL": reads_url})
                     .test_client() for _ in range(2))
    page = first.get("/")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    cookie = first.get_cookie("session")
    assert "HttpOnly" in page.headers["Set-Cookie"] and "SameSite=Lax" in page.headers["Set-Cookie"]
    second.set_cookie("session", cookie.value)
    response = second.post("/", data=upload(sample_bytes) | {"csrf_token": token}, content_type="multipart/form-data")
    assert response.status_code == 200 and "Probability of a fracture" in response.get_data(as_text=True)


def test_the_secret_key_comes_from_the_environment_or_is_generated_once_per_install(tmp_path, monkeypatch, reads_url):
    from fracture_web.web.csrf import instance_secret

    key_file = tmp_path / "instance" / "secret_key"
    key = instance_secret(key_file)
    assert len(key) == 64 and key_file.stat().st_mode & 0o777 == 0o600
    assert instance_secret(key_file) == key  # every worker and every restart reads the same key
    assert instance_secret(tmp_path / "other_install" / "secret_key") != key
    assert list(key_file.parent.iterdir()) == [key_file]  # no temporary file left behind
    monkeypatch.setenv("FRACTURE_SECRET_KEY", "from-the-environment")
    assert create_app({"LOAD_MODEL": False, "DATABASE_URL": reads_url}).config["SECRET_KEY"] == "from-the-environment"


def test_a_batch_of_uploads_leaves_no_file_behind(client, sample_bytes, tmp_path, monkeypatch):
    import tempfile

    from fracture_web.config import PROJECT_ROOT

    # The app's temp dir is a private one, so other programs' temp files cannot confuse the check.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def files() -> set:
        places = [PROJECT_ROOT / name for name in ("fracture_web", "templates", "static", "model", "data")]
        return {p for place in places + [tmp_path] for p in place.rglob("*") if p.is_file()}

    before = files()
    big = sample_bytes + b"\0" * (1024 * 1024)  # over Werkzeug's threshold for spooling to disk
    for data in (sample_bytes, big, b"garbage", b""):
        client.post("/api/v1/predict", data=upload(data, name="../../etc/evil name.jpg"))
        post_form(client, upload(data, name="../../etc/evil name.jpg"))
    assert {p for p in files() - before if "__pycache__" not in p.parts} == set()


def test_json_answers_say_what_flasks_own_encoder_would(app):
    # orjson writes the API's answers (the overlay's base64 is 0.4 MB); nothing a client reads changes.
    import datetime
    import json
    import uuid

    from flask.json.provider import DefaultJSONProvider

    answer = {"probability": 0.123457, "label": "fractured", "findings": [{"box": [1, 2, 3, 4], "score": 1e-7}],
              "warnings": ["Ünïcode"], "checked": datetime.date(2026, 11, 29), "id": uuid.UUID(int=7), "none": None}
    ours, flasks = app.json.dumps(answer), DefaultJSONProvider(app).dumps(answer)
    assert json.loads(ours) == json.loads(flasks)
    assert list(json.loads(ours)) == sorted(answer)
    with app.test_request_context():
        response = app.json.response(answer)
    assert response.mimetype == "application/json" and json.loads(response.get_data()) == json.loads(flasks)

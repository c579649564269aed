"""The bad-input corpus, generated in code, through the API, the page and the command line:
valid images of every kind get a verdict; everything else a clear 4xx, never a 500."""
from __future__ import annotations

import io
import zipfile

import cv2
import numpy as np
import pytest
from PIL import Image

from helpers import SAMPLES, post_form, run_script
from dicom_files import jpeg2000, radiograph_dataset, to_bytes


def xray(size=(300, 240)) -> np.ndarray:
    gray = cv2.imdecode(np.frombuffer(SAMPLES[0].read_bytes(), np.uint8), cv2.IMREAD_GRAYSCALE)
    return cv2.resize(gray, size[::-1])


def pil_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def valid_corpus() -> dict[str, bytes]:
    gray = Image.fromarray(xray())
    rgba = gray.convert("RGBA")
    frames = [gray, gray.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    return {
        "8-bit PNG": pil_bytes(gray, "PNG"),
        "16-bit PNG": cv2.imencode(".png", xray().astype(np.uint16) * 257)[1].tobytes(),
        "RGB PNG": pil_bytes(gray.convert("RGB"), "PNG"),
        "RGBA PNG": pil_bytes(rgba, "PNG"),
        "palette PNG": pil_bytes(gray.convert("P"), "PNG"),
        "CMYK JPEG": pil_bytes(gray.convert("CMYK"), "JPEG"),
        "progressive JPEG": pil_bytes(gray, "JPEG", progressive=True),
        "TIFF": pil_bytes(gray, "TIFF"),
        "animated PNG (first frame)": pil_bytes(frames[0], "PNG", save_all=True, append_images=frames[1:]),
        "DICOM MONOCHROME1": to_bytes(radiograph_dataset(255 - xray(), "MONOCHROME1")),
        "DICOM 12-bit JPEG 2000": to_bytes(jpeg2000(radiograph_dataset(xray().astype(np.uint16) * 16, bits_stored=12))),
        "DICOM multi-frame (first frame)": to_bytes(radiograph_dataset(np.stack([xray(), 255 - xray()]))),
    }


def invalid_dicoms() -> dict[str, bytes]:
    ct, bomb, no_pixels = (radiograph_dataset(xray()) for _ in range(3))
    ct.Modality = "CT"
    bomb.Rows, bomb.Columns = 50_000, 50_000
    del no_pixels.PixelData
    whole = to_bytes(radiograph_dataset(xray()))
    return {"DICOM CT": to_bytes(ct), "DICOM pixel bomb": to_bytes(bomb),
            "DICOM without pixel data": to_bytes(no_pixels),
            "DICOM colour": to_bytes(radiograph_dataset(np.repeat(xray()[..., None], 3, axis=2), "RGB")),
            "DICOM cut in half": whole[:len(whole) // 2], "DICOM preamble only": whole[:132]}


def without_a_picture() -> dict[str, bytes]:
    """Files that decode but hold nothing a verdict could rest on: noise, or a blank image but for a
    pixel or two (also a real X-ray pressed into one grey by a single extreme pixel)."""
    rng = np.random.default_rng(0)
    noise, large_noise = (rng.integers(0, 256, size, dtype=np.uint8) for size in ((300, 240), (2000, 1600)))
    one_off = np.full((300, 240), 128, np.uint8)
    one_off[10, 10] = 129
    hot_pixel = xray().astype(np.uint16)
    hot_pixel[0, 0] = 65535
    return {"uniform noise": pil_bytes(Image.fromarray(noise), "PNG"),
            "large noise as JPEG": cv2.imencode(".jpg", large_noise)[1].tobytes(),
            "one pixel off blank": pil_bytes(Image.fromarray(one_off), "PNG"),
            "X-ray under one hot pixel (16-bit)": cv2.imencode(".png", hot_pixel)[1].tobytes()}


def invalid_corpus() -> dict[str, bytes]:
    png = pil_bytes(Image.fromarray(xray()), "PNG")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("xray.png", png)
    return {
        "empty file": b"",
        "text": b"Patient: Jane Doe\nNo fracture seen.\n",
        "HTML": b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>",
        "PDF": b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
        "ZIP": archive.getvalue(),
        "SVG": b'<svg xmlns="http://www.w3.org/2000/svg" width="400" height="400"><rect width="400" height="400"/></svg>',
        "header without image data": png[:64],
        "tiny image": pil_bytes(Image.new("L", (40, 40), 128), "PNG"),
        "8:1 strip": pil_bytes(Image.fromarray(np.tile(np.arange(900) % 256, (100, 1)).astype(np.uint8)), "PNG"),
        "GIF": pil_bytes(Image.fromarray(xray()), "GIF"),
    } | invalid_dicoms() | without_a_picture()


@pytest.fixture(scope="module")
def baseline(tiny_model_dir):
    from fracture_web import create_app

    client = create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir)}).test_client()
    body = client.post("/api/v1/predict", data={"file": (io.BytesIO(SAMPLES[0].read_bytes()), "x.jpg")}).get_json()
    return client, body["probability"]


@pytest.mark.parametrize("name", list(valid_corpus()))
def test_every_valid_kind_of_image_gets_a_verdict(baseline, name):
    client, _ = baseline
    data = valid_corpus()[name]
    response = client.post("/api/v1/predict", data={"file": (io.BytesIO(data), "upload.bin")})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["label"] in ("fractured", "not_fractured")
    if "animated" in name:
        assert any("only the first" in w for w in response.get_json()["warnings"])


@pytest.mark.parametrize("name", list(invalid_corpus()))
def test_every_invalid_file_is_refused_clearly_by_api_and_page(baseline, name):
    client, _ = baseline
    data = invalid_corpus()[name]
    api = client.post("/api/v1/predict", data={"file": (io.BytesIO(data), "../../etc/passwd.png")})
    assert api.status_code == 400 and len(api.get_json()["error"]) > 10
    page = post_form(client, {"file": (io.BytesIO(data), "<script>x</script>.png")})
    assert page.status_code == 400 and "could not be analysed" in page.get_data(as_text=True)
    assert "<script>x</script>" not in page.get_data(as_text=True)


@pytest.mark.parametrize("disposition", [b'name="file"; filename=""', b'name="file"; filename="r\xf6ntgen.jpg"',
                                         b'name="file"'], ids=["empty name", "Latin-1 name", "no name"])
def test_the_file_name_does_not_matter_only_the_content(baseline, disposition):
    # An empty or non-UTF-8 file name made a good image "no file" (Werkzeug dropped the whole form).
    client, probability = baseline
    body = (b"--b\r\nContent-Disposition: form-data; " + disposition + b"\r\nContent-Type: image/jpeg\r\n\r\n"
            + SAMPLES[0].read_bytes() + b"\r\n--b--\r\n")
    response = client.post("/api/v1/predict", data=body, content_type="multipart/form-data; boundary=b")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["probability"] == pytest.approx(probability, abs=1e-6)


def test_a_form_sent_without_choosing_a_file_is_told_so(baseline):
    client, _ = baseline
    body = b'--b\r\nContent-Disposition: form-data; name="file"; filename=""\r\n\r\n\r\n--b--\r\n'
    response = client.post("/api/v1/predict", data=body, content_type="multipart/form-data; boundary=b")
    assert response.status_code == 400 and "No file was uploaded" in response.get_json()["error"]


def test_after_the_corpus_the_server_is_healthy_and_answers_as_before(baseline):
    client, probability = baseline
    for data in list(invalid_corpus().values()) + list(valid_corpus().values()):
        client.post("/api/v1/predict", data={"file": (io.BytesIO(data), "x")})
    assert client.get("/healthz").status_code == 200
    body = client.post("/api/v1/predict", data={"file": (io.BytesIO(SAMPLES[0].read_bytes()), "x.jpg")}).get_json()
    assert body["probability"] == pytest.approx(probability, abs=1e-6)


def test_the_cli_refuses_the_invalid_corpus_and_reads_the_valid_one(tiny_model_dir, tmp_path):
    paths = []
    for corpus in (invalid_corpus(), valid_corpus()):
        for i, data in enumerate(corpus.values()):
            path = tmp_path / f"{len(paths)}_{i}.png"
            path.write_bytes(data)
            paths.append(path)
    done = run_script("predict.py", "--model", str(tiny_model_dir), "--image", *map(str, paths))
    assert done.returncode == 1
    verdicts = [line for line in done.stdout.splitlines() if line and not line.startswith(" ")]  # not the warnings
    assert len(verdicts) == len(valid_corpus())
    assert sum("error:" in line for line in done.stderr.splitlines()) == len(invalid_corpus())

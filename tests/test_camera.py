"""A clinician with no radiograph file points the phone's camera at the film or the screen: the
camera page shows the picture with a frame guide, and a captured frame is read as a photo."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from fracture_web.photo import PHOTO_WARNING
from fracture_web.photo_render import render_photo
from helpers import SAMPLES, running_gunicorn

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_the_upload_page_links_to_the_camera_page_which_has_a_frame_guide_and_a_capture_button(client):
    index = client.get("/").get_data(as_text=True)
    assert 'href="/camera"' in index
    page = client.get("/camera")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "<video" in html and 'class="frame-guide"' in html
    assert "Capture and analyse" in html and 'name="csrf_token"' in html and "/static/camera.js" in html
    assert 'data-analyse="/"' in html  # frames go through the upload form's own endpoint


def write_y4m(path: Path, bgr: np.ndarray, frames: int = 5) -> Path:
    """A still picture as a short raw video Chromium's fake camera can play (YUV 4:2:0)."""
    height, width = (side - side % 2 for side in bgr.shape[:2])
    yuv = cv2.cvtColor(np.ascontiguousarray(bgr[:height, :width]), cv2.COLOR_BGR2YUV_I420)
    header = f"YUV4MPEG2 W{width} H{height} F5:1 Ip A1:1 C420jpeg\n".encode()
    path.write_bytes(header + (b"FRAME\n" + yuv.tobytes()) * frames)
    return path


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make test installs it)")
def test_a_clinician_photographs_a_film_on_the_camera_page_and_sees_the_verdict_and_boxes(tmp_path):
    from playwright.sync_api import sync_playwright

    film = render_photo(cv2.imread(str(SAMPLES[0]), cv2.IMREAD_GRAYSCALE), "film", np.random.default_rng(0)).image
    video = write_y4m(tmp_path / "film.y4m", film)
    with running_gunicorn() as (url, _port), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={video}"])
        page = browser.new_page(viewport={"width": 1000, "height": 1400})
        external = []
        page.on("request", lambda r: external.append(r.url) if not r.url.startswith((url, "data:", "blob:")) else None)
        page.goto(url)
        page.click("text=Photograph the film or the screen")
        page.wait_for_selector("button.capture:enabled", timeout=30_000)  # the camera has started
        assert page.locator(".frame-guide").is_visible()
        page.click("button.capture")
        page.wait_for_selector(".camera-result .verdict", timeout=60_000)
        result = page.inner_text(".camera-result")
        assert page.inner_text(".camera-result .verdict") == "Fracture suspected"
        assert PHOTO_WARNING in result
        assert page.locator(".camera-result svg.xray-boxes rect.box").count() >= 1
        # Live mode: about a frame a second, the verdict and the boxes over the picture.
        page.check("input.live")
        page.wait_for_selector(".live-result:not([hidden]) .live-verdict", timeout=60_000)
        assert page.inner_text(".live-result .live-verdict") == "Fracture suspected"
        assert page.locator(".live-result svg.xray-boxes rect.box").count() >= 1
        page.uncheck("input.live")
        browser.close()
    assert external == []  # nothing loaded from outside the app


def test_live_frames_are_answered_but_only_a_captured_frame_is_kept_for_the_sites_statistics(app, client,
                                                                                             sample_bytes):
    import io

    from fracture_web.web.reads import get_store
    from helpers import post_form

    def kept() -> int:
        with app.app_context():
            return len(get_store().all())

    before = kept()
    live = post_form(client, {"file": (io.BytesIO(sample_bytes), "camera.jpg"), "live": "1"})
    assert live.status_code == 200 and 'class="result' in live.get_data(as_text=True)
    assert 'name="read"' not in live.get_data(as_text=True) and kept() == before  # a second of video, not a case
    captured = post_form(client, {"file": (io.BytesIO(sample_bytes), "camera.jpg")})
    assert 'name="read"' in captured.get_data(as_text=True) and kept() == before + 1

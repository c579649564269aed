"""A radiologist opens the node's results in OHIF, the web viewer sites try first: Orthanc holds a
fractured leg's radiograph that the node has reported on (a Secondary Capture and a TID 1500 report,
delivered by DICOMweb); OHIF (npm's ``@ohif/app``, served locally on Orthanc's DICOMweb) shows the
Secondary Capture, and shows the report's boxes drawn where the findings are on the radiograph itself.

Orthanc, its DICOMweb plugin and Chromium are Debian packages (``make test`` installs them); OHIF is
fetched once with npm into pytest's cache (``make ohif``). Each is skipped with its reason when absent.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import highdicom as hd
import numpy as np
import pytest

from fracture_web import overlay

from dicom_files import radiograph_dataset
from helpers import SAMPLES
from servers import DICOMWEB_PLUGIN, ORTHANC, ohif_dist, reported_study_in_ohif

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(ORTHANC is None, reason="Orthanc is not installed (make test installs the Debian package)"),
    pytest.mark.skipif(DICOMWEB_PLUGIN is None, reason="Orthanc's DICOMweb plugin is not installed (make test "
                       "installs the Debian package 'orthanc-dicomweb')"),
    pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make test installs it)"),
]
LEG = next(path for path in SAMPLES if path.name.startswith("leg_fractured"))
#: The SR viewport draws a report's regions in this colour (OHIF's DICOMSRDisplay tool).
SR_YELLOW = (255, 255, 0)


@pytest.fixture(scope="module")
def study(request, tmp_path_factory):
    try:
        dist = ohif_dist(Path(request.config.cache.mkdir("ohif")))
    except OSError as err:
        pytest.skip(f"OHIF could not be fetched with npm here: {err}")
    pixels = cv2.imdecode(np.frombuffer(LEG.read_bytes(), np.uint8), cv2.IMREAD_GRAYSCALE)
    source = radiograph_dataset(pixels, BodyPartExamined="LEG")
    with reported_study_in_ohif(tmp_path_factory.mktemp("ohif"), dist, source) as reported:
        yield reported, pixels


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def findings_in(report) -> list[tuple[np.ndarray, str]]:
    """Each finding's box (x0, y0, x1, y1) and level, from the report as the node wrote it."""
    content = hd.sr.ComprehensiveSR.from_dataset(report).content
    found = []
    for group in content.get_planar_roi_measurement_groups():
        (level,) = group.get_qualitative_evaluations()
        found.append((group.roi.value[[0, 2]].ravel(), level.value.meaning.lower()))
    return found


def open_viewer(browser, url: str):
    """A page on ``url`` as a returning user (no onboarding tour), once OHIF has drawn the viewport."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.add_init_script("localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour']))")
    page.goto(url)
    page.wait_for_selector("canvas.cornerstone-canvas", timeout=60_000)
    return page


def keep_report_as_shown(page) -> None:
    """Answer OHIF's question whether to track the report's measurements: no, the report stays as written."""
    page.get_by_role("button", name="No", exact=True).click(timeout=30_000)
    page.wait_for_timeout(500)


def screenshot(page) -> np.ndarray:
    """The page as an RGB array."""
    png = np.frombuffer(page.screenshot(), np.uint8)
    return cv2.cvtColor(cv2.imdecode(png, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def drawn_rectangles(page, count: int) -> np.ndarray:
    """The closed 5-point polylines OHIF draws over the viewport, as (x0, y0, x1, y1) in page pixels."""
    page.wait_for_function(f"""() => Array.from(document.querySelectorAll('svg.svg-layer polyline'))
        .filter(p => p.points.length === 5).length >= {count}""", timeout=60_000)
    return np.array(page.evaluate("""() => Array.from(document.querySelectorAll('svg.svg-layer polyline'))
        .filter(p => p.points.length === 5).map(p => {
            const box = p.getBoundingClientRect();
            return [box.left, box.top, box.right, box.bottom]; })"""))


def image_to_page(boxes: np.ndarray, drawn: np.ndarray) -> tuple[float, np.ndarray]:
    """The scale and offset that take image pixels to page pixels, fitted on the boxes' corners
    (matched by size: a scale keeps their order); fails unless every box lands on a drawn one."""
    by_area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    boxes, drawn = boxes[np.argsort(by_area(boxes))], drawn[np.argsort(by_area(drawn))]
    corners, on_page = boxes.reshape(-1, 2), drawn.reshape(-1, 2)
    scale = np.sum((corners - corners.mean(0)) * (on_page - on_page.mean(0))) / np.sum((corners - corners.mean(0)) ** 2)
    offset = on_page.mean(0) - scale * corners.mean(0)
    assert np.abs(scale * corners + offset - on_page).max() < 2.0, (boxes, drawn)
    return scale, offset


def test_the_radiologist_sees_the_reports_boxes_drawn_on_the_radiograph(study, browser):
    reported, pixels = study
    findings = findings_in(reported.report)
    assert findings, "the shipped model marks no finding on the fractured leg"
    page = open_viewer(browser, reported.url(reported.sr_series))
    drawn = drawn_rectangles(page, len(findings))
    keep_report_as_shown(page)
    drawn = drawn_rectangles(page, len(findings))
    assert len(drawn) == len(findings)
    scale, offset = image_to_page(np.array([box for box, _level in findings]), drawn)
    shot = screenshot(page)
    # The radiograph under the boxes is the source image, placed as the boxes say: the page's grey
    # levels follow the source's pixels at the same points.
    rows, cols = np.mgrid[0:pixels.shape[0]:12, 0:pixels.shape[1]:12].reshape(2, -1)
    x, y = np.round(scale * np.stack([cols + 0.5, rows + 0.5]) + offset[:, None]).astype(int)
    canvas = page.locator("canvas.cornerstone-canvas").first.bounding_box()
    inside = ((x >= canvas["x"]) & (x < canvas["x"] + canvas["width"] - 1)
              & (y >= canvas["y"]) & (y < canvas["y"] + canvas["height"] - 1))
    seen = shot[y[inside], x[inside]].mean(axis=1)
    assert inside.mean() > 0.8 and np.corrcoef(seen, pixels[rows[inside], cols[inside]])[0, 1] > 0.9
    for x0, y0, x1, _y1 in drawn.round().astype(int):  # and the boxes are painted, not only in the DOM
        edge = shot[y0 - 1:y0 + 2, x0:x1 + 1].astype(int)
        assert (np.abs(edge - SR_YELLOW).max(axis=2) < 60).any(axis=0).mean() > 0.3
    page.close()


def test_the_secondary_capture_shows_with_its_burned_in_boxes(study, browser):
    reported, _pixels = study
    colours = {overlay.BOX_STYLES[level][0] for _box, level in findings_in(reported.report)}

    def boxed_pixels(series: str) -> int:
        page = open_viewer(browser, reported.url(series))
        page.wait_for_timeout(3000)  # the image is drawn a moment after its canvas appears
        canvas = page.locator("canvas.cornerstone-canvas").first.bounding_box()
        x, y, w, h = (round(canvas[key]) for key in ("x", "y", "width", "height"))
        shown = screenshot(page)[y:y + h, x:x + w].astype(int)
        page.close()
        return sum(int((np.abs(shown - colour).max(axis=2) < 25).sum()) for colour in colours)

    in_sc = boxed_pixels(reported.sc_series)  # the SC: the radiograph with the boxes burned in
    assert in_sc > 200 and boxed_pixels(reported.source_series) < in_sc / 20  # the source has none (the
    # viewport's own blue frame and icons aside)

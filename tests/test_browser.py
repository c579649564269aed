"""A clinician in a real browser: headless Chromium against the app served by gunicorn."""
from __future__ import annotations

import re
import shutil

import pytest

from helpers import SAMPLES, running_gunicorn

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make test installs it)")]


@pytest.fixture(scope="module")
def server_url():
    """gunicorn with the repo's gunicorn.conf.py and the shipped model."""
    with running_gunicorn() as (url, _port):
        yield url


def test_clinician_uploads_a_fractured_xray_and_sees_verdict_bar_boxes_and_heatmap(server_url, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1200, "height": 1400})
        external = []
        page.on("request", lambda r: external.append(r.url) if not r.url.startswith((server_url, "data:", "blob:")) else None)
        page.goto(server_url)
        assert "Decision aid, not a diagnosis" in page.inner_text("header")
        page.locator("form").first.locator("input[type=file]").set_input_files(str(SAMPLES[0]))
        page.locator("form").first.locator("button[type=submit]").click()
        page.wait_for_selector(".verdict", timeout=30_000)
        verdict = page.inner_text(".verdict")
        assert verdict in ("Fracture suspected", "No fracture detected")
        assert page.locator("svg.confidence rect.fill").count() == 1
        assert page.locator("svg.confidence line.threshold").count() == 1
        heatmap = page.locator("img[alt*='heatmap']")
        assert heatmap.evaluate("img => img.complete && img.naturalWidth > 0")
        # A fractured radiograph: its findings are boxes on the X-ray, numbered as the list,
        # solid for definite and dashed for possible, with the legend beside them.
        assert verdict == "Fracture suspected"
        boxes = page.locator("svg.xray-boxes rect.box")
        listed = page.locator(".finding-list li").all_inner_texts()
        assert boxes.count() == len(listed) >= 1
        for i in range(boxes.count()):
            level = boxes.nth(i).get_attribute("class").split()[-1]
            dashes = boxes.nth(i).evaluate("r => getComputedStyle(r).strokeDasharray")
            assert (dashes == "none") == (level == "definite") and listed[i].lower().startswith(level)
            assert boxes.nth(i).bounding_box()["width"] > 2
        assert "definite" in page.inner_text(".box-legend") and "possible" in page.inner_text(".box-legend")
        shot = tmp_path / "result.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
    assert external == []  # nothing loaded from outside the app


def open_page(playwright, server_url: str):
    """A fresh headless Chromium tab on the app's upload page."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
    page = browser.new_page(viewport={"width": 1200, "height": 1400})
    page.goto(server_url)
    return browser, page


def upload_study(page, paths) -> None:
    """Choose several files in the page's one file input and send the form."""
    page.locator("form").first.locator("input[type=file]").set_input_files([str(path) for path in paths])
    assert page.inner_text(".chosen") == f"{len(paths)} images chosen: they will be read as one study."
    page.locator("form").first.locator("button[type=submit]").click()
    page.wait_for_selector(".study-views", timeout=60_000)


def test_clinician_uploads_three_views_and_sees_the_study_verdict_and_a_row_per_view(server_url):
    from playwright.sync_api import sync_playwright

    views = SAMPLES[:3]  # a fractured hand first, then two normal views
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, server_url)
        upload_study(page, views)
        assert page.inner_text(".study .verdict") == "Fracture suspected"  # the fractured view decides
        assert page.locator(".study > svg.confidence rect.fill").count() == 1
        rows = page.locator(".study-views tbody tr")
        assert rows.count() == len(views)
        assert rows.nth(0).locator(".view-verdict").inner_text() == "Fracture suspected"
        for i in range(rows.count()):
            thumbnail = rows.nth(i).locator("svg.xray-boxes")
            assert thumbnail.evaluate("svg => svg.querySelector('image').getBBox().width > 0")
            assert thumbnail.locator("rect.box").count() == rows.nth(i).locator(".finding-list li").count()
            assert rows.nth(i).locator(".view-probability").inner_text().strip().endswith("%")
        assert rows.nth(0).locator("rect.box").count() >= 1
        browser.close()


def test_a_study_of_four_views_prints_on_one_page(server_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser, page = open_page(playwright, server_url)
        upload_study(page, SAMPLES[:4])
        pdf = page.pdf(format="A4")  # the print stylesheet
        browser.close()
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == 1


def test_a_single_image_result_prints_on_one_page(server_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser, page = open_page(playwright, server_url)
        page.locator("form").first.locator("input[type=file]").set_input_files(str(SAMPLES[0]))
        page.locator("form").first.locator("button[type=submit]").click()
        page.wait_for_selector(".verdict", timeout=30_000)
        pdf = page.pdf(format="A4")  # the print stylesheet
        browser.close()
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == 1

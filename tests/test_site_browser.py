"""A radiologist in a real browser: reads the verdict, clicks their own read under it, and finds it
counted on the site page (headless Chromium against the app under gunicorn)."""
from __future__ import annotations

import shutil

import pytest

from helpers import SAMPLES, running_gunicorn

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make test installs it)")]


def test_a_read_clicked_on_the_result_page_is_counted_on_the_site_page(tmp_path):
    from playwright.sync_api import sync_playwright

    database = f"sqlite:///{tmp_path / 'reads.sqlite3'}"
    with running_gunicorn(FRACTURE_DATABASE_URL=database) as (url, _port), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1200, "height": 1400})
        page.goto(url)
        page.locator("form.upload input[type=file]").set_input_files(str(SAMPLES[0]))
        page.locator("form.upload button[type=submit]").click()
        page.wait_for_selector(".verdict", timeout=30_000)
        page.locator("form.read button[value=fractured]").click()
        # (a locator, not wait_for_function: the page's CSP forbids the eval that would poll with)
        page.locator("form.read .read-status", has_text="Saved: fracture.").wait_for(timeout=15_000)
        # The script saved it in place: the verdict is still on screen, the button shows the choice.
        assert page.locator(".verdict").count() == 1
        assert page.locator("form.read button[value=fractured]").get_attribute("aria-pressed") == "true"
        page.goto(url + "/site")
        assert page.inner_text(".read-count") == "1" and page.inner_text(".fractured-reads") == "1"
        assert page.locator(".site-plots svg").count() == 2
        page.screenshot(path=str(tmp_path / "site.png"), full_page=True)
        browser.close()

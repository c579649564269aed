"""The docs' OHIF screenshot: the node's report on a fractured leg, its boxes drawn by OHIF over the
radiograph, photographed in headless Chromium.

    python -m bench.ohif_screenshot --out docs/images/ohif-sr.png

The same servers as the browser test (tests/test_ohif.py, through tests/servers.py): Orthanc with
DICOMweb, the DICOM node with the shipped model reporting to it by STOW-RS, and OHIF (npm's
``@ohif/app``, fetched once into ``--cache``) served on Orthanc's DICOMweb. Needs Debian's orthanc,
orthanc-dicomweb and chromium, and npm.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from bench.local_server import PROJECT_ROOT
from bench.site_page_screenshot import CHROMIUM_FLAGS, compact_png

sys.path.insert(0, str(PROJECT_ROOT / "tests"))  # the test's servers and files
from dicom_files import radiograph_dataset  # noqa: E402
from servers import ohif_dist, reported_study_in_ohif  # noqa: E402

LEG = next((PROJECT_ROOT / "data" / "samples").glob("leg_fractured*.jpg"))


def screenshot(url: str, width: int, height: int) -> bytes:
    """The viewer on ``url`` once the report's regions are drawn, OHIF's tracking question answered no."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                             args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
        page.add_init_script("localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour']))")
        page.goto(url)
        page.wait_for_selector("svg.svg-layer polyline", timeout=60_000)
        page.get_by_role("button", name="No", exact=True).click(timeout=30_000)
        page.wait_for_timeout(1000)
        png = page.screenshot()
        browser.close()
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "fracture-ohif",
                        help="where npm's @ohif/app is kept between runs")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    args = parser.parse_args(argv)
    pixels = cv2.imdecode(np.frombuffer(LEG.read_bytes(), np.uint8), cv2.IMREAD_GRAYSCALE)
    source = radiograph_dataset(pixels, BodyPartExamined="LEG")
    with tempfile.TemporaryDirectory(prefix="ohif-screenshot-") as scratch, \
            reported_study_in_ohif(Path(scratch), ohif_dist(args.cache), source) as reported:
        png = compact_png(screenshot(reported.url(reported.sr_series), args.width, args.height))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(png)
    print(f"{args.out}: {len(png) // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The site page's screenshot for the docs: the shipped model on real FracAtlas radiographs from its
validation split, each given its dataset label as the reader's read, and ``/site`` photographed in
headless Chromium.

    python -m bench.site_page_screenshot --out docs/images/site-page.png

The app runs under gunicorn (one worker, one model thread, LiteRT) with a throwaway SQLite reads
database, so no real site's reads are touched. The sample is deterministic: the validation split of
the shipped model's own training seed, every fractured image up to ``--fractured`` and non-fractured
ones for the rest, posted in a shuffled order. The reads are the dataset's labels and nothing else
(no "unsure" is invented): they stand in for a radiologist's.
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from bench.loadgen import post_file
from bench.local_server import PROJECT_ROOT, running_gunicorn
from fracture_web.datasets import read_records
from fracture_web.training.splits import split_train_val

DATA = PROJECT_ROOT.parent / "shared" / "data" / "fracatlas"
MODEL = PROJECT_ROOT / "model"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
#: The API's words for a label (1 = fractured).
READ_OF_LABEL = {1: "fractured", 0: "not_fractured"}


def training_seed(model_dir: Path) -> int:
    """The seed the model was trained with (its split's), from its ``metadata.json``."""
    metadata = json.loads((model_dir / "metadata.json").read_text())
    return int(metadata["training"]["config"]["seed"])


def validation_sample(data_dir: Path, seed: int, size: int, fractured: int) -> list[tuple[Path, int]]:
    """``size`` validation images with their labels: all fractured ones up to ``fractured``, the rest not
    fractured, chosen and ordered by ``seed``."""
    _, validation = split_train_val(read_records(data_dir), seed=seed)
    rng = np.random.default_rng(seed)
    positives = rng.permutation(np.flatnonzero(validation.labels == 1))[:fractured]
    negatives = rng.permutation(np.flatnonzero(validation.labels == 0))[:size - len(positives)]
    order = rng.permutation(np.concatenate([positives, negatives]))
    return [(validation.paths[i], int(validation.labels[i])) for i in order]


def post_read(base_url: str, request_id: str, read: str) -> None:
    """``POST /api/v1/reads`` for one analysis; an HTTP error stops the run."""
    body = json.dumps({"request_id": request_id, "read": read}).encode()
    request = urllib.request.Request(f"{base_url}/api/v1/reads", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30):
        pass


def analyse_and_read(base_url: str, port: int, sample: list[tuple[Path, int]]) -> None:
    """Each image through ``/api/v1/predict``, then its label as the read of that analysis."""
    for number, (path, label) in enumerate(sample, 1):
        status, body = post_file(port, path)
        if status != 200:
            raise RuntimeError(f"{path.name}: the API answered {status}: {body[:200]!r}")
        post_read(base_url, json.loads(body)["request_id"], READ_OF_LABEL[label])
        if number % 20 == 0:
            print(f"{number}/{len(sample)} analysed and read", flush=True)


def screenshot(url: str, width: int) -> bytes:
    """A full-page PNG of ``url`` in headless Chromium, ``width`` CSS pixels wide."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                             args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": width, "height": 900}, device_scale_factor=1)
        page.goto(url)
        png = page.screenshot(full_page=True)
        browser.close()
    return png


def compact_png(png: bytes) -> bytes:
    """The page's PNG with a 256-colour palette (the page is flat colours and text), compressed hard."""
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--images", type=int, default=120, help="how many validation images to send")
    parser.add_argument("--fractured", type=int, default=40, help="at most this many of them fractured")
    parser.add_argument("--width", type=int, default=1100, help="page width in CSS pixels")
    args = parser.parse_args(argv)
    sample = validation_sample(args.data_dir, training_seed(MODEL), args.images, args.fractured)
    with tempfile.TemporaryDirectory(prefix="site-screenshot-") as scratch:
        env = {"FRACTURE_DATABASE_URL": f"sqlite:///{Path(scratch) / 'reads.sqlite3'}",
               "FRACTURE_MODEL_DIR": str(MODEL), "FRACTURE_BACKEND": "litert", "FRACTURE_THREADS": "1",
               "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "1"}
        with running_gunicorn(env, Path(scratch) / "gunicorn.log") as server:
            analyse_and_read(server.url, server.port, sample)
            png = compact_png(screenshot(f"{server.url}/site", args.width))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(png)
    fractured = sum(label for _, label in sample)
    print(f"{len(sample)} images ({fractured} fractured) read; {args.out}: {len(png) // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

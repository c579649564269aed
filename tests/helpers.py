"""What the tests share besides fixtures: paths, sample images, script runs, servers."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bench import local_server
from fracture_web.imaging import preprocess

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "data" / "samples").glob("*.jpg"))
FRACATLAS = ROOT.parent / "shared" / "data" / "fracatlas"


def wait_until(condition: Callable[[], object], timeout: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def synthetic_xray(rng: np.random.Generator, crack: bool, size: tuple[int, int] = (160, 128)) -> np.ndarray:
    """A dark image with a bright 'bone' band; a dark diagonal gap when ``crack``."""
    image = rng.normal(30, 8, size).clip(0, 255)
    image[:, 50:80] += 150
    if crack:
        for y in range(60, 100):
            image[y, 50 + (y - 60) // 2: 56 + (y - 60) // 2] = 40
    return image.astype(np.uint8)


def outputs_on_samples(model) -> dict[str, np.ndarray]:
    """A model's outputs for the repository's sample radiographs, as one batch."""
    return model.outputs(np.stack([preprocess(path.read_bytes(), model.input_size) for path in SAMPLES]))


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    """Run one of scripts/ as a user would, in a fresh interpreter."""
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


def run_bench(module: str, *args: str) -> subprocess.CompletedProcess:
    """Run one of the lab's tools (``bench/``) as ``python -m bench.<module>`` from the project root."""
    return subprocess.run([sys.executable, "-m", f"bench.{module}", *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


def same_answer(answer: dict) -> dict:
    """An API answer without what differs per request (its ``request_id``, and whether it was ``stored``),
    to compare with another answer for the same image."""
    return {key: value for key, value in answer.items() if key not in ("request_id", "stored")}


def csrf_token(client) -> str:
    """The CSRF token the page gives this browser."""
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").get_data(as_text=True)).group(1)


def post_form(client, data: dict, **kwargs):
    """Submit the upload form as a browser does: with the CSRF token the page carries."""
    return client.post("/", data=data | {"csrf_token": csrf_token(client)}, content_type="multipart/form-data",
                       **kwargs)


@contextmanager
def running_gunicorn(**env: str):
    """gunicorn with the repo's gunicorn.conf.py on a free loopback port, one worker unless
    ``WEB_CONCURRENCY`` says otherwise (``bench.local_server``, as the load test starts it);
    yields (base URL, port) once /healthz answers 200 and stops the server afterwards."""
    with local_server.running_gunicorn({"WEB_CONCURRENCY": "1"} | env, timeout=120) as server:
        yield server.url, server.port


def throwaway_reads(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` with the test session's throwaway reads database (conftest sets it), for an app
    started from its own environment rather than the process's."""
    return {"FRACTURE_DATABASE_URL": os.environ["FRACTURE_DATABASE_URL"], **environ}

"""What the tests share besides fixtures: paths, sample images, script runs, servers."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "data" / "samples").glob("*.jpg"))
FRACATLAS = ROOT.parent / "shared" / "data" / "fracatlas"


def synthetic_xray(rng: np.random.Generator, crack: bool, size: tuple[int, int] = (160, 128)) -> np.ndarray:
    """A dark image with a bright 'bone' band; a dark diagonal gap when ``crack``."""
    image = rng.normal(30, 8, size).clip(0, 255)
    image[:, 50:80] += 150
    if crack:
        for y in range(60, 100):
            image[y, 50 + (y - 60) // 2: 56 + (y - 60) // 2] = 40
    return image.astype(np.uint8)


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    """Run one of scripts/ as a user would, in a fresh interpreter."""
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


def post_form(client, data: dict, **kwargs):
    """Submit the upload form as a browser does: with the CSRF token the page carries."""
    page = client.get("/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return client.post("/", data=data | {"csrf_token": token}, content_type="multipart/form-data", **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_ready(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "gunicorn exited during start-up"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout} s")


@contextmanager
def running_gunicorn(**env: str):
    """gunicorn with the repo's gunicorn.conf.py on a free loopback port, one worker;
    yields (base URL, port) once /healthz answers 200 and stops the server afterwards."""
    port = free_port()
    env = os.environ | {"BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1"} | env
    process = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "-c", "gunicorn.conf.py"],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url + "/healthz", process)
        yield url, port
    finally:
        process.terminate()
        process.wait(timeout=30)

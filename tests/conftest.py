"""Shared fixtures: a small real model trained in this session, the app and its client."""
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

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fracture_web import create_app  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "data" / "samples").glob("*.jpg"))
FRACATLAS = ROOT.parent / "shared" / "data" / "fracatlas"


@pytest.fixture(scope="session")
def sample_path() -> Path:
    """A real FracAtlas radiograph shipped with the repo."""
    return SAMPLES[0]


@pytest.fixture(scope="session")
def sample_bytes(sample_path: Path) -> bytes:
    return sample_path.read_bytes()


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A folder-per-class dataset: the shipped samples plus synthetic radiograph-like images."""
    root = tmp_path_factory.mktemp("tiny_dataset")
    rng = np.random.default_rng(0)
    for label, folder in ((1, "Fractured"), (0, "Non_fractured")):
        (root / folder).mkdir()
        for i in range(24):
            image = synthetic_xray(rng, crack=bool(label))
            cv2.imwrite(str(root / folder / f"{i}.png"), image)
    return root


def synthetic_xray(rng: np.random.Generator, crack: bool, size: tuple[int, int] = (160, 128)) -> np.ndarray:
    """A dark image with a bright 'bone' band; a dark diagonal gap when ``crack``."""
    image = rng.normal(30, 8, size).clip(0, 255)
    image[:, 50:80] += 150
    if crack:
        for y in range(60, 100):
            image[y, 50 + (y - 60) // 2: 56 + (y - 60) // 2] = 40
    return image.astype(np.uint8)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_dataset: Path, tmp_path_factory) -> Path:
    """A real SavedModel trained by scripts/train_model.py on the tiny dataset (seconds, 64 px)."""
    out = tmp_path_factory.mktemp("tiny_model") / "model"
    done = run_script("train_model.py", "--data-dir", str(tiny_dataset), "--out", str(out), "--epochs", "4",
                      "--head-epochs", "2", "--image-size", "64", "--batch-size", "8")
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    """Run one of scripts/ as a user would, in a fresh interpreter."""
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


@pytest.fixture()
def app(tiny_model_dir: Path):
    return create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir)})


@pytest.fixture()
def client(app):
    return app.test_client()


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

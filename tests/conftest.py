"""Shared fixtures: a small real model trained in this session, the app (its reads kept in the test's
temporary folder) and its client."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Whatever a test does not point elsewhere (apps, servers and scripts it starts) keeps its analyses and
# reads in a throwaway database, never in this checkout's instance/ folder, whose site page is real.
os.environ["FRACTURE_DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp(prefix='fracture-test-reads-')}/reads.sqlite3"

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fracture_web import create_app  # noqa: E402
from fracture_web.inference import FractureModel  # noqa: E402
from helpers import SAMPLES, run_script, synthetic_xray  # noqa: E402


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


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_dataset: Path, tmp_path_factory) -> Path:
    """A real SavedModel trained by scripts/train_model.py on the tiny dataset (seconds, 64 px)."""
    out = tmp_path_factory.mktemp("tiny_model") / "model"
    done = run_script("train_model.py", "--data-dir", str(tiny_dataset), "--out", str(out), "--epochs", "4",
                      "--head-epochs", "2", "--image-size", "64", "--batch-size", "8")
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> FractureModel:
    """The tiny model loaded once per test module, for tests that call the analysis or the DICOM node directly."""
    return FractureModel(tiny_model_dir)


@pytest.fixture()
def reads_url(tmp_path: Path) -> str:
    """A database for the app's reads in the test's own folder: tests never write the repo's instance folder."""
    return f"sqlite:///{tmp_path / 'reads.sqlite3'}"


@pytest.fixture()
def app(tiny_model_dir: Path, reads_url: str):
    return create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir), "DATABASE_URL": reads_url})


@pytest.fixture()
def client(app):
    return app.test_client()

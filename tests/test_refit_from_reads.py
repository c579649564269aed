"""A site that records its readers' reads re-fits the operating points from them, no images needed:
after a day of 60 radiographs read by its clinicians, `calibrate_site.py --from-reads` writes a model
folder re-fitted on those reads (an earlier model's reads and the "not sure" ones left out, and said
so) that the app then serves as the site's calibration; too few reads are refused, saying why."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fracture_web import create_app
from fracture_web.cli.calibrate import parse_args, reads_database
from fracture_web.config import Settings
from fracture_web.evaluation.site import fit_site, site_metadata
from fracture_web.inference import FractureModel
from helpers import ROOT, run_script
from site_reads import reading_day

IMAGES = 60
EARLIER = 5  # an earlier model's analyses, read as fractured


def fractured(number: int) -> bool:
    """Three images in five show a fracture: 36 of 60, more than the margin needs (32)."""
    return number % 5 < 3


def reader_says(number: int, crack: bool) -> str:
    """What the image shows, except "not sure" for three of the normal ones (19, 39, 59)."""
    if number % 20 == 19:
        return "unsure"
    return "fractured" if crack else "not_fractured"


@pytest.fixture(scope="module")
def earlier_model(tiny_model_dir: Path, tmp_path_factory) -> Path:
    """The same network under an earlier version: its probabilities are not the served model's."""
    folder = tmp_path_factory.mktemp("earlier") / "model"
    shutil.copytree(tiny_model_dir, folder)
    metadata = json.loads((folder / "metadata.json").read_text())
    (folder / "metadata.json").write_text(json.dumps(metadata | {"model_version": "earlier"}))
    return folder


@pytest.fixture(scope="module")
def day_of_reads(tiny_model_dir: Path, earlier_model: Path, tmp_path_factory):
    """The database after an earlier model's few analyses and then a day of 60 by the served model,
    each read; the database, the served model's answers and their reads."""
    database = tmp_path_factory.mktemp("site") / "reads.sqlite3"
    with reading_day(database, EARLIER, lambda number: True, reader_says, MODEL_DIR=str(earlier_model)):
        pass
    with reading_day(database, IMAGES, fractured, reader_says, MODEL_DIR=str(tiny_model_dir)) as (_app, answers, reads):
        yield database, answers, reads


def from_reads(database: Path, model: Path, out: Path, monkeypatch):
    monkeypatch.setenv("FRACTURE_DATABASE_URL", f"sqlite:///{database}")
    return run_script("calibrate_site.py", "--from-reads", "--model", str(model), "--out", str(out))


def test_the_reads_refit_a_model_folder_that_the_app_serves_as_the_sites(day_of_reads, tiny_model_dir, sample_bytes,
                                                                          tmp_path, monkeypatch):
    database, answers, reads = day_of_reads
    out = tmp_path / "site_model"
    done = from_reads(database, tiny_model_dir, out, monkeypatch)
    assert done.returncode == 0, done.stdout + done.stderr
    # 57 definite reads of this model; the 3 "not sure" and the earlier model's 5 left out, and said so.
    assert f"From the reads: 57 of {IMAGES + EARLIER} read analyses used" in done.stdout
    assert f"left out: 3 read 'not sure', {EARLIER} of another model version or calibration" in done.stdout
    assert "Re-fitted on 57 images (36 fractured)" in done.stdout and "the margin costs" in done.stdout

    # The folder holds the re-fit one computes from the same reads and the probabilities the app gave.
    definite = [i for i, read in enumerate(reads) if read != "unsure"]
    labels = np.array([reads[i] == "fractured" for i in definite], np.int64)
    probs = np.array([answers[i]["probability"] for i in definite])
    expected = site_metadata(FractureModel(tiny_model_dir).metadata, fit_site(labels, probs))
    metadata = json.loads((out / "metadata.json").read_text())
    for name, point in expected["operating_points"].items():
        assert metadata["operating_points"][name]["threshold"] == pytest.approx(point["threshold"], abs=1e-4)
    site = metadata["site_calibration"]
    assert site["platt"] == pytest.approx(expected["site_calibration"]["platt"], abs=1e-3)
    assert site["high_sensitivity_margin"]["with_margin"]["threshold"] == pytest.approx(
        metadata["operating_points"]["high_sensitivity"]["threshold"])
    assert set(site["sample"]["by_body_part"]) == {"HAND", "unknown"}

    # The app serves the folder: its answers say the calibration is the site's.
    served = create_app({"TESTING": True, "MODEL_DIR": str(out), "DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}"})
    answer = served.test_client().post("/api/v1/predict", data={"file": (io.BytesIO(sample_bytes), "x.jpg")}).get_json()
    assert answer["calibration"] == "site"
    assert answer["threshold"] == pytest.approx(metadata["operating_points"]["balanced"]["threshold"])


def test_too_few_reads_of_the_model_are_refused_saying_how_many_are_needed(day_of_reads, earlier_model, tmp_path,
                                                                           monkeypatch):
    database, _answers, _reads = day_of_reads
    done = from_reads(database, earlier_model, tmp_path / "out", monkeypatch)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"From the reads: {EARLIER} of {IMAGES + EARLIER} read analyses used (model earlier" in done.stdout
    assert f"The sample has {EARLIER} fractured and 0 non-fractured" in done.stderr
    assert "needs at least 20 of each" in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_database_without_reads_is_refused_and_left_as_it_was(tiny_model_dir, tmp_path, monkeypatch):
    done = from_reads(tmp_path / "none.sqlite3", tiny_model_dir, tmp_path / "out", monkeypatch)
    assert done.returncode == 2 and "No reads are stored" in done.stderr
    assert not (tmp_path / "none.sqlite3").exists() and not (tmp_path / "out").exists()


def test_the_reads_are_looked_for_where_the_app_keeps_them():
    # The docs' instance/reads.sqlite3 unless FRACTURE_DATABASE_URL names another (PostgreSQL through psycopg 3).
    assert reads_database(Settings()) == f"sqlite:///{ROOT / 'instance' / 'reads.sqlite3'}"
    named = Settings.from_environ({"FRACTURE_DATABASE_URL": "postgresql://site@db.example/reads"})
    assert reads_database(named) == "postgresql+psycopg://site@db.example/reads"


def test_the_reads_or_a_folder_not_both(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--from-reads", "--data-dir", "x", "--out", "y"])
    assert "not allowed with argument" in capsys.readouterr().err

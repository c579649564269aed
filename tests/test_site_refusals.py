"""A site's re-fit refuses samples that would write a broken model: a clerk who swapped 0 and 1, a
sample that lists the same images many times or with both labels, probabilities that do not vary, and
an --out that cannot take the folder; the loader refuses a model folder whose calibration inverts or
silences every verdict; labels.csv files as spreadsheets save them are read, or refused naming the row."""
from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from fracture_web.datasets import DatasetError, check_distinct_files, read_records
from fracture_web.evaluation.scoring import EvaluationError
from fracture_web.evaluation.site import SiteSampleError, check_fit, fit_site, write_site_model
from fracture_web.inference import FractureModel, ModelLoadError
from fracture_web.probability import sigmoid
from helpers import run_script, synthetic_xray


def site_scores(seed: int = 0, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """A site where the model ranks well (AUC about 0.9)."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.4).astype(int)
    return labels, sigmoid(rng.normal(0, 1.2, n) + 2.5 * (labels - 0.5))


def test_a_sample_whose_labels_were_swapped_is_refused_asking_whether_they_are():
    labels, probs = site_scores()
    fit_site(labels, probs)  # the same sample, labelled right, is re-fitted
    with pytest.raises(SiteSampleError, match="are 0 and 1 swapped"):
        fit_site(1 - labels, probs)


def test_a_refit_with_a_negative_slope_or_unreachable_thresholds_is_refused():
    with pytest.raises(SiteSampleError, match="Platt slope of -0.92.*swapped"):
        check_fit(-0.92, -1.5, {"balanced": 0.3})
    for threshold in (float("nan"), 1.0, 0.0):
        with pytest.raises(SiteSampleError, match="no image could reach"):
            check_fit(1.0, 0.0, {"balanced": threshold})
    with pytest.raises(SiteSampleError, match="no image could reach"):  # above what sigmoid(logit(p) - 30) can give
        check_fit(1.0, -30.0, {"balanced": 0.5})


def test_reads_of_two_probabilities_over_and_over_or_of_one_are_refused():
    labels = np.array([1] * 40 + [0] * 30)
    with pytest.raises(SiteSampleError, match="only 2 different probabilities.*listed many times"):
        fit_site(labels, np.array([0.9] * 40 + [0.1] * 30))  # 0.99999996 thresholds before
    with pytest.raises(SiteSampleError, match="the same probability \\(30.0%\\)"):
        fit_site(labels, np.full(70, 0.3))


@pytest.fixture(scope="module")
def labelled_pool(tmp_path_factory) -> Path:
    """32 fractured and 24 normal synthetic radiographs in one folder, each named for its class."""
    root = tmp_path_factory.mktemp("pool")
    rng = np.random.default_rng(11)
    for crack, count in ((True, 32), (False, 24)):
        for i in range(count):
            cv2.imwrite(str(root / f"{'f' if crack else 'n'}{i}.png"), synthetic_xray(rng, crack, size=(200, 150)))
    return root


def sample(tmp_path: Path, pool: Path, rows: list[tuple[str, int]], name: str = "sample") -> Path:
    """A labels.csv over the pool's images."""
    folder = tmp_path / name
    folder.mkdir()
    lines = ["path,label"] + [f"{pool / file},{label}" for file, label in rows]
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder


def pool_rows(pool: Path) -> list[tuple[str, int]]:
    """Each pool image with its true label."""
    return [(path.name, int(path.name.startswith("f"))) for path in sorted(pool.glob("*.png"))]


def test_the_script_refuses_a_swapped_sample_and_writes_nothing(tiny_model_dir, labelled_pool, tmp_path):
    # Labelled by someone who read 1 as "normal": every normal image and 8 fractured ones say 1 (32, as
    # many as the margin needs), the other 24 fractured ones say 0.
    rows = [(name, 1 - label) for name, label in pool_rows(labelled_pool)]
    rows = [(name, 1 if name in {f"f{i}.png" for i in range(8)} else label) for name, label in rows]
    swapped = sample(tmp_path, labelled_pool, rows, "swapped")
    out = tmp_path / "site"
    done = run_script("calibrate_site.py", "--data-dir", str(swapped), "--model", str(tiny_model_dir), "--out", str(out))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "are 0 and 1 swapped" in done.stderr
    assert not out.exists()


def test_a_sample_listing_an_image_many_times_or_with_both_labels_is_refused_naming_it(labelled_pool, tmp_path):
    twice = sample(tmp_path, labelled_pool, [("f0.png", 1)] * 40 + [("n0.png", 0)] * 30, "dup")
    with pytest.raises(DatasetError, match="row 3: .*f0.png is listed a second time; list each image once"):
        read_records(twice)
    both = sample(tmp_path, labelled_pool, pool_rows(labelled_pool) + [("f3.png", 0)], "conflict")
    with pytest.raises(DatasetError, match="f3.png is listed a second time with the opposite label"):
        read_records(both)
    shutil.copy(labelled_pool / "f0.png", tmp_path / "copy_of_f0.png")
    copied = sample(tmp_path, labelled_pool, pool_rows(labelled_pool) + [(str(tmp_path / "copy_of_f0.png"), 1)], "copy")
    with pytest.raises(DatasetError, match="f0.png and .*copy_of_f0.png are the same image"):
        check_distinct_files(read_records(copied))


def test_an_out_that_cannot_take_the_model_is_refused_before_any_image_is_scored(tiny_model_dir, labelled_pool,
                                                                                  tmp_path):
    good = sample(tmp_path, labelled_pool, pool_rows(labelled_pool))
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    for out, says in ((a_file, "is a file, not a folder"), (tiny_model_dir / "site", "is inside the model")):
        done = run_script("calibrate_site.py", "--data-dir", str(good), "--model", str(tiny_model_dir), "--out", str(out))
        assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert "XNNPACK" not in done.stderr  # refused before the model was loaded
    assert not (tiny_model_dir / "site").exists()


def test_a_full_disk_while_writing_leaves_no_half_written_model_folder(tiny_model_dir, tmp_path, monkeypatch):
    out = tmp_path / "site"
    out.mkdir()  # an empty folder the operator made for it
    real_write = Path.write_text

    def full_disk(self: Path, text: str, *args, **kwargs):
        if self.name == "site_metrics.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    metadata = json.loads((tiny_model_dir / "metadata.json").read_text())
    with pytest.raises(EvaluationError, match="No space left on device.*left as it was"):
        write_site_model(tiny_model_dir, out, metadata, files={"site_metrics.json": "{}"})
    assert out.is_dir() and not any(out.iterdir())
    assert [path.name for path in tmp_path.iterdir()] == ["site"]  # no partial folder left behind
    monkeypatch.undo()
    write_site_model(tiny_model_dir, out, metadata, files={"site_metrics.json": "{}"})
    assert (out / "site_metrics.json").read_text() == "{}" and (out / "metadata.json").is_file()


def broken_copy(model_dir: Path, tmp_path: Path, change) -> Path:
    """A copy of the model whose metadata.json ``change`` edits in place."""
    folder = tmp_path / "broken"
    shutil.copytree(model_dir, folder)
    metadata = json.loads((folder / "metadata.json").read_text())
    change(metadata)
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


@pytest.mark.parametrize("change, says", [
    (lambda m: m.update(site_calibration={"platt": [-1.0, 0.0]}), "platt slope must be a positive number"),
    (lambda m: m.update(site_calibration={"platt": [float("nan"), 0.0]}), "platt slope must be a positive number"),
    (lambda m: m["operating_points"]["balanced"].update(threshold=float("nan")), "balanced threshold must be"),
])
def test_the_loader_refuses_a_model_folder_that_would_invert_or_silence_every_verdict(tiny_model_dir, tmp_path,
                                                                                       change, says):
    with pytest.raises(ModelLoadError, match=f"lacks or garbles .*{says}"):
        FractureModel(broken_copy(tiny_model_dir, tmp_path, change))


def labels_csv(tmp_path: Path, data: bytes) -> Path:
    (tmp_path / "labels.csv").write_bytes(data)
    return tmp_path


def test_a_labels_csv_saved_by_excel_as_csv_utf8_is_read(tmp_path):
    records = read_records(labels_csv(tmp_path, "path,label,body_part\r\na.jpg,0,hand\r\nb.jpg,1.0,hip\r\n"
                                                 .encode("utf-8-sig")))
    assert [path.name for path in records.paths] == ["a.jpg", "b.jpg"] and records.labels.tolist() == [0, 1]
    assert records.columns == {"body_part": ["hand", "hip"]}


@pytest.mark.parametrize("data, says", [
    ("path,label\nMüller_é.jpg,0\nb.jpg,1\n".encode("latin-1"), "is not UTF-8 text.*CSV UTF-8"),
    ("path,label\na.jpg,0\nb.jpg,1\n".encode("utf-16"), "is not UTF-8 text"),
    (b"path,label\na.jpg,0\nb.jpg\n", "row 3: needs a path and a label \\(0 or 1\\), found only 'b.jpg'"),
    (b"path,label\na.jpg,0\nb.jpg,inf\n", "row 3 \\(b.jpg\\): label must be 0 or 1 .*not 'inf'"),
    (b"path,label\na.jpg,0\nb.jpg,0.9\n", "row 3 \\(b.jpg\\): label must be 0 or 1 .*not '0.9'"),
])
def test_a_labels_csv_in_another_encoding_or_with_a_bad_row_is_refused_naming_it(tmp_path, data, says):
    with pytest.raises(DatasetError, match=says):
        read_records(labels_csv(tmp_path, data))

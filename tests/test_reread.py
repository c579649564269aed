"""A night-time re-read of an archive: scripts/reread.py reads every file under a folder (images and
DICOM, in subfolders) into a CSV, says which file it could not read, and on a second run reads only
what the first did not (resumable). With workers, :mod:`test_dicom_broker` runs it over Redis."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import cv2
import pytest

from fracture_web.dicom_node.archive import ResultsFileError, check_same_reader
from helpers import SAMPLES, run_script
from dicom_files import PATIENT, radiograph_dataset, to_bytes


def archive(folder: Path) -> Path:
    """Two JPEG radiographs, a DICOM one in a subfolder and a file that is no image."""
    (folder / "2025" / "11").mkdir(parents=True)
    for path in SAMPLES[:2]:
        (folder / path.name).write_bytes(path.read_bytes())
    gray = cv2.imread(str(SAMPLES[0]), cv2.IMREAD_GRAYSCALE)
    (folder / "2025" / "11" / "hand.dcm").write_bytes(to_bytes(radiograph_dataset(gray)))
    (folder / "2025" / "notes.txt").write_text("not an image")
    return folder


def rows(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_an_archive_is_read_into_a_csv_and_a_second_run_reads_only_what_is_new(tiny_model_dir, tmp_path):
    folder, out = archive(tmp_path / "archive"), tmp_path / "results.csv"
    first = run_script("reread.py", "--folder", str(folder), "--out", str(out), "--model", str(tiny_model_dir))
    assert first.returncode == 1, first.stderr  # one file could not be analysed, and its row says why
    by_file = {row["file"]: row for row in rows(out)}
    assert sorted(by_file) == sorted([SAMPLES[0].name, SAMPLES[1].name, "2025/11/hand.dcm", "2025/notes.txt"])
    assert by_file["2025/notes.txt"]["error"] and not by_file["2025/notes.txt"]["label"]
    hand = by_file["2025/11/hand.dcm"]
    assert hand["label"] in ("fractured", "not_fractured") and 0 <= float(hand["probability"]) <= 1
    assert not hand["error"] and "4 file(s) to read" in first.stderr and "4/4" in first.stderr  # the progress bar
    assert not any(value in out.read_text() + first.stderr for value in PATIENT.values())

    (folder / "2025" / "late.jpg").write_bytes(SAMPLES[2].read_bytes())
    second = run_script("reread.py", "--folder", str(folder), "--out", str(out), "--model", str(tiny_model_dir))
    assert second.returncode == 0, second.stderr
    assert "1 file(s) to read" in second.stderr
    assert [row["file"] for row in rows(out)][4:] == ["2025/late.jpg"] and len(rows(out)) == 5


def test_a_file_that_cannot_be_read_or_is_not_utf8_named_gets_its_row_and_the_archive_goes_on(tiny_model_dir,
                                                                                               tmp_path):
    # A share's I/O error (here /proc/self/mem, which cannot be read from the start), and a name from a
    # share mounted with another charset: each file gets its row, the later ones are still read.
    folder, out = tmp_path / "archive", tmp_path / "results.csv"
    folder.mkdir()
    (folder / "1.jpg").write_bytes(SAMPLES[0].read_bytes())
    (folder / "2_eio.jpg").symlink_to("/proc/self/mem")
    latin1 = os.fsdecode(b"3_M\xfcller.jpg")
    (folder / latin1).write_bytes(SAMPLES[1].read_bytes())
    (folder / "4.jpg").write_bytes(SAMPLES[2].read_bytes())
    first = run_script("reread.py", "--folder", str(folder), "--out", str(out), "--model", str(tiny_model_dir))
    assert first.returncode == 1 and "Traceback" not in first.stderr, first.stderr
    with out.open(newline="", errors="surrogateescape") as handle:
        by_file = {row["file"]: row for row in csv.DictReader(handle)}
    assert sorted(by_file) == ["1.jpg", "2_eio.jpg", latin1, "4.jpg"]
    assert "cannot be read: Input/output error" in by_file["2_eio.jpg"]["error"]
    assert by_file[latin1]["label"] and by_file["4.jpg"]["label"] and not by_file["4.jpg"]["error"]
    again = run_script("reread.py", "--folder", str(folder), "--out", str(out), "--model", str(tiny_model_dir))
    assert again.returncode == 0 and "0 file(s) to read" in again.stderr, again.stderr  # nothing tried again


def test_a_csv_another_operating_point_wrote_is_not_resumed_as_if_done(tiny_model_dir, tmp_path):
    # Last night's re-read ran at the balanced point; tonight the radiologist wants high sensitivity.
    # Resuming would keep every balanced verdict as "done": the run is refused and says what to do.
    folder, out = tmp_path / "archive", tmp_path / "results.csv"
    folder.mkdir()
    for path in SAMPLES[:2]:
        (folder / path.name).write_bytes(path.read_bytes())
    first = run_script("reread.py", "--folder", str(folder), "--out", str(out), "--model", str(tiny_model_dir))
    assert first.returncode == 0, first.stderr
    before = out.read_text()
    other = run_script("reread.py", "--folder", str(folder), "--out", str(out), "--model", str(tiny_model_dir),
                       "--operating-point", "high_sensitivity")
    assert other.returncode == 2 and "Traceback" not in other.stderr, other.stderr
    assert "at operating point balanced" in other.stderr and "high_sensitivity" in other.stderr
    assert "new --out" in other.stderr and out.read_text() == before
    fresh = run_script("reread.py", "--folder", str(folder), "--out", str(tmp_path / "sensitive.csv"),
                       "--model", str(tiny_model_dir), "--operating-point", "high_sensitivity")
    assert fresh.returncode == 0 and "2 file(s) to read" in fresh.stderr, fresh.stderr
    assert {row["operating_point"] for row in rows(tmp_path / "sensitive.csv")} == {"high_sensitivity"}
    same = run_script("reread.py", "--folder", str(folder), "--out", str(out), "--model", str(tiny_model_dir),
                      "--operating-point", "balanced")
    assert same.returncode == 0 and "0 file(s) to read" in same.stderr, same.stderr  # the same reader resumes


def test_a_csv_another_model_version_wrote_is_refused_naming_both():
    written = [{"file": "a.jpg", "model_version": "dev-1", "operating_point": "balanced"},
               {"file": "b.jpg", "model_version": "", "operating_point": "", "error": "not an image"}]
    check_same_reader(written, Path("r.csv"), "dev-1", "balanced")  # the same model: resumed
    with pytest.raises(ResultsFileError, match="model dev-1 at operating point balanced.*model site-2 at"):
        check_same_reader(written, Path("r.csv"), "site-2", "balanced")


def test_an_out_that_is_a_folder_or_another_table_is_refused_before_any_reading(tiny_model_dir, tmp_path):
    folder = tmp_path / "archive"
    folder.mkdir()
    (folder / "1.jpg").write_bytes(SAMPLES[0].read_bytes())
    ledger = tmp_path / "ledger.csv"
    ledger.write_text("patient,amount\nA,12\n")
    for out, says in ((tmp_path, "is a folder"), (ledger, "no 'file' column"),
                      (tmp_path / "missing" / "r.csv", "does not exist")):
        done = run_script("reread.py", "--folder", str(folder), "--out", str(out), "--model", str(tiny_model_dir))
        assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert ledger.read_text() == "patient,amount\nA,12\n"


def test_what_the_reread_leaves_out_is_said_and_its_own_csv_is_not_read(tiny_model_dir, tmp_path):
    # Hidden files and a linked sub-folder are not read, and the note says so; the CSV kept inside the
    # archive is not read as an image on the second run.
    folder, elsewhere = tmp_path / "archive", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    (folder / "1.jpg").write_bytes(SAMPLES[0].read_bytes())
    (folder / ".dotfile.jpg").write_bytes(SAMPLES[1].read_bytes())
    (elsewhere / "linked.jpg").write_bytes(SAMPLES[2].read_bytes())
    (folder / "linkdir").symlink_to(elsewhere)
    out = folder / "results.csv"
    first = run_script("reread.py", "--folder", str(folder), "--out", str(out), "--model", str(tiny_model_dir))
    assert first.returncode == 0 and "1 file(s) to read" in first.stderr, first.stderr
    assert "2 path(s) left out (a linked folder, not followed; hidden): .dotfile.jpg, linkdir" in first.stderr
    again = run_script("reread.py", "--folder", str(folder), "--out", str(out), "--model", str(tiny_model_dir))
    assert again.returncode == 0 and "0 file(s) to read" in again.stderr, again.stderr

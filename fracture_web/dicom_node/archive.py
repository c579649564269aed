"""An archive re-read: every file under a folder (DICOM or images, recursively) -> one CSV row each.

The CSV is written row by row as results come, so a stopped run loses nothing it finished, and a
second run skips every file already in it (by its path relative to the folder): resumable. A file
that cannot be analysed gets a row with its ``error`` and is not tried again. Rows carry no pixels
and no patient data: the verdict, probability, threshold, operating point, model version, the
number of findings (definite/possible) and the warnings.

A CSV is one model's reading at one operating point: :func:`check_same_reader` refuses to resume a
CSV whose verdicts another model version or operating point gave (its rows would be kept as if
done), and :func:`earlier_rows` refuses a CSV that is not a re-read's (no ``file`` column), each
with a sentence saying what to do.
"""
from __future__ import annotations

import csv
from pathlib import Path

from ..analysis import analyse
from ..datasets import files_under
from ..inference import FractureModel
from ..pixels import InvalidImageError

#: The columns a row takes from the prediction's written shape (:meth:`~fracture_web.inference.Prediction.as_dict`).
PREDICTION_COLUMNS = ("label", "probability", "threshold", "operating_point", "model_version")
COLUMNS = ("file", *PREDICTION_COLUMNS, "definite_findings", "possible_findings", "warnings", "error")


class ResultsFileError(ValueError):
    """The results CSV cannot be resumed or written: a folder, another table, another model's verdicts."""


def files_in(folder: Path) -> tuple[list[str], list[tuple[Path, str]]]:
    """Every file under the folder, as paths relative to it, in a stable order; and what was left out
    (hidden files and folders, linked sub-folders), each with the reason."""
    files, skipped = files_under(folder)
    return [str(path.relative_to(folder)) for path in files], skipped


def earlier_rows(csv_path: Path) -> list[dict]:
    """The rows of a CSV from an earlier run (none when it does not exist or is empty); a CSV saved
    again by Excel (with a byte-order mark) reads the same. Refuses a folder or a CSV without a
    ``file`` column (another table, which appending to would spoil)."""
    if csv_path.is_dir():
        raise ResultsFileError(f"--out {csv_path} is a folder; give the path of a CSV file, e.g. {csv_path / 'results.csv'}")
    if not csv_path.exists() or csv_path.stat().st_size == 0:
        return []
    try:
        with csv_path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
            reader = csv.DictReader(handle)
            if "file" not in (reader.fieldnames or ()):
                raise ResultsFileError(f"{csv_path} is not a re-read's results CSV (it has no 'file' column); "
                                       "give a new --out so it is not appended to")
            return list(reader)
    except (OSError, csv.Error) as err:
        raise ResultsFileError(f"{csv_path} cannot be read: {getattr(err, 'strerror', None) or err}") from None


def check_same_reader(rows: list[dict], csv_path: Path, version: str | None, operating_point: str | None) -> None:
    """Refuse to resume a CSV whose verdicts another model version or operating point gave: its files
    would be skipped as done. ``None`` leaves that side unchecked (the workers' model is not known here)."""
    earlier = {(row.get("model_version") or "", row.get("operating_point") or "") for row in rows
               if row.get("model_version")}  # error rows carry no verdict
    other = sorted((v, p) for v, p in earlier if (version or v, operating_point or p) != (v, p))
    if other:
        was = "; ".join(f"model {v} at operating point {p}" for v, p in other)
        now = f"model {version or 'of the workers'} at operating point {operating_point or '(the default)'}"
        raise ResultsFileError(f"{csv_path} holds verdicts by {was}, and this run uses {now}: resuming would keep "
                               "those verdicts as done. Give a new --out to re-read the archive with this model")


def result_row(name: str, data: bytes, model: FractureModel, operating_point: str | None) -> dict:
    """The CSV row for one file's bytes; an unreadable file gets its error instead of a verdict."""
    try:
        analysis = analyse(data, model, operating_point, images=False)
    except InvalidImageError as err:
        return {"file": name, "error": str(err)}
    written = analysis.prediction.as_dict(rounded=True)  # the shape the API and the readings use
    levels = [finding["level"] for finding in written["findings"]]
    return ({"file": name} | {key: written[key] for key in PREDICTION_COLUMNS}
            | {"definite_findings": levels.count("definite"), "possible_findings": levels.count("possible"),
               "warnings": " | ".join(analysis.warnings), "error": ""})


class CsvRows:
    """Appends rows to the CSV (with its header when new), each flushed to disk as it comes."""

    def __init__(self, path: Path) -> None:
        new = not path.exists() or path.stat().st_size == 0
        # A name that is not UTF-8 (a share mounted with another charset) is written back as its own
        # bytes, so the row is kept and a rerun recognises the file (done_in reads it the same way).
        self._handle = path.open("a", newline="", encoding="utf-8", errors="surrogateescape")
        self._writer = csv.DictWriter(self._handle, COLUMNS, restval="")
        if new:
            self._writer.writeheader()

    def write(self, row: dict) -> None:
        self._writer.writerow(row)
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def pending(folder: Path, names: list[str], rows: list[dict], out: Path) -> list[str]:
    """The names that the earlier rows do not cover, the results CSV itself aside (when it is kept
    inside the folder, a second run would read it as an image)."""
    done = {row["file"] for row in rows}
    try:
        done.add(str(out.resolve().relative_to(folder.resolve())))
    except ValueError:  # the CSV is outside the folder
        pass
    return [name for name in names if name not in done]

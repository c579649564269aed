"""An archive re-read: every file under a folder (DICOM or images, recursively) -> one CSV row each.

The CSV is written row by row as results come, so a stopped run loses nothing it finished, and a
second run skips every file already in it (by its path relative to the folder): resumable. A file
that cannot be analysed gets a row with its ``error`` and is not tried again. Rows carry no pixels
and no patient data: the verdict, probability, threshold, operating point, model version, the
number of findings (definite/possible) and the warnings.
"""
from __future__ import annotations

import csv
from pathlib import Path

from ..analysis import analyse
from ..inference import FractureModel
from ..pixels import InvalidImageError

#: The columns a row takes from the prediction's written shape (:meth:`~fracture_web.inference.Prediction.as_dict`).
PREDICTION_COLUMNS = ("label", "probability", "threshold", "operating_point", "model_version")
COLUMNS = ("file", *PREDICTION_COLUMNS, "definite_findings", "possible_findings", "warnings", "error")


def files_in(folder: Path) -> list[str]:
    """Every file under the folder (hidden ones aside), as paths relative to it, in a stable order."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*")
                  if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts))


def done_in(csv_path: Path) -> set[str]:
    """The files a CSV from an earlier run already has a row for (none when it does not exist); a CSV
    saved again by Excel (with a byte-order mark) reads the same."""
    if not csv_path.exists():
        return set()
    with csv_path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        return {row["file"] for row in csv.DictReader(handle)}


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


def pending(folder: Path, csv_path: Path) -> list[str]:
    """The files under the folder that the CSV has no row for yet."""
    done = done_in(csv_path)
    return [name for name in files_in(folder) if name not in done]

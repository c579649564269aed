"""Labelled radiograph folders: which images, which labels, and their model inputs.

Two layouts are accepted, so a clinic can evaluate or retrain on its own images:

* ``labels.csv`` with ``path,label`` (1 = fractured) and optional columns such as
  ``split`` (train/val), ``dup_group``, ``body_part`` and ``hardware`` (FracAtlas); UTF-8, with or
  without Excel's byte-order mark; a row without a 0/1 label, a path listed twice or another
  encoding is refused, naming the row;
* one folder per class: ``Fractured/`` + ``Non_fractured/`` or ``positive/`` + ``negative/``. Every
  file in them (and their sub-folders) is taken whatever its name (``IM0000`` as PACS exports name
  DICOM files, ``.jfif``, ...): the decoder refuses what is no image, counted as unreadable with its
  reason. Hidden files (``.DS_Store``) and linked sub-folders are left out, and
  :attr:`Records.skipped` says which and why.

Images go through the app's own :func:`~fracture_web.imaging.preprocess`. numpy only (no
scikit-learn), so evaluation runs from the runtime install; train/val splitting is training's.
"""
from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .imaging import preprocess
from .pixels import InvalidImageError

log = logging.getLogger(__name__)

CLASS_FOLDERS = {"fractured": 1, "positive": 1, "non_fractured": 0, "not_fractured": 0, "negative": 0}


class DatasetError(ValueError):
    """The data directory cannot be used for training or evaluation."""


@dataclass
class Records:
    """One row per image: where it is, its label and optional descriptive columns."""

    paths: list[Path]
    labels: np.ndarray
    columns: dict[str, list[str]] = field(default_factory=dict)
    #: Files in the class folders that were left out, each with the reason (hidden, a linked folder).
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, mask: np.ndarray) -> "Records":
        """The rows where mask is true."""
        index = np.flatnonzero(mask)
        return Records([self.paths[i] for i in index], self.labels[index],
                       {k: [v[i] for i in index] for k, v in self.columns.items()})

    def in_split(self, name: str) -> "Records":
        """The rows whose ``split`` column is ``name`` (e.g. FracAtlas's ``val``)."""
        if "split" not in self.columns:
            raise DatasetError(f"The labels have no split column to select {name!r} from")
        chosen = self.subset(np.array(self.columns["split"]) == name)
        if len(chosen) == 0:
            known = ", ".join(repr(value) for value in sorted(set(self.columns["split"]))) or "no values"
            raise DatasetError(f"No rows have split {name!r}; the split column holds {known}")
        return chosen


def read_records(data_dir: Path, split: str | None = None) -> Records:
    """Read labels.csv or a folder-per-class layout; refuse empty or one-class data.

    With ``split``, only the rows whose ``split`` column has that value (e.g. FracAtlas's ``val``).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetError(f"Data directory not found: {data_dir}")
    csv_path = data_dir / "labels.csv"
    records = _read_csv(csv_path) if csv_path.is_file() else _read_folders(data_dir)
    if len(records) == 0:
        raise DatasetError(f"No labelled images found in {data_dir}")
    if len(np.unique(records.labels)) < 2:
        raise DatasetError(f"{data_dir} holds only one class; both fractured and not fractured are needed")
    return records if split is None else records.in_split(split)


def _read_csv(csv_path: Path) -> Records:
    """labels.csv's rows, refused (saying which row and why) unless each has a path and a 0/1 label
    and no image is listed twice."""
    rows = _csv_rows(csv_path)
    if rows and not {"path", "label"} <= set(rows[0]):
        raise DatasetError(f"{csv_path} needs the columns path,label")
    labels = np.array([_label(csv_path, number, row) for number, row in enumerate(rows, start=2)], dtype=np.int32)
    _check_listed_once(csv_path, rows)
    extra = [name for name in (rows[0] if rows else {}) if name not in ("path", "label")]
    return Records([csv_path.parent / row["path"] for row in rows], labels,
                   {name: [row[name] or "" for row in rows] for name in extra})


def _csv_rows(csv_path: Path) -> list[dict]:
    """The CSV's rows as dicts; UTF-8 with or without a byte-order mark (Excel's "CSV UTF-8"), other
    encodings refused with a sentence."""
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            return list(csv.DictReader(handle))
    except UnicodeDecodeError as err:
        raise DatasetError(f"{csv_path} is not UTF-8 text (byte {err.start} cannot be read): save it as "
                           "\"CSV UTF-8\" (comma-separated), not Latin-1, Windows-1252 or UTF-16") from None
    except (OSError, csv.Error) as err:
        raise DatasetError(f"{csv_path} cannot be read: {err}") from None


def _label(csv_path: Path, number: int, row: dict) -> int:
    """Row ``number``'s label: 0 or 1 (written 0, 1, 0.0 or 1.0), else refused naming the row."""
    value, path = (row.get("label") or "").strip(), row.get("path")
    if not path or not value:
        found = f"only {path or value!r}" if path or value else "an empty row"
        raise DatasetError(f"{csv_path}, row {number}: needs a path and a label (0 or 1), found {found}")
    try:
        label = float(value)
    except ValueError:
        label = float("nan")
    if label not in (0.0, 1.0):
        raise DatasetError(f"{csv_path}, row {number} ({path}): label must be 0 or 1 (1 = fractured), not {value!r}")
    return int(label)


def _check_listed_once(csv_path: Path, rows: list[dict]) -> None:
    """Refuse a path listed more than once (with the same label or, worse, opposite ones)."""
    seen: dict[str, str] = {}
    for number, row in enumerate(rows, start=2):
        key = str(Path(row["path"]))
        if key in seen:
            conflict = " with the opposite label" if float(seen[key]) != float(row["label"]) else ""
            raise DatasetError(f"{csv_path}, row {number}: {row['path']} is listed a second time{conflict}; "
                               "list each image once, with one label")
        seen[key] = row["label"]


def check_distinct_files(records: Records) -> None:
    """Refuse two rows whose files hold the same bytes (one image copied under two names): it would
    count twice in a sample. Reads every file once; unreadable files are left to the scoring."""
    seen: dict[str, Path] = {}
    for path in records.paths:
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            continue
        if digest in seen:
            raise DatasetError(f"{seen[digest]} and {path} are the same image (the same bytes); list each image once")
        seen[digest] = path


def _read_folders(data_dir: Path) -> Records:
    """Every file in the class folders, labelled by its folder; what is left out goes in ``skipped``."""
    paths, labels, skipped = [], [], []
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        label = CLASS_FOLDERS.get(folder.name.lower())
        if label is None:
            continue
        files, left_out = files_under(folder)
        paths += files
        labels += [label] * len(files)
        skipped += left_out
    return Records(paths, np.array(labels, dtype=np.int32), skipped=skipped)


def files_under(folder: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Every file under the folder whatever its name (the decoder judges its content), in a stable
    order; and the paths left out with the reason: hidden (a name starting with '.', such as
    .DS_Store) or a linked sub-folder (not followed, so an archive cannot be read twice or in a loop)."""
    files, skipped = [], []
    for path in sorted(folder.rglob("*")):
        parts = path.relative_to(folder).parts
        if any(part.startswith(".") for part in parts):
            if not any(part.startswith(".") for part in parts[:-1]):  # a hidden folder once, not each file in it
                skipped.append((path, "hidden"))
        elif path.is_symlink() and path.is_dir():
            skipped.append((path, "a linked folder, not followed"))
        elif not path.is_dir():
            files.append(path)  # a broken link too: its row or count says it cannot be read
    return files, skipped


def skipped_note(skipped: list[tuple[Path, str]], root: Path, shown: int = 5) -> str | None:
    """One line saying how many paths were left out and why, naming the first few; None when none."""
    if not skipped:
        return None
    reasons = sorted({reason for _, reason in skipped})
    names = ", ".join(str(path.relative_to(root)) for path, _ in skipped[:shown])
    more = f" and {len(skipped) - shown} more" if len(skipped) > shown else ""
    return (f"{len(skipped)} path(s) left out ({'; '.join(reasons)}): {names}{more}")


def load_images(records: Records, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Preprocess every image (the app's own path); returns (images, indices of unreadable files)."""
    images = np.zeros((len(records), size, size, 1), dtype=np.float32)
    bad = []
    for i, path in enumerate(records.paths):
        try:
            images[i] = preprocess(path.read_bytes(), size)
        except (InvalidImageError, OSError) as err:
            log.warning("skipping unreadable image %s: %s", path.name, err)
            bad.append(i)
    return images, np.array(bad, dtype=np.int64)


@dataclass
class Split:
    """Preprocessed images and labels of one side of the split."""

    records: Records
    images: np.ndarray
    labels: np.ndarray


def load_split(records: Records, size: int) -> Split:
    """Preprocess a split, dropping unreadable images (counted in the log)."""
    images, bad = load_images(records, size)
    keep = np.setdiff1d(np.arange(len(records)), bad)
    if len(bad):
        log.warning("%d unreadable images left out", len(bad))
    mask = np.zeros(len(records), bool)
    mask[keep] = True
    return Split(records.subset(mask), images[keep], records.labels[keep])

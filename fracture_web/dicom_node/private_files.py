"""The node's files on disk: private folders (0700) and files (0600) written whole or not at all.

Each file is written under a temporary name, flushed to disk and then renamed (and the rename made
durable), so a crash never leaves half a file behind; a leftover ``*.partial`` is a write that
never finished and is safe to delete.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

from pydicom import Dataset, dcmwrite

PARTIAL = ".partial"


def private_folder(folder: Path) -> Path:
    """Make the folder (and its parents) if needed and tighten it to 0700 whatever the umask."""
    folder = Path(folder).expanduser()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)  # also when it existed
    return folder


def write_private(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` (mode 0600) atomically and durably; returns the path."""
    partial = path.with_name(path.name + PARTIAL)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    partial.rename(path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a power cut
    finally:
        os.close(folder)
    return path


def remove_partial_writes(folder: Path) -> None:
    """Delete what writes interrupted by a crash left in the folder."""
    for leftover in folder.glob("*" + PARTIAL):
        leftover.unlink(missing_ok=True)


def dicom_file(ds: Dataset) -> bytes:
    """The dataset as a DICOM file (preamble, file meta, then the dataset), ready to write."""
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()

"""Results waiting on disk while the destination PACS is down: the one place the node writes.

The folder is made (or tightened to) mode 0700 and each file is 0600, written whole under a
temporary name and then renamed, so a crash never leaves half a file to send. Files are sent
oldest first and deleted once the destination has accepted them.
"""
from __future__ import annotations

import io
import os
import time
from pathlib import Path

from pydicom import Dataset, dcmread, dcmwrite


class Outbox:
    """A folder of DICOM files to resend."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder).expanduser()
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)  # also when it existed, and whatever the umask

    def put(self, ds: Dataset) -> Path:
        """Write one dataset; returns its path."""
        buffer = io.BytesIO()
        dcmwrite(buffer, ds, enforce_file_format=True)
        path = self.folder / f"{time.time_ns():020d}-{ds.SOPInstanceUID}.dcm"
        partial = path.with_suffix(".partial")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())
        partial.rename(path)
        return path

    def pending(self) -> list[Path]:
        """Queued files, oldest first."""
        return sorted(self.folder.glob("*.dcm"))

    @staticmethod
    def read(path: Path) -> Dataset:
        return dcmread(path)

    @staticmethod
    def remove(path: Path) -> None:
        path.unlink(missing_ok=True)

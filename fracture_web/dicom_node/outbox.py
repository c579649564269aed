"""Results waiting on disk while the destination PACS is down: the node's resend queue.

The folder is made (or tightened to) mode 0700 and each file is 0600, written whole under a
temporary name and then renamed (:mod:`fracture_web.dicom_node.private_files`), so a crash never
leaves half a file to send. Files are sent oldest first and deleted once the destination has
accepted them. How many times the destination refused a file is kept in its name
(``<time>-r<refusals>-<SOP Instance UID>.dcm``), so the count survives a restart.
"""
from __future__ import annotations

import time
from pathlib import Path

from pydicom import Dataset, dcmread

from .private_files import dicom_file, private_folder, remove_partial_writes, write_private


class Outbox:
    """A folder of DICOM files to resend."""

    def __init__(self, folder: Path) -> None:
        self.folder = private_folder(folder)
        remove_partial_writes(self.folder)

    def put(self, ds: Dataset) -> Path:
        """Write one dataset; returns its path."""
        return write_private(self.folder / f"{time.time_ns():020d}-{ds.SOPInstanceUID}.dcm", dicom_file(ds))

    def pending(self) -> list[Path]:
        """Queued files, oldest first."""
        return sorted(self.folder.glob("*.dcm"))

    @staticmethod
    def read(path: Path) -> Dataset:
        return dcmread(path)

    @staticmethod
    def remove(path: Path) -> None:
        path.unlink(missing_ok=True)

    @staticmethod
    def refusals(path: Path) -> int:
        """How many times the destination refused this file."""
        parts = path.stem.split("-")
        return int(parts[1][1:]) if len(parts) > 2 and parts[1].startswith("r") else 0

    def refused(self, path: Path) -> Path:
        """Count one more refusal of the file (in its name, keeping its place in the order); its new path."""
        queued, *rest = path.stem.split("-")
        uid = rest[-1]
        return path.rename(path.with_name(f"{queued}-r{self.refusals(path) + 1}-{uid}.dcm"))

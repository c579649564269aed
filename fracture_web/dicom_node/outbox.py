"""Results waiting on disk while their destination is down: the node's resend queues (the DICOM
results in the queue folder, the FHIR reports in its ``fhir`` folder).

The folder is made (or tightened to) mode 0700 and each file is 0600, written whole under a
temporary name and then renamed (:mod:`fracture_web.dicom_node.private_files`), so a crash never
leaves half a file to send. Files are sent oldest first and deleted once the destination has
accepted them. How many times the destination refused a file, or broke off while it was being sent
(:attr:`~fracture_web.dicom_node.sender.Failure.counts`), is kept in its name
(``<time>-r<refusals>-<name>.dcm``, the name a SOP Instance UID), so the count survives a restart.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from pydicom import Dataset, dcmread

from ..metrics import record_send_failure
from .dead_letter import DeadLetters
from .private_files import dicom_file, private_folder, remove_partial_writes, write_private
from .sender import Failure

log = logging.getLogger(__name__)


class Outbox:
    """A folder of files to resend (DICOM files unless ``suffix`` says otherwise)."""

    def __init__(self, folder: Path, suffix: str = ".dcm") -> None:
        self.folder, self.suffix = private_folder(folder), suffix
        remove_partial_writes(self.folder)

    def put(self, ds: Dataset) -> Path:
        """Write one dataset; returns its path."""
        return self.put_data(str(ds.SOPInstanceUID), dicom_file(ds))

    def put_data(self, name: str, data: bytes) -> Path:
        """Write one file's bytes under ``name`` (no "-" in it); returns its path."""
        return write_private(self.folder / f"{time.time_ns():020d}-{name}{self.suffix}", data)

    def pending(self) -> list[Path]:
        """Queued files, oldest first."""
        return sorted(self.folder.glob(f"*{self.suffix}"))

    @staticmethod
    def read(path: Path) -> Dataset:
        return dcmread(path)

    @staticmethod
    def remove(path: Path) -> None:
        path.unlink(missing_ok=True)

    @staticmethod
    def refusals(path: Path) -> int:
        """How many times the destination refused this file (or broke off sending it)."""
        parts = path.stem.split("-")
        return int(parts[1][1:]) if len(parts) > 2 and parts[1].startswith("r") else 0

    def refused(self, path: Path) -> Path:
        """Count one more refusal of the file (in its name, keeping its place in the order); its new path."""
        queued, *rest = path.stem.split("-")
        name = rest[-1]
        return path.rename(path.with_name(f"{queued}-r{self.refusals(path) + 1}-{name}{self.suffix}"))


def resend(outbox: Outbox, attempt: Callable[[Path], Failure | None], dead_letters: DeadLetters,
           dead_letter_after: int, kind: str, destination: str) -> bool:
    """Send the queued files oldest first (``attempt`` reads and sends one), deleting each once stored.
    A file that cannot be read is set aside; one the destination refuses, or aborts on (or leaves
    unanswered) once reached, waits for the next round while the others go on, and is set aside after
    ``dead_letter_after`` such failures; the round stops, counting nothing against the file, when the
    destination cannot be reached. True when any was stored."""
    stored = False
    for path in outbox.pending():
        try:
            failure = attempt(path)
        except Exception as err:  # noqa: BLE001 - a file that cannot be read is set aside, not retried
            dead_letters.move("result_unreadable", path, err)
            continue
        if failure is None:
            outbox.remove(path)
            stored = True
            log.info("sent a queued result to %s; %d left", destination, len(outbox.pending()))
            continue
        record_send_failure(kind)
        log.warning("resending to %s failed: %s", destination, failure)
        if not failure.counts:
            break
        path = outbox.refused(path)
        if outbox.refusals(path) >= dead_letter_after:
            dead_letters.move(failure.dead_letter_reason, path, failure.reason)
    return stored

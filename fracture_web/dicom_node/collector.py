"""The images of each study, gathered on disk until the study has settled and its results go out.

A PACS or modality sends a study's views one by one. The node reads each as it arrives and hands
the image and its results (its Secondary Capture) to the collector, which writes them to disk
*before* the node tells the sender the image is stored. Once no new image of the study has arrived
for ``settle_seconds``, the study is *settled*: the node sends the waiting results with one report
for the whole study, then marks it delivered. A later image of the same study starts it waiting
again, and the next report covers every image seen so far (with the same UIDs, so it replaces the
earlier one in the PACS).

On disk (folders 0700, files 0600, each written whole or not at all), one folder per study, patient
and model (Study Instance UID, Patient ID or else name, model version, operating point: what the
report's UIDs derive from; two patients sharing a Study Instance UID are kept apart, each reported alone;
folder and file names are hashes, never UIDs or patient data)::

    <study>/<image>.json     the image's reading (identity, prediction, warnings, arrival time)
    <study>/<image>-<n>.dcm  its results waiting to go with the study's next report
    <study>/reported         when the study's report last went out

What survives a restart: every image the node acknowledged, its reading and its waiting results.
A new collector over the same folder finds studies with results waiting and reports each once its
newest image is ``settle_seconds`` old (by the stored arrival times: at once when that time has
passed). Results are deleted only in :meth:`StudyCollector.delivered`, after they were sent or put
in the outbox, so a crash in between sends them again (same UIDs: replaced, not duplicated). The
readings of a delivered study stay ``keep_seconds`` after its last report, for late images; after
that the folder is deleted, and an image of that study arriving later gets a report of its own.
"""
from __future__ import annotations

import hashlib
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset

from ..inference import Prediction
from .header import patient_key
from .private_files import dicom_file, private_folder, remove_partial_writes, write_private
from .readings import Reading

REPORTED = "reported"


@dataclass(frozen=True)
class SettledStudy:
    """A study whose images stopped arriving: all of them read so far, and the results waiting to go."""

    key: str
    readings: tuple[Reading, ...]  # in order of arrival
    waiting: tuple[Path, ...]  # the results' DICOM files


class StudyCollector:
    """Received images grouped by study on disk, with the time each study last grew."""

    def __init__(self, folder: Path, settle_seconds: float, keep_seconds: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.folder = private_folder(folder)
        self.settle_seconds, self.keep_seconds, self.clock = settle_seconds, keep_seconds, clock
        self._lock = threading.Lock()
        self._waiting_since: dict[str, float] = {}  # studies with results waiting -> newest arrival
        for study in sorted(p for p in self.folder.iterdir() if p.is_dir()):
            remove_partial_writes(study)
            if any(study.glob("*.dcm")):
                readings = self._readings(study)
                self._waiting_since[study.name] = max((r.received for r in readings), default=0.0)
        self._forget_old()

    def add(self, source: Dataset, prediction: Prediction, warnings: Sequence[str], results: Sequence[Dataset]) -> None:
        """Keep a received image's reading and its results on disk; returns once they are written."""
        reading = Reading.of(source, prediction, warnings, self.clock())
        key, image = study_key(reading), hashed(source.SOPInstanceUID)
        document = reading.to_json().encode()  # before any write: a reading that cannot be kept leaves nothing
        with self._lock:
            study = private_folder(self.folder / key)
            for n, ds in enumerate(results):  # results first: a reading without them would never be reported
                write_private(study / f"{image}-{n}.dcm", dicom_file(ds))
            write_private(study / f"{image}.json", document)
            self._waiting_since[key] = reading.received

    def settled(self) -> list[SettledStudy]:
        """The studies with results waiting and no new image for ``settle_seconds``."""
        now = self.clock()
        with self._lock:
            due = [key for key, since in self._waiting_since.items() if now - since >= self.settle_seconds]
            return [self._settled(self.folder / key) for key in due]

    def delivered(self, study: SettledStudy) -> None:
        """The study's results were sent or queued: delete them, keep its readings for late images."""
        with self._lock:
            folder = self.folder / study.key
            write_private(folder / REPORTED, repr(self.clock()).encode())  # first: a crash now only resends
            for path in study.waiting:
                path.unlink(missing_ok=True)
            if not any(folder.glob("*.dcm")):  # else an image arrived meanwhile: it waits for the next report
                self._waiting_since.pop(study.key, None)
            self._forget_old()

    def _forget_old(self) -> None:
        """Delete the folders of delivered studies last reported more than ``keep_seconds`` ago."""
        now = self.clock()
        for folder in [p for p in self.folder.iterdir() if p.is_dir() and p.name not in self._waiting_since]:
            reported = folder / REPORTED
            if not reported.exists() or now - float(reported.read_text()) > self.keep_seconds:
                shutil.rmtree(folder)

    def _settled(self, folder: Path) -> SettledStudy:
        return SettledStudy(folder.name, self._readings(folder), tuple(sorted(folder.glob("*.dcm"))))

    @staticmethod
    def _readings(folder: Path) -> tuple[Reading, ...]:
        readings = (Reading.from_json(path.read_text()) for path in folder.glob("*.json"))
        return tuple(sorted(readings, key=lambda r: (r.received, str(r.source.SOPInstanceUID))))


def study_key(reading: Reading) -> str:
    """The name a study's results go under: its Study Instance UID, patient, model version and operating
    point (what the report's UIDs derive from), hashed. Two patients given the same Study Instance UID
    are two studies, each with its own report, never one report under the first one's name."""
    p = reading.prediction
    return hashed(reading.source.StudyInstanceUID, patient_key(reading.source), p.model_version, p.operating_point)


def hashed(*parts: str) -> str:
    """A file name for these values that reveals none of them."""
    return hashlib.sha256("\0".join(str(part) for part in parts).encode()).hexdigest()[:40]


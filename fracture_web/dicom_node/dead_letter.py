"""What the node sets aside instead of sending: results it cannot build, or that the destination
keeps refusing, so that one bad study never holds up the others.

On one box they go to a private folder, ``dead-letter`` in the queue folder (made when first needed;
0700, files 0600), each file named ``<time>-<reason>-...`` beside a ``.why`` note with the error: a
result's DICOM file, or a study's readings (JSON) when its report could not be made. A person can
look at them, and move a DICOM file back into the queue folder to send it again. Either way each is
logged (the reason and the error's type, no patient data) and counted in ``fracture_dead_letters``.

With a broker they go to Redis lists, newest first. Received images that could not be analysed
(``analysis_failed``: the node acknowledged them, so the entry is their only copy) go to
``fracture:dead-letter:received``, which has no cap: nothing drops them, a person empties it. The
rest (results, readings: the node can make them again) go to ``fracture:dead-letter``, which keeps
the newest ``REDIS_KEEP`` so that it cannot fill the broker's memory; each entry the cap drops is
logged and counted in ``fracture_dead_letters_dropped`` by its reason (a received image left there
by an earlier version is moved to the uncapped list instead).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from redis import Redis

from ..metrics import record_dead_letter, record_dead_letter_dropped
from .private_files import PARTIAL, private_folder, write_private

log = logging.getLogger(__name__)

FOLDER = "dead-letter"
REDIS_KEY = "fracture:dead-letter"
#: Entries the capped Redis list keeps (the oldest are dropped, logged and counted): it must not fill
#: the broker's memory.
REDIS_KEEP = 1000
#: The uncapped Redis list of received images set aside: their only copy, never dropped.
RECEIVED_KEY = "fracture:dead-letter:received"
#: The reasons whose entries are received images, kept in ``RECEIVED_KEY``.
RECEIVED_REASONS = frozenset({"analysis_failed"})


def record(reason: str, what: str, error: BaseException | str) -> None:
    """Log and count one thing set aside; only the error's type is logged (its text may quote the data)."""
    kind = error if isinstance(error, str) else type(error).__name__
    log.error("set aside (dead letter, %s): %s: %s", reason, what, kind)
    record_dead_letter(reason)


def why(error: BaseException | str) -> str:
    """The note kept with a dead letter: the error's type and text (not logged: the text may quote the data)."""
    return error if isinstance(error, str) else f"{type(error).__name__}: {error}"


class DeadLetters:
    """The one-box node's dead-letter folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder).expanduser()

    def put(self, reason: str, name: str, data: bytes, error: BaseException | str) -> Path:
        """Keep ``data`` (a file called ``name``) with why it was set aside; logged and counted."""
        path = write_private(self._path(reason, name), data)
        self._note(path, error)
        record(reason, name.rsplit(".", 1)[-1], error)
        return path

    def move(self, reason: str, path: Path, error: BaseException | str) -> Path:
        """Move a file here (from the outbox: same file system) with why; logged and counted."""
        moved = path.rename(self._path(reason, path.name))
        self._note(moved, error)
        record(reason, "a result object", error)
        return moved

    def items(self) -> list[Path]:
        """What was set aside (not the notes), oldest first."""
        if not self.folder.exists():
            return []
        return sorted(p for p in self.folder.glob("*") if p.suffix not in (".why", PARTIAL))

    def _path(self, reason: str, name: str) -> Path:
        return private_folder(self.folder) / f"{time.time_ns():020d}-{reason}-{name}"

    @staticmethod
    def _note(path: Path, error: BaseException | str) -> None:
        write_private(path.with_name(path.name + ".why"), why(error).encode())


def to_redis(client: Redis, reason: str, what: str, payload: str, error: BaseException | str) -> None:
    """Push a dead letter (``payload``: a base64 DICOM file or readings as JSON) to its Redis list;
    logged and counted. A received image is never dropped; what the cap drops is logged and counted."""
    entry = json.dumps({"reason": reason, "what": what, "error": why(error), "time": time.time(), "payload": payload})
    if reason in RECEIVED_REASONS:
        client.lpush(RECEIVED_KEY, entry)
    else:
        with client.pipeline() as pipe:  # MULTI/EXEC: what the trim drops is what was read
            _pushed, dropped, _trimmed = pipe.lpush(REDIS_KEY, entry).lrange(REDIS_KEY, REDIS_KEEP, -1) \
                .ltrim(REDIS_KEY, 0, REDIS_KEEP - 1).execute()
        _dropped(client, dropped)
    record(reason, what, error)


def _dropped(client: Redis, entries: list[bytes]) -> None:
    """Log and count the entries the cap dropped (oldest last); a received image among them (left
    by an earlier version) goes to the uncapped list instead, at its old end."""
    for entry in entries:
        try:
            reason = str(json.loads(entry).get("reason"))
        except (ValueError, AttributeError):
            reason = "unknown"
        if reason in RECEIVED_REASONS:
            client.rpush(RECEIVED_KEY, entry)
            continue
        log.warning("dead letter list full (%d kept): dropped its oldest entry (%s)", REDIS_KEEP, reason)
        record_dead_letter_dropped(reason)

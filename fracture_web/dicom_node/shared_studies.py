"""The readings of each study in Redis, shared by every worker: whichever worker read an image, any
worker can tell when its study has settled and report it with every image read so far.

Per study (named as on disk: a hash of Study Instance UID, model version and operating point)::

    fracture:study:<key>           hash: image (hashed SOP Instance UID) -> its reading (JSON, no pixels)
    fracture:study:<key>:grew      when the study last got a reading, by Redis's clock (one clock for all hosts)
    fracture:study:<key>:reported  how many readings the latest report covers
    fracture:study:<key>:claim:<n> the task making the report over n readings (for a while)

Each reading schedules a check ``settle_seconds`` later (a delayed Celery task); the check finds the
study *due* when it has not grown since and has readings no report covers yet, so of several
checks only the one after the last image reports, and a late image re-issues the report (same UID:
it replaces the earlier one). Checks that run late (behind a backlog) may find the study due on two
workers at once: the first task to *claim* the report over those readings makes it, the other does
nothing (the claiming task, retried or run again after its worker died, keeps its claim). A report's count lets the sender drop a report that a newer one has
replaced while it waited for a retry. Everything expires ``keep_seconds`` after the study last grew.

A delivered result is marked (``fracture:sent:<hash>``, also for ``keep_seconds``) by its SOP
Instance UID and, for a report, the number of readings it covers: a task that runs again after
its worker died (or its message came back) does not send it a second time.
"""
from __future__ import annotations

from redis import Redis

from .collector import hashed, study_key
from .readings import Reading

PREFIX = "fracture:study:"
SENT = "fracture:sent:"


class SharedStudies:
    """Studies being read by the workers, in Redis."""

    def __init__(self, client: Redis, keep_seconds: float) -> None:
        self.client, self.keep = client, max(1, int(keep_seconds))

    def now(self) -> float:
        """Redis's clock, in seconds since the epoch."""
        seconds, microseconds = self.client.time()
        return seconds + microseconds / 1e6

    def add(self, reading: Reading) -> str:
        """Keep one image's reading with its study; returns the study's key."""
        key = study_key(reading)
        with self.client.pipeline() as pipe:  # MULTI/EXEC: the reading and the time it grew, together
            pipe.hset(PREFIX + key, hashed(reading.source.SOPInstanceUID), reading.to_json())
            pipe.set(PREFIX + key + ":grew", repr(self.now()))
            for suffix in ("", ":grew", ":reported"):
                pipe.expire(PREFIX + key + suffix, self.keep)
            pipe.execute()
        return key

    def due(self, key: str, settle_seconds: float) -> tuple[Reading, ...] | None:
        """The study's readings (in order of arrival) when it has settled with readings no report
        covers yet; else None."""
        with self.client.pipeline() as pipe:
            grew, reported, stored = pipe.get(PREFIX + key + ":grew").get(PREFIX + key + ":reported") \
                .hvals(PREFIX + key).execute()
        if grew is None or self.now() - float(grew) < settle_seconds or len(stored) == int(reported or 0):
            return None
        readings = (Reading.from_json(text) for text in stored)
        return tuple(sorted(readings, key=lambda r: (r.received, str(r.source.SOPInstanceUID))))

    def claim(self, key: str, count: int, owner: str, seconds: float) -> bool:
        """Claim the making of the study's report over ``count`` readings for ``owner`` (a task's id,
        which a retried or redelivered task keeps); False while another owner holds it. A claim lapses
        after ``seconds``."""
        name = f"{PREFIX}{key}:claim:{count}"
        if self.client.set(name, owner, nx=True, ex=max(1, int(seconds))):
            return True
        return self.client.get(name) == owner.encode()

    def reporting(self, key: str, count: int) -> None:
        """The study's report over ``count`` readings is on its way."""
        self.client.set(PREFIX + key + ":reported", count, ex=self.keep)

    def superseded(self, key: str, count: int) -> bool:
        """Whether a report over more readings than ``count`` has been made since."""
        return int(self.client.get(PREFIX + key + ":reported") or 0) > count

    def was_sent(self, uid: str, readings: int = 0) -> bool:
        """Whether this result (a report: over this many readings) was delivered already."""
        return bool(self.client.exists(SENT + hashed(uid, readings)))

    def sent(self, uid: str, readings: int = 0) -> None:
        """Mark this result as delivered."""
        self.client.set(SENT + hashed(uid, readings), 1, ex=self.keep)

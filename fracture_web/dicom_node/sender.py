"""Delivery of result datasets to the destination, with retries and exponential backoff.

:class:`Sender` is the interface the node uses: ``send`` tries up to ``retries`` times with doubling
delays and says whether everything was stored. Each way to deliver implements one attempt, which
says what went wrong as a :class:`Failure`: *refused* when the destination answered and turned the
result down (a C-STORE failure status, an HTTP 4xx), *broke off* when it was reached but cut the
transfer or never answered it (an A-ABORT or silence in the middle of a C-STORE: many a PACS or DICOM
firewall aborts on an object it cannot parse), as opposed to not being reached at all:
:class:`CStoreSender` here (DICOM C-STORE, pynetdicom), and
:class:`fracture_web.dicom_node.stow.StowSender` (DICOMweb STOW-RS).
"""
from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom import Dataset
from pydicom.uid import (BasicTextSRStorage, ComprehensiveSRStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                         SecondaryCaptureImageStorage)
from pynetdicom import AE

from ..metrics import record_send_failure
from .config import NodeConfig

log = logging.getLogger(__name__)
#: Statuses a Storage SCP answers for a stored instance: success and the 0xB000 warnings.
STORED = {0x0000, 0xB000, 0xB006, 0xB007}
#: What the node sends: Secondary Captures and Measurement Reports, and the Basic Text SRs that an
#: earlier version may have left in the disk queue.
SOP_CLASSES = (SecondaryCaptureImageStorage, ComprehensiveSRStorage, BasicTextSRStorage)


@dataclass(frozen=True)
class Failure:
    """What went wrong with one attempt (no patient data); ``refused`` when the destination answered
    and turned the result down, ``broke_off`` when it was reached but cut the transfer (an abort, no
    answer): trying again may not change either, so both count toward the dead letter (:attr:`counts`)."""

    reason: str
    refused: bool = False
    broke_off: bool = False

    @property
    def counts(self) -> bool:
        """Whether this failure is held against the results sent (the destination was reached), not
        against the destination (down, unreachable: the queue waits and nothing is counted)."""
        return self.refused or self.broke_off

    @property
    def dead_letter_reason(self) -> str:
        """The reason a result set aside after failures like this one is filed and counted under."""
        return "refused" if self.refused else "aborted"

    def __str__(self) -> str:
        return self.reason


class Sender(ABC):
    """Sends result datasets to the configured destination, retrying with doubling delays."""

    #: How results travel, as the send-failure metric names it.
    kind = "unknown"

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        #: ``time.monotonic()`` of the last attempt that did not reach the destination (0: none yet).
        self.unreachable_at = 0.0

    def recently_unreachable(self) -> bool:
        """Whether an attempt failed to reach the destination within the last ``retry_delay`` seconds:
        a caller that may not wait (a worker between analyses) then queues its results for later."""
        return self.unreachable_at > 0 and time.monotonic() - self.unreachable_at < self.config.retry_delay

    def close(self) -> None:
        """Let go of whatever connection is kept open between attempts (none here)."""

    def send(self, datasets: Sequence[Dataset], tries: int | None = None) -> bool:
        """Store every dataset, trying up to ``tries`` times with doubling delays; True once all are stored."""
        tries = tries or self.config.retries
        for attempt in range(1, tries + 1):
            problem = self.attempt(datasets)
            if problem is None:
                return True
            record_send_failure(self.kind)
            delay = self.config.retry_delay * 2 ** (attempt - 1)
            more = f"; retrying in {delay:g} s" if attempt < tries else ""
            log.warning("sending to %s failed (try %d of %d): %s%s", self.destination, attempt, tries, problem, more)
            if attempt < tries:
                time.sleep(delay)
        return False

    def attempt(self, datasets: Sequence[Dataset]) -> Failure | None:
        """One attempt (:meth:`send_once`) whose unexpected faults (a dataset that cannot be encoded, a
        library's error) count as a refusal of these datasets instead of reaching the caller."""
        try:
            failure = self.send_once(datasets)
        except Exception as err:  # noqa: BLE001 - whatever one result does, the node goes on
            failure = Failure(f"sending failed ({type(err).__name__})", refused=True)
        if failure is not None and not failure.counts:
            self.unreachable_at = time.monotonic()
        return failure

    @abstractmethod
    def send_once(self, datasets: Sequence[Dataset]) -> Failure | None:
        """One attempt; None when everything was stored, else what went wrong."""

    @property
    @abstractmethod
    def destination(self) -> str:
        """The destination, for the log."""


#: Seconds to wait for the PACS to accept the connection: the system's own wait for a host that does not
#: answer is minutes, longer than a worker's task may take before the broker hands it to another.
CONNECT_SECONDS = 10.0


#: Seconds a kept association stays open with nothing to send: long enough to carry a burst's results
#: one after another, short of the PACS's own idle timeout (often 30 s or more); an idle pynetdicom
#: association is not free either (its threads poll about a thousand times a second at each end).
KEEP_IDLE_SECONDS = 2.0


class CStoreSender(Sender):
    """C-STORE to the destination PACS (``FRACTURE_DICOM_DEST_*``) on one association kept between
    attempts: opening and releasing one per result cost more than the C-STORE itself, idle on both
    sides. The association is released once idle for ``KEEP_IDLE_SECONDS``; a kept one that fails to
    carry an attempt (the PACS may have dropped it) is aborted and the attempt made once more on a new one."""

    kind = "c_store"

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.ae = AE(ae_title=config.ae_title)
        self.ae.connection_timeout = CONNECT_SECONDS
        for sop_class in SOP_CLASSES:
            self.ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        self._lock = threading.Lock()
        self._kept, self._used_at, self._idle_timer = None, 0.0, None

    def send_once(self, datasets: Sequence[Dataset]) -> Failure | None:
        with self._lock:
            kept = self._kept is not None and self._kept.is_established
            failure = self._store(datasets)
            if failure is not None and kept and not failure.refused:
                failure = self._store(datasets)  # the kept association was dropped: once more on a new one
            self._release_when_idle()
            return failure

    def _release_when_idle(self) -> None:
        """(Re)start the wait after which an unused association is released."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._idle_timer = threading.Timer(KEEP_IDLE_SECONDS, self._release_if_idle)
        self._idle_timer.daemon = True
        self._idle_timer.start()

    def _release_if_idle(self) -> None:
        with self._lock:
            if time.monotonic() - self._used_at >= KEEP_IDLE_SECONDS:
                self._let_go(release=True)

    def _store(self, datasets: Sequence[Dataset]) -> Failure | None:
        """One attempt on the kept association, opened first where there is none."""
        if self._kept is None or not self._kept.is_established:
            self._let_go(release=False)
            c = self.config
            try:
                assoc = self.ae.associate(c.dest_host, c.dest_port, ae_title=c.dest_ae_title)
            except (OSError, RuntimeError, ValueError) as err:
                return Failure(f"cannot connect ({err})")
            if not assoc.is_established:
                return Failure("association rejected or aborted")
            self._kept = assoc
        try:
            for ds in datasets:
                status = self._kept.send_c_store(ds)
                code = getattr(status, "Status", None)
                if code is None:
                    self._let_go(release=False)
                    return Failure("no answer (the association was aborted or timed out)", broke_off=True)
                if code not in STORED:
                    return Failure(f"C-STORE status 0x{code:04X}", True)
            return None
        except (OSError, RuntimeError, ValueError, AttributeError) as err:
            self._let_go(release=False)
            return Failure(f"C-STORE failed ({type(err).__name__})", broke_off=True)
        finally:
            self._used_at = time.monotonic()

    def _let_go(self, release: bool) -> None:
        """Release (or abort) the kept association, if any."""
        assoc, self._kept = self._kept, None
        if assoc is None or not assoc.is_established:
            return
        if release:
            assoc.release()
        else:
            assoc.abort()

    def close(self) -> None:
        """Release the kept association (at shutdown)."""
        with self._lock:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            self._let_go(release=True)

    @property
    def destination(self) -> str:
        c = self.config
        return f"{c.dest_ae_title}@{c.dest_host}:{c.dest_port}"

"""Who may open an association with the node, how many at once, and how long one may sit idle.

- Only the calling AE titles in ``FRACTURE_DICOM_ALLOWED_AE_TITLES`` (by default the destination
  PACS's, ``FRACTURE_DICOM_DEST_AE_TITLE``) are accepted; any other is rejected at once (A-ASSOCIATE-RJ,
  "calling AE title not recognised"). An AE title is no password: with ``FRACTURE_DICOM_ALLOWED_HOSTS``
  (addresses or networks) a connection from any other host is closed before it can ask for anything;
  bind the node to the hospital network and firewall it as well.
- At most ``FRACTURE_DICOM_MAX_ASSOCIATIONS`` at once; the next is rejected (transient, "local limit
  exceeded") for the sender to try again.
- An association that stores nothing for ``FRACTURE_DICOM_IDLE_SECONDS`` is aborted by a watcher
  thread, whatever else it does: a C-ECHO every few seconds keeps pynetdicom's own network timeout
  from firing, so idle associations could otherwise fill every slot and lock out real stores. One
  whose C-STORE is being handled (an image being analysed) or whose instance is arriving is never idle.
- An instance larger than ``MAX_INSTANCE_BYTES`` (the largest DICOM file the analysis accepts, as an
  inflated one) aborts its association as it arrives: pynetdicom would otherwise hold any size a peer
  sends in memory.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from ipaddress import IPv6Address, ip_address, ip_network
from weakref import WeakKeyDictionary

from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification
from pynetdicom.transport import AssociationServer

from ..dicom import MAX_INFLATED_BYTES
from .config import NodeConfig

log = logging.getLogger(__name__)
#: Seconds to negotiate an association: a connection that never asks for one is dropped.
ACSE_SECONDS = 30.0
#: The most bytes of one instance (its command and dataset as received) before its association is aborted.
MAX_INSTANCE_BYTES = MAX_INFLATED_BYTES


def limit(ae: AE, config: NodeConfig) -> None:
    """Apply the node's allowed callers, association count and timeouts to ``ae``."""
    ae.require_calling_aet = list(config.callers)
    ae.maximum_associations = config.max_associations
    ae.acse_timeout = min(ACSE_SECONDS, config.idle_seconds)
    ae.network_timeout = config.idle_seconds  # silence on the wire; the watcher also counts C-ECHO as idle


def admit_hosts(server: AssociationServer, hosts: tuple[str, ...]) -> None:
    """Close a connection from outside ``hosts`` (addresses or networks) before any association; none
    given: any host (the calling AE title is still checked)."""
    if not hosts:
        return
    networks = [ip_network(host, strict=False) for host in hosts]

    def verify_request(_request: object, client_address: tuple) -> bool:  # socketserver's hook, per connection
        address = ip_address(client_address[0])
        if isinstance(address, IPv6Address) and address.ipv4_mapped:  # a dual-stack socket's IPv4 caller
            address = address.ipv4_mapped
        if any(address in network for network in networks):
            return True
        log.warning("closed a connection from %s: not in FRACTURE_DICOM_ALLOWED_HOSTS", address)
        return False

    server.verify_request = verify_request


class IdleWatch:
    """Aborts associations that have stored nothing for ``idle_seconds`` (C-ECHO does not count), and
    those sending an instance over ``max_bytes``."""

    def __init__(self, idle_seconds: float, active: Callable[[], Iterable[Association]],
                 clock: Callable[[], float] = time.monotonic, max_bytes: int = MAX_INSTANCE_BYTES) -> None:
        self.idle_seconds, self.active, self.clock, self.max_bytes = idle_seconds, active, clock, max_bytes
        self._last: WeakKeyDictionary[Association, float | None] = WeakKeyDictionary()  # None: storing now
        self._arriving: WeakKeyDictionary[Association, int] = WeakKeyDictionary()  # bytes of the instance so far
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="dicom-idle-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    @contextmanager
    def storing(self, assoc: Association) -> Iterator[None]:
        """Around one C-STORE's handling: the association is busy, and active again when it ends."""
        with self._lock:
            self._last[assoc] = None
        try:
            yield
        finally:
            with self._lock:
                self._last[assoc] = self.clock()
                self._arriving[assoc] = 0

    def received(self, event: evt.Event) -> None:
        """A PDU from a peer (``EVT_PDU_RECV``, on the association's reader thread): a stored instance's
        data arriving is activity, a C-ECHO's is not; past ``max_bytes`` the association is aborted."""
        items = getattr(event.pdu, "presentation_data_value_items", None)
        if not items:
            return
        assoc = event.assoc
        storage = {cx.context_id for cx in assoc.accepted_contexts if cx.abstract_syntax != Verification}
        size = sum(len(item.data or b"") for item in items if item.context_id in storage)
        if not size:
            return
        with self._lock:
            if self._last.get(assoc, 0.0) is not None:
                self._last[assoc] = self.clock()
            total = self._arriving[assoc] = self._arriving.get(assoc, 0) + size
        if total > self.max_bytes >= total - size:  # once, as it passes the limit
            log.warning("aborting an association whose instance is over %d MB (calling AE %s)",
                        self.max_bytes >> 20, assoc.requestor.ae_title)
            # Not on this thread: aborting waits for the reader thread, which is this one.
            threading.Thread(target=assoc.abort, name="dicom-abort", daemon=True).start()

    def close_idle(self) -> int:
        """Abort the associations idle for too long (first seen now counts as activity); how many."""
        now, idle = self.clock(), []
        with self._lock:
            for assoc in self.active():
                last = self._last.setdefault(assoc, now)
                if last is not None and now - last >= self.idle_seconds:
                    idle.append(assoc)
        for assoc in idle:
            log.warning("closing an association idle for %g s (calling AE %s)", self.idle_seconds,
                        assoc.requestor.ae_title)
            assoc.abort()
        return len(idle)

    def _watch(self) -> None:
        while not self._stop.wait(min(1.0, self.idle_seconds / 4)):
            self.close_idle()

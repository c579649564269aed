"""What every kind of node shares: the Storage SCP that accepts any storage object from the allowed
callers (:mod:`~fracture_web.dicom_node.associations`), checks that a radiograph names its study,
series and instance with valid UIDs, and hands it on (:meth:`StorageServer.receive`) as the dataset
parsed once and the file as received; and the process's metrics server.

A radiograph whose Study, Series or SOP Instance UID is not a valid DICOM UID (over 64 characters,
or not digits and dots) is refused at intake with "cannot understand" (0xC000) and an Error Comment
saying which: its results would have to go in that study, and a PACS refuses them there (Orthanc
answers 0xA700 for ever), so the modality is told at once instead.

Anything that is not a radiograph is accepted and ignored (logged). A radiograph whose handling
fails in a way no check foresaw (a patient name sent with a numeric VR, say) is refused with 0xC000
and an Error Comment naming the error's type, which is all that is logged of it. Nothing about the
patient is logged: only the SOP class, verdicts and probabilities.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from pydicom import Dataset
from pydicom.uid import (UID, ComputedRadiographyImageStorage, DeflatedExplicitVRLittleEndian,
                         DigitalXRayImageStorageForPresentation)
from pynetdicom import ALL_TRANSFER_SYNTAXES, AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from ..dicom import check_complete, inflated, read_dataset
from ..pixels import InvalidImageError
from .associations import IdleWatch, admit_hosts, limit
from .config import NodeConfig, NodeConfigError

log = logging.getLogger(__name__)

#: SOP classes the node analyses; "for processing" DX images are raw detector data, not for reading.
RADIOGRAPH_SOP_CLASSES = frozenset({ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation})
#: What a radiograph must name to be filed with its study.
IDENTITY = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xC000


def serve_metrics(config: NodeConfig) -> WSGIServer | None:
    """Serve this process's metrics for Prometheus on ``metrics_port``, on the node's bind address only."""
    if not config.metrics_port:
        return None
    server, _thread = start_http_server(config.metrics_port, addr=config.bind)
    return server


def check_identity(source: Dataset) -> None:
    """Raise :class:`InvalidImageError` unless the radiograph names its study, series and instance by valid UIDs."""
    if missing := [keyword for keyword in IDENTITY if not source.get(keyword)]:
        raise InvalidImageError(f"it has no {' or '.join(missing)}")
    if invalid := [keyword for keyword in IDENTITY if not UID(str(source[keyword].value)).is_valid]:
        raise InvalidImageError(f"invalid UID: {', '.join(invalid)}")


class StorageServer(ABC):
    """An association server for any storage object and C-ECHO; radiographs go to :meth:`receive`."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self._server = None
        self._idle: IdleWatch | None = None

    def start(self) -> None:
        """Listen for associations from the allowed callers."""
        if not self.config.callers:
            raise NodeConfigError("Set FRACTURE_DICOM_ALLOWED_AE_TITLES: the calling AE titles that may store here.")
        ae = AE(ae_title=self.config.ae_title)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)  # C-ECHO, for the PACS's "test connection"
        limit(ae, self.config)
        self._idle = IdleWatch(self.config.idle_seconds, lambda: self._server.active_associations)
        self._server = ae.start_server((self.config.bind, self.config.port), block=False,
                                       evt_handlers=[(evt.EVT_C_STORE, self.handle_store),
                                                     (evt.EVT_PDU_RECV, self._idle.received)])
        admit_hosts(self._server, self.config.allowed_hosts)
        self._idle.start()

    def stop(self) -> None:
        """Stop listening."""
        if self._idle is not None:
            self._idle.stop()
        if self._server is not None:
            self._server.shutdown()

    def handle_store(self, event: evt.Event) -> int | Dataset:
        """One received instance (its association busy meanwhile): hand it on if it is a radiograph, else
        accept and ignore it."""
        with self._idle.storing(event.assoc):
            sop_class = UID(event.request.AffectedSOPClassUID)
            if sop_class not in RADIOGRAPH_SOP_CLASSES:
                log.info("ignored a %s instance: not a radiograph", sop_class.name)
                return SUCCESS
            try:
                source, data = received(event)
                check_identity(source)
                return self.receive(source, data)
            except InvalidImageError as err:
                log.warning("received a %s that cannot be analysed: %s", sop_class.name, err)
                return refusal(CANNOT_UNDERSTAND, str(err))
            except Exception as err:  # noqa: BLE001 - a hostile dataset still gets an answer, and keeps its values
                return unexpected(sop_class, err)  # out of the log (pynetdicom would log them with a traceback)

    @abstractmethod
    def receive(self, source: Dataset, data: bytes) -> int | Dataset:
        """Keep one radiograph durably: its dataset (parsed already, with its file meta; parse it no
        more) and its DICOM file as received (for a node that hands it on); the C-STORE status to
        answer (raises :class:`InvalidImageError` for one that cannot be analysed)."""

    @property
    @abstractmethod
    def destination(self) -> str:
        """Where results go, for the log."""


def received(event: evt.Event) -> tuple[Dataset, bytes]:
    """The received instance as a dataset (parsed once, by pynetdicom, with its file meta) and as a
    DICOM file (its bytes as received, not parsed again); one whose pixel data is cut off is refused
    as the analysis refuses such a file.

    pynetdicom would inflate a deflated dataset whole, with no limit (a small C-STORE could ask for
    gigabytes); such a one is inflated here with the web app's ceiling, refused past it, and parsed
    from the inflated file instead."""
    data = event.encoded_dataset()
    if event.context.transfer_syntax == DeflatedExplicitVRLittleEndian:
        data = inflated(data)
        return read_dataset(data), data
    source = event.dataset
    source.file_meta = event.file_meta
    check_complete(source, data)
    return source, data


def unexpected(sop_class: UID, err: Exception) -> Dataset:
    """The answer to an instance whose handling failed in a way no check foresaw (say, a patient name
    sent with a numeric VR): "cannot understand" naming only the error's type, in the answer and the
    log, since its text may quote the dataset's values."""
    log.error("received a %s that could not be handled (%s); refused", sop_class.name, type(err).__name__)
    return refusal(CANNOT_UNDERSTAND, f"the node could not read this instance ({type(err).__name__})")


def refusal(status: int, comment: str) -> Dataset:
    """A C-STORE failure status with an Error Comment saying why (at most 64 characters, as DICOM allows)."""
    answer = Dataset()
    answer.Status, answer.ErrorComment = status, comment[:64]
    return answer

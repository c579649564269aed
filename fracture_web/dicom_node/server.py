"""The Storage SCP: receive, analyse radiographs, deliver results (or queue them on disk).

A PACS sends any storage object to the node; radiographs (CR, DX for presentation) go through
the app's own analysis, and their Secondary Capture and Measurement Report (SR) are handed to a
delivery thread, so the C-STORE answer does not wait for the destination. Anything else is
accepted and ignored (logged). Nothing about the patient is logged: only the SOP class, the verdict
and the probability.
"""
from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time

from pydicom import Dataset
from pydicom.uid import UID, ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation
from pynetdicom import ALL_TRANSFER_SYNTAXES, AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from ..analysis import analyse
from ..pixels import InvalidImageError
from ..inference import FractureModel, ModelLoadError, UnknownOperatingPointError, load_model
from .config import NodeConfig, NodeConfigError, from_environment
from .outbox import Outbox
from .results import result_datasets
from .sender import Sender

log = logging.getLogger(__name__)

#: SOP classes the node analyses; "for processing" DX images are raw detector data, not for reading.
RADIOGRAPH_SOP_CLASSES = frozenset({ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation})
#: Longest side of the Secondary Capture image.
DISPLAY_MAX_SIDE = 1024
SUCCESS, CANNOT_UNDERSTAND = 0x0000, 0xC000


class Node:
    """The running node: an association server plus one delivery thread."""

    def __init__(self, config: NodeConfig, model: FractureModel) -> None:
        self.config, self.model = config, model
        self.outbox = Outbox(config.queue_dir)
        self.sender = Sender(config)
        self._results: queue.Queue[list[Dataset]] = queue.Queue()
        self._stopping = threading.Event()
        self._server = None
        self._delivery = threading.Thread(target=self._deliver, name="dicom-delivery", daemon=True)

    def start(self) -> None:
        """Listen for associations and start delivering (also what an earlier run left queued)."""
        ae = AE(ae_title=self.config.ae_title)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)  # C-ECHO, for the PACS's "test connection"
        self._server = ae.start_server((self.config.bind, self.config.port), block=False,
                                       evt_handlers=[(evt.EVT_C_STORE, self.handle_store)])
        self._delivery.start()

    def stop(self) -> None:
        """Stop listening and let the delivery thread finish its current send."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
        self._delivery.join(timeout=60)

    def handle_store(self, event: evt.Event) -> int:
        """One received instance: analyse it if it is a radiograph, else accept and ignore it."""
        sop_class = UID(event.request.AffectedSOPClassUID)
        if sop_class not in RADIOGRAPH_SOP_CLASSES:
            log.info("ignored a %s instance: not a radiograph", sop_class.name)
            return SUCCESS
        try:
            results = self.results_for(event.encoded_dataset(), event.dataset)
        except InvalidImageError as err:
            log.warning("received a %s that cannot be analysed: %s", sop_class.name, err)
            return CANNOT_UNDERSTAND
        self._results.put(results)
        return SUCCESS

    def results_for(self, data: bytes, source: Dataset) -> list[Dataset]:
        """The app's analysis of one DICOM file, as the datasets to send back."""
        analysis = analyse(data, self.model, self.config.operating_point, display_max_side=DISPLAY_MAX_SIDE)
        p = analysis.prediction
        log.info("analysed a radiograph: %s, probability %.3f (%s)", p.label, p.probability, p.operating_point)
        return result_datasets(source, analysis)

    def _deliver(self) -> None:
        """Send each new result; on failure queue it on disk; resend the queue with growing waits."""
        wait, next_resend = self.config.retry_delay, 0.0
        while not self._stopping.is_set():
            try:
                batch = self._results.get(timeout=0.2)
            except queue.Empty:
                batch = None
            if batch is not None and not self.sender.send(batch):
                for ds in batch:
                    self.outbox.put(ds)
                log.warning("destination unreachable: %d result objects queued in %s", len(batch), self.outbox.folder)
            if time.monotonic() >= next_resend and self.outbox.pending():
                delivered = self._resend_queued()
                wait = self.config.retry_delay if delivered else min(wait * 2, self.config.resend_interval)
                next_resend = time.monotonic() + wait

    def _resend_queued(self) -> bool:
        """Send the queued files oldest first, deleting each once stored; False at the first failure."""
        for path in self.outbox.pending():
            if not self.sender.send([self.outbox.read(path)], tries=1):
                return False
            self.outbox.remove(path)
            log.info("sent a queued result object; %d left", len(self.outbox.pending()))
        return True


def main(env: dict[str, str] | None = None) -> int:
    """Run the node until SIGTERM or SIGINT; 2 on a configuration or model problem."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its INFO lines dump request details
    try:
        config = from_environment(os.environ if env is None else env)
        model = load_model(config.model_dir, config.operating_point, backend=config.backend,
                           tflite_file=config.tflite_file, threads=config.threads)
        node = Node(config, model)
        node.start()
    except (NodeConfigError, ModelLoadError, UnknownOperatingPointError, OSError) as err:
        log.error("the DICOM node cannot start: %s", err)
        return 2
    log.info("DICOM node %s listening on %s:%d; results go to %s@%s:%d (model %s)", config.ae_title, config.bind,
             config.port, config.dest_ae_title, config.dest_host, config.dest_port, model.version)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    node.stop()
    log.info("DICOM node stopped")
    return 0

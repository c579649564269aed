"""The node on one box: receive radiographs, read each study as one, deliver results (or queue them on disk).

Without ``FRACTURE_BROKER_URL`` the node needs no other service. Radiographs (CR, DX for
presentation) go through the app's own analysis as they arrive, and their Secondary Capture is made
at once. The image's reading and Secondary Capture are written to disk
(:class:`~fracture_web.dicom_node.collector.StudyCollector`) *before* the C-STORE is answered, so
nothing acknowledged is lost if the node stops. Once a study has had no new image for
``FRACTURE_DICOM_SETTLE_SECONDS``, a delivery thread sends its Secondary Captures and one
Measurement Report (SR) for the whole study, by C-STORE or STOW-RS; what cannot be delivered waits
in the outbox. With a broker URL, :func:`main` runs a
:class:`~fracture_web.dicom_node.broker.BrokerNode` instead, which only receives (the workers analyse).
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from datetime import datetime, timedelta

from prometheus_client import start_http_server
from pydicom import Dataset

from ..inference import FractureModel, ModelLoadError, UnknownOperatingPointError, load_model
from ..metrics import DriftMonitor
from .broker import BrokerNode
from .collector import SettledStudy, StudyCollector
from .config import NodeConfig, NodeConfigError, from_environment
from .destinations import sender_for
from .outbox import Outbox
from .report import study_report
from .results import secondary_capture
from .scp import DRIFT_WINDOW, OUT_OF_RESOURCES, SUCCESS, StorageServer, read_radiograph

log = logging.getLogger(__name__)

#: Seconds between the delivery thread's looks for settled studies.
POLL_SECONDS = 0.2


class Node(StorageServer):
    """The node on one box: an association server, the study collector and one delivery thread."""

    def __init__(self, config: NodeConfig, model: FractureModel) -> None:
        super().__init__(config)
        self.model = model
        self.drift = DriftMonitor.for_model(model, DRIFT_WINDOW)
        self.outbox = Outbox(config.queue_dir)
        self.collector = StudyCollector(config.studies_dir, config.settle_seconds,
                                        timedelta(days=config.keep_studies_days).total_seconds())
        self.sender = sender_for(config)
        self._stopping = threading.Event()
        self._delivery = threading.Thread(target=self._deliver, name="dicom-delivery", daemon=True)

    def start(self) -> None:
        """Listen for associations and start delivering (also what an earlier run left on disk)."""
        super().start()
        self._delivery.start()

    def stop(self) -> None:
        """Stop listening and let the delivery thread finish its current send; what waits stays on disk."""
        self._stopping.set()
        super().stop()
        self._delivery.join(timeout=60)

    def receive(self, source: Dataset, data: bytes) -> int:
        """Analyse the radiograph and keep its reading and Secondary Capture on disk before answering."""
        analysis = read_radiograph(data, self.model, self.config.operating_point, self.drift)
        try:
            self.collector.add(source, analysis, [secondary_capture(source, analysis, datetime.now())])
        except OSError as err:
            log.error("cannot keep a received radiograph on disk, refused for the sender to retry: %s", err)
            return OUT_OF_RESOURCES
        return SUCCESS

    @property
    def destination(self) -> str:
        return self.sender.destination

    def _deliver(self) -> None:
        """Send each settled study's results; on failure queue them on disk; resend the queue with growing waits."""
        wait, next_resend = self.config.retry_delay, 0.0
        while not self._stopping.wait(POLL_SECONDS):
            for study in self.collector.settled():
                self._send_or_queue(self.study_results(study))
                self.collector.delivered(study)
            if time.monotonic() >= next_resend and self.outbox.pending():
                delivered = self._resend_queued()
                wait = self.config.retry_delay if delivered else min(wait * 2, self.config.resend_interval)
                next_resend = time.monotonic() + wait

    @staticmethod
    def study_results(study: SettledStudy) -> list[Dataset]:
        """The study's waiting results and its report over every image of it read so far."""
        results = study.results()
        if study.readings:  # none only when a crash came between writing an image's results and its reading
            results.append(study_report(study.readings, datetime.now()))
        return results

    def _send_or_queue(self, batch: list[Dataset]) -> None:
        if not self.sender.send(batch):
            for ds in batch:
                self.outbox.put(ds)
            log.warning("destination unreachable: %d result objects queued in %s", len(batch), self.outbox.folder)

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
        node = BrokerNode(config) if config.broker_url else local_node(config)
        node.start()
        if config.metrics_port:
            start_http_server(config.metrics_port)  # the node's own metrics, for Prometheus to scrape
    except (NodeConfigError, ModelLoadError, UnknownOperatingPointError, OSError) as err:
        log.error("the DICOM node cannot start: %s", err)
        return 2
    log.info("DICOM node %s listening on %s:%d; results go to %s, each study %g s after its last image",
             config.ae_title, config.bind, config.port, node.destination, config.settle_seconds)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    node.stop()
    log.info("DICOM node stopped")
    return 0


def local_node(config: NodeConfig) -> Node:
    """The one-box node, with the model loaded once."""
    model = load_model(config.model_dir, config.operating_point, backend=config.backend,
                       tflite_file=config.tflite_file, threads=config.threads)
    log.info("model %s loaded", model.version)
    return Node(config, model)

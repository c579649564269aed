"""The node on one box: receive radiographs, read each study as one, deliver results (or queue them on disk).

Without ``FRACTURE_BROKER_URL`` the node needs no other service. Radiographs (CR, DX for
presentation) go through the app's own analysis as they arrive, and their Secondary Capture is made
at once. The image's reading and Secondary Capture are written to disk
(:class:`~fracture_web.dicom_node.collector.StudyCollector`) *before* the C-STORE is answered, so
nothing acknowledged is lost if the node stops. Once a study has had no new image for
``FRACTURE_DICOM_SETTLE_SECONDS``, a delivery thread sends its Secondary Captures and one
Measurement Report (SR) for the whole study, by C-STORE or STOW-RS; what cannot be delivered waits
in the outbox, which is resent file by file: one the destination refuses is passed over (the others
still go) and set aside after ``FRACTURE_DICOM_DEAD_LETTER_AFTER`` refusals. Nothing one study does
stops the delivery thread: a result file that cannot be read, or an image the report cannot be made
with, is set aside (:mod:`~fracture_web.dicom_node.dead_letter`) and the study's other results go.
With ``FRACTURE_FHIR_URL`` each study's report also goes to an EMR's FHIR server
(:mod:`~fracture_web.dicom_node.fhir_report`), with an outbox of its own (``fhir`` in the queue
folder) resent the same way. With a broker URL, :func:`main` runs a
:class:`~fracture_web.dicom_node.broker.BrokerNode` instead, which only receives (the workers analyse).
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import datetime, timedelta

from pydicom import Dataset, dcmread

from ..inference import FractureModel, load_model
from ..metrics import DriftMonitor, record_send_failure
from ..reads.results import keep_result
from .broker import BrokerNode
from .collector import SettledStudy, StudyCollector
from .config import NodeConfig
from .dead_letter import DeadLetters
from .destinations import sender_for
from .fhir_report import FhirSender, name_of, study_bundle
from .outbox import Outbox, resend
from .readings import Reading, readings_json
from .report import report_what_can_be_reported
from .results import secondary_capture
from .radiograph import read_radiograph
from .scp import OUT_OF_RESOURCES, SUCCESS, StorageServer
from .startup import start_process

log = logging.getLogger(__name__)

#: Seconds between the delivery thread's looks for settled studies.
POLL_SECONDS = 0.2


class Node(StorageServer):
    """The node on one box: an association server, the study collector and one delivery thread."""

    def __init__(self, config: NodeConfig, model: FractureModel) -> None:
        super().__init__(config)
        self.model = model
        self.drift = DriftMonitor.for_model(model, config.drift_window)
        self.outbox = Outbox(config.queue_dir)
        self.dead_letters = DeadLetters(config.dead_letter_dir)
        self.collector = StudyCollector(config.studies_dir, config.settle_seconds,
                                        timedelta(days=config.keep_studies_days).total_seconds())
        self.sender = sender_for(config)
        self.fhir = FhirSender(config) if config.fhir_url else None
        self.fhir_outbox = Outbox(config.fhir_dir, ".json") if self.fhir else None
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
        self.sender.close()

    def receive(self, source: Dataset, data: bytes) -> int:
        """Analyse the radiograph (its dataset: the file is not parsed again) and keep its reading and
        Secondary Capture on disk before answering."""
        analysis = read_radiograph(source, self.model, self.config.operating_point, self.drift)
        p, warnings = analysis.prediction, analysis.warnings
        result = secondary_capture(source, p, warnings, analysis.overlay, datetime.now())
        try:
            self.collector.add(source, p, warnings, [result])
        except OSError as err:
            log.error("cannot keep a received radiograph on disk, refused for the sender to retry: %s", err)
            return OUT_OF_RESOURCES
        keep_result(self.config.database_url, result.SOPInstanceUID, p, analysis.context)
        return SUCCESS

    @property
    def destination(self) -> str:
        return self.sender.destination

    def _deliver(self) -> None:
        """Send each settled study's results; on failure queue them on disk; resend the queue with growing waits."""
        wait, next_resend = self.config.retry_delay, 0.0
        while not self._stopping.wait(POLL_SECONDS):
            try:
                for study in self.collector.settled():
                    self._deliver_study(study)
                if time.monotonic() >= next_resend and self._waiting():
                    delivered = self._resend_queued() | self._resend_fhir()
                    wait = self.config.retry_delay if delivered else min(wait * 2, self.config.resend_interval)
                    next_resend = time.monotonic() + wait
            except Exception as err:  # noqa: BLE001 - the thread's edge: it must outlive any fault (a full disk)
                log.error("the delivery thread met %s; it goes on in %g s", type(err).__name__, wait)
                self._stopping.wait(wait)

    def _waiting(self) -> bool:
        return bool(self.outbox.pending() or (self.fhir_outbox and self.fhir_outbox.pending()))

    def _deliver_study(self, study: SettledStudy) -> None:
        """Send (or queue) one study's results, and its FHIR report; whatever fault they meet, the
        study is done with, its results set aside rather than tried for ever."""
        reported: tuple[Reading, ...] = ()
        try:
            results, reported = settled_results(study, self.dead_letters)
            self._send_or_queue(results)
        except Exception as err:  # noqa: BLE001 - one study's fault must not stop the others
            for path in study.waiting:
                if path.exists():
                    self.dead_letters.move("delivery_failed", path, err)
        if self.fhir and reported:
            self._send_or_queue_fhir(reported)
        self.collector.delivered(study)

    def _send_or_queue_fhir(self, readings: tuple[Reading, ...]) -> None:
        """Post the study's FHIR report once; queue it when that fails, set its readings aside when it
        cannot be made."""
        try:
            bundle = study_bundle(readings, datetime.now())
        except Exception as err:  # noqa: BLE001 - a report that cannot be made is kept, never dropped
            self.dead_letters.put("report_failed", "fhir-readings.json", readings_json(readings).encode(), err)
            return
        failure = self.fhir.attempt(bundle)
        if failure is not None:
            record_send_failure(self.fhir.kind)
            self.fhir_outbox.put_data(name_of(bundle), bundle.encode())
            log.warning("FHIR server %s: %s; the report waits in %s", self.fhir.destination, failure,
                        self.fhir_outbox.folder)

    def _send_or_queue(self, batch: list[Dataset]) -> None:
        if batch and not self.sender.send(batch):
            for ds in batch:
                self.outbox.put(ds)
            log.warning("destination unreachable: %d result objects queued in %s", len(batch), self.outbox.folder)

    def _resend_queued(self) -> bool:
        """Resend the queued result files (:func:`~fracture_web.dicom_node.outbox.resend`); True when any was stored."""
        return resend(self.outbox, lambda path: self.sender.attempt([self.outbox.read(path)]), self.dead_letters,
                      self.config.dead_letter_after, self.sender.kind, self.destination)

    def _resend_fhir(self) -> bool:
        """Resend the queued FHIR reports; True when any was stored."""
        if self.fhir is None:
            return False
        return resend(self.fhir_outbox, lambda path: self.fhir.attempt(path.read_text()), self.dead_letters,
                      self.config.dead_letter_after, self.fhir.kind, self.fhir.destination)


def study_results(study: SettledStudy, dead_letters: DeadLetters) -> list[Dataset]:
    """The study's waiting results and its report over every image of it read so far; a result file
    that cannot be read, or the readings the report cannot be made with, are set aside instead."""
    return settled_results(study, dead_letters)[0]


def settled_results(study: SettledStudy, dead_letters: DeadLetters) -> tuple[list[Dataset], tuple[Reading, ...]]:
    """:func:`study_results`, and the readings its report covers."""
    results = []
    for path in study.waiting:
        try:
            results.append(dcmread(path))
        except Exception as err:  # noqa: BLE001 - any fault reading one file: that file alone is set aside
            dead_letters.move("result_unreadable", path, err)
    made = report_what_can_be_reported(study.readings, datetime.now())
    if made.left_out:
        dead_letters.put("report_failed", f"study-{study.key}-readings.json",
                         readings_json(made.left_out).encode(), made.error)
    if made.report is None:
        return results, ()
    results.append(made.report)
    left_out = {id(reading) for reading in made.left_out}
    return results, tuple(reading for reading in study.readings if id(reading) not in left_out)


def main(env: dict[str, str] | None = None) -> int:
    """Run the node until SIGTERM or SIGINT; 2 on a configuration or model problem."""
    started = start_process("DICOM node", started_node, env)
    if started is None:
        return 2
    config, node = started
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


def started_node(config: NodeConfig) -> StorageServer:
    """The node the settings ask for, listening: one that only receives with a broker, else the one-box node."""
    node = BrokerNode(config) if config.broker_url else local_node(config)
    node.start()
    return node


def local_node(config: NodeConfig) -> Node:
    """The one-box node, with the model loaded once."""
    model = load_model(config.model_dir, config.operating_point, backend=config.backend,
                       tflite_file=config.tflite_file, threads=config.threads)
    log.info("model %s loaded", model.version)
    return Node(config, model)

"""The Storage SCP: receive radiographs, read each study as one, deliver results (or queue them on disk).

A PACS sends any storage object to the node; radiographs (CR, DX for presentation) go through the
app's own analysis as they arrive, and their Secondary Capture is made at once. The image's reading
and Secondary Capture are written to disk (:class:`~fracture_web.dicom_node.collector.StudyCollector`)
*before* the C-STORE is answered, so nothing acknowledged is lost if the node stops. Once a study
has had no new image for ``FRACTURE_DICOM_SETTLE_SECONDS``, a delivery thread sends its Secondary
Captures and one Measurement Report (SR) for the whole study, by C-STORE or STOW-RS; what cannot be
delivered waits in the outbox. Anything that is not a radiograph is accepted and ignored (logged).
Nothing about the patient is logged: only the SOP class, verdicts, probabilities and counts.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from datetime import datetime, timedelta

from pydicom import Dataset
from pydicom.uid import UID, ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation
from pynetdicom import ALL_TRANSFER_SYNTAXES, AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from ..analysis import Analysis, analyse
from ..inference import FractureModel, ModelLoadError, UnknownOperatingPointError, load_model
from ..pixels import InvalidImageError
from ..study import combine
from .collector import SettledStudy, StudyCollector
from .config import NodeConfig, NodeConfigError, from_environment
from .outbox import Outbox
from .report import measurement_report
from .results import secondary_capture
from .sender import CStoreSender, Sender
from .stow import StowSender

log = logging.getLogger(__name__)

#: SOP classes the node analyses; "for processing" DX images are raw detector data, not for reading.
RADIOGRAPH_SOP_CLASSES = frozenset({ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation})
#: What a radiograph must name to be filed with its study.
IDENTITY = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
#: Longest side of the Secondary Capture image.
DISPLAY_MAX_SIDE = 1024
#: Seconds between the delivery thread's looks for settled studies.
POLL_SECONDS = 0.2
SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xC000


def sender_for(config: NodeConfig) -> Sender:
    """STOW-RS when a DICOMweb URL is set, else C-STORE."""
    return StowSender(config) if config.dicomweb else CStoreSender(config)


class Node:
    """The running node: an association server, the study collector and one delivery thread."""

    def __init__(self, config: NodeConfig, model: FractureModel) -> None:
        self.config, self.model = config, model
        self.outbox = Outbox(config.queue_dir)
        self.collector = StudyCollector(config.studies_dir, config.settle_seconds,
                                        timedelta(days=config.keep_studies_days).total_seconds())
        self.sender = sender_for(config)
        self._stopping = threading.Event()
        self._server = None
        self._delivery = threading.Thread(target=self._deliver, name="dicom-delivery", daemon=True)

    def start(self) -> None:
        """Listen for associations and start delivering (also what an earlier run left on disk)."""
        ae = AE(ae_title=self.config.ae_title)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)  # C-ECHO, for the PACS's "test connection"
        self._server = ae.start_server((self.config.bind, self.config.port), block=False,
                                       evt_handlers=[(evt.EVT_C_STORE, self.handle_store)])
        self._delivery.start()

    def stop(self) -> None:
        """Stop listening and let the delivery thread finish its current send; what waits stays on disk."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
        self._delivery.join(timeout=60)

    def handle_store(self, event: evt.Event) -> int:
        """One received instance: read and keep it if it is a radiograph, else accept and ignore it."""
        sop_class = UID(event.request.AffectedSOPClassUID)
        if sop_class not in RADIOGRAPH_SOP_CLASSES:
            log.info("ignored a %s instance: not a radiograph", sop_class.name)
            return SUCCESS
        source = event.dataset
        try:
            if missing := [keyword for keyword in IDENTITY if not source.get(keyword)]:
                raise InvalidImageError(f"it has no {' or '.join(missing)}")
            analysis = self.analyse(event.encoded_dataset())
        except InvalidImageError as err:
            log.warning("received a %s that cannot be analysed: %s", sop_class.name, err)
            return CANNOT_UNDERSTAND
        try:
            self.collector.add(source, analysis, [secondary_capture(source, analysis, datetime.now())])
        except OSError as err:
            log.error("cannot keep a received radiograph on disk, refused for the sender to retry: %s", err)
            return OUT_OF_RESOURCES
        return SUCCESS

    def analyse(self, data: bytes) -> Analysis:
        """The app's analysis of one DICOM file, with display images for the Secondary Capture."""
        analysis = analyse(data, self.model, self.config.operating_point, display_max_side=DISPLAY_MAX_SIDE)
        p = analysis.prediction
        log.info("analysed a radiograph: %s, probability %.3f (%s)", p.label, p.probability, p.operating_point)
        return analysis

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
            images = [(reading.source, reading.analysis) for reading in study.readings]
            report = measurement_report(images, datetime.now())
            verdict = combine([analysis.prediction for _source, analysis in images])
            log.info("reporting a study of %d image(s): %s, probability %.3f", verdict.views, verdict.label,
                     verdict.probability)
            results.append(report)
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
        model = load_model(config.model_dir, config.operating_point, backend=config.backend,
                           tflite_file=config.tflite_file, threads=config.threads)
        node = Node(config, model)
        node.start()
    except (NodeConfigError, ModelLoadError, UnknownOperatingPointError, OSError) as err:
        log.error("the DICOM node cannot start: %s", err)
        return 2
    log.info("DICOM node %s listening on %s:%d; results go to %s, each study %g s after its last image (model %s)",
             config.ae_title, config.bind, config.port, node.sender.destination, config.settle_seconds, model.version)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    node.stop()
    log.info("DICOM node stopped")
    return 0

"""The node's work as Celery tasks in Redis (``FRACTURE_BROKER_URL``), for workers on any number of hosts.

The node turns each received radiograph into an *analyse* task (its DICOM file, base64, in the
message) before it answers the C-STORE. A worker reads the image, keeps its reading with its study
(:class:`~fracture_web.dicom_node.shared_studies.SharedStudies`), queues a *deliver* task with its
Secondary Capture and a *report* check for ``settle_seconds`` later; the check that finds the study
settled queues the study's Measurement Report for delivery. A *deliver* task that cannot reach the
destination retries with doubling waits (up to ``FRACTURE_DICOM_RESEND_INTERVAL``) until it can:
Celery's retries, in Redis, in place of the one-box node's disk outbox. *read_file* reads one file
of an archive for ``scripts/reread.py`` and returns its result row.

Messages are acknowledged only after their task has finished (``task_acks_late``, one message at a
time per worker): a worker killed mid-task leaves its message unacknowledged, and Redis hands it to
another worker once ``FRACTURE_BROKER_VISIBILITY_TIMEOUT`` has passed. A task may therefore run
twice; every result's UID derives from its source, so the PACS replaces, never duplicates. Run Redis
with ``appendonly yes`` so that what it accepted survives its own restart.
"""
from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass
from datetime import datetime

from celery import Celery, Task
from pydicom import Dataset, dcmread
from redis import Redis, RedisError

from ..inference import FractureModel
from ..metrics import DriftMonitor, record_queue_depth, record_send_failure
from ..pixels import InvalidImageError
from .archive import result_row
from .config import NodeConfig
from .private_files import dicom_file
from .readings import Reading
from .report import study_report
from .results import secondary_capture
from .scp import read_radiograph
from .sender import Sender
from .shared_studies import SharedStudies

log = logging.getLogger(__name__)

ANALYSE, REPORT, DELIVER, READ_FILE = ("fracture.analyse", "fracture.report_study", "fracture.deliver",
                                       "fracture.read_file")
#: The Redis list Celery's default queue lives in.
QUEUE = "celery"
#: How long a re-read's result rows wait in Redis for the command that asked for them.
RESULT_SECONDS = 86400


@dataclass(frozen=True)
class WorkerContext:
    """What a worker process loads once: its settings, the model, its sender and the shared studies."""

    config: NodeConfig
    model: FractureModel
    sender: Sender
    studies: SharedStudies
    drift: DriftMonitor | None = None  # the share of fractured verdicts over this worker's recent images


class NodeCelery(Celery):
    """The node's Celery app; in a worker it also carries the :class:`WorkerContext`."""

    context: WorkerContext | None = None


def celery_app(config: NodeConfig) -> NodeCelery:
    """The Celery app for these settings, with the node's tasks registered (for workers and senders alike)."""
    app = NodeCelery("fracture_web.dicom_node", broker=config.broker_url, backend=config.broker_url,
                     set_as_current=False)
    app.conf.update(
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
        task_serializer="json", result_serializer="json", accept_content=["json"],
        task_ignore_result=True, result_expires=RESULT_SECONDS, broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": config.visibility_timeout},
        worker_hijack_root_logger=False)
    app.task(name=ANALYSE, bind=True)(analyse)
    app.task(name=REPORT, bind=True)(report_study)
    app.task(name=DELIVER, bind=True, max_retries=None)(deliver)
    app.task(name=READ_FILE, bind=True, ignore_result=False)(read_file)
    return app


def encode(data: bytes | Dataset) -> str:
    """A DICOM file (or dataset) as text for a JSON task message."""
    return base64.b64encode(data if isinstance(data, bytes) else dicom_file(data)).decode("ascii")


def decode(text: str) -> bytes:
    return base64.b64decode(text)


def analyse(task: Task, data: str, received: float) -> None:
    """Read one received radiograph; queue its Secondary Capture and a check of its study."""
    context, raw = task.app.context, decode(data)
    try:
        analysis = read_radiograph(raw, context.model, context.config.operating_point, context.drift)
    except InvalidImageError as err:
        log.warning("a received radiograph cannot be analysed: %s", err)
        return
    source = dcmread(io.BytesIO(raw), stop_before_pixels=True)
    results = secondary_capture(source, analysis, datetime.now())
    key = context.studies.add(Reading.of(source, analysis, received))
    task.app.send_task(DELIVER, args=[[encode(results)]])
    task.app.send_task(REPORT, args=[key], countdown=context.config.settle_seconds)
    watch_queue(context.studies.client)


def report_study(task: Task, key: str) -> None:
    """Queue the study's report when the study has settled with images no report covers yet."""
    context = task.app.context
    readings = context.studies.due(key, context.config.settle_seconds)
    if readings is None:  # it grew since (a later check will report it), or it was reported
        return
    report = study_report(readings, datetime.now())
    context.studies.reporting(key, len(readings))
    task.app.send_task(DELIVER, args=[[encode(report)], key, len(readings)])


def deliver(task: Task, datasets: list[str], study: str | None = None, readings: int = 0) -> None:
    """Send result objects to the destination; retry with doubling waits while it cannot be reached.
    A study's report is dropped when a report over more of its images was made meanwhile."""
    context = task.app.context
    if study is not None and context.studies.superseded(study, readings):
        log.info("dropped a study report that a newer one replaces")
        return
    problem = context.sender.send_once([dcmread(io.BytesIO(decode(text))) for text in datasets])
    if problem is None:
        return
    record_send_failure(context.sender.kind)
    delay = min(context.config.retry_delay * 2 ** task.request.retries, context.config.resend_interval)
    log.warning("sending to %s failed (try %d): %s; retrying in %g s", context.sender.destination,
                task.request.retries + 1, problem, delay)
    raise task.retry(countdown=delay)


def read_file(task: Task, name: str, data: str, operating_point: str | None) -> dict:
    """One archive file's result row (see :func:`~fracture_web.dicom_node.archive.result_row`)."""
    return result_row(name, decode(data), task.app.context.model, operating_point)


def broker_client(config: NodeConfig) -> Redis:
    """A Redis client on the broker's database, for the shared studies."""
    return Redis.from_url(config.broker_url)


def watch_queue(client: Redis) -> None:
    """Record how many tasks wait in the queue (the metric only: a Redis hiccup here changes nothing)."""
    try:
        record_queue_depth(client.llen(QUEUE))
    except RedisError as err:
        log.warning("cannot read the queue depth: %s", err)

"""The node's work as Celery tasks in Redis (``FRACTURE_BROKER_URL``), for workers on any number of hosts.

The node turns each received radiograph into an *analyse* task (its DICOM file, base64, in the
message) before it answers the C-STORE. A worker reads the image, keeps its reading with its study
(:class:`~fracture_web.dicom_node.shared_studies.SharedStudies`), sends its Secondary Capture at once
(on the association the worker keeps open) and queues a *report* check for ``settle_seconds`` later;
the check that finds the study settled sends the study's Measurement Report in the same way (and,
with ``FRACTURE_FHIR_URL``, queues its FHIR report as a *deliver_fhir* task, retried and set aside
like a *deliver* task). A result that cannot go at once, or while the destination was unreachable
moments ago, becomes a *deliver* task, which retries with doubling waits (up to
``FRACTURE_DICOM_RESEND_INTERVAL``) until it can: Celery's retries, in Redis, in place of the one-box
node's disk outbox. *read_file*
reads one file of an archive for ``scripts/reread.py`` and returns its result row.

Messages are acknowledged only after their task has finished (``task_acks_late``, one message at a
time per worker): a worker killed mid-task leaves its message unacknowledged, and the other workers
put it back in the queue once ``FRACTURE_BROKER_VISIBILITY_TIMEOUT`` has passed (about two minutes
in all with the defaults, see :mod:`~fracture_web.dicom_node.worker`). A task may therefore run
twice, and each step is written so that this does no harm: every result's UID derives from its
source; a delivered result is marked in Redis (its SOP Instance UID, and for a report the number of
readings it covers) and a task that runs again does not send it again; a study is marked as
reported only after its report is queued, so a worker dying in between reports it again instead of
never. Run Redis with ``appendonly yes`` so that what it accepted survives its own restart.
An image whose analysis kills its worker (a crash, an out-of-memory kill) would come back for ever:
each *analyse* task counts its starts in Redis (``fracture:deliveries:<task id>:<retry>``), and one
started ``FRACTURE_BROKER_MAX_DELIVERIES`` times without finishing is set aside instead of analysed.

What cannot be done for good goes to the dead letter (:mod:`~fracture_web.dicom_node.dead_letter`):
a received image that cannot be analysed, the readings a study's report cannot be made with (its
other views are still reported), a result the destination refused (or aborted on, once reached)
``FRACTURE_DICOM_DEAD_LETTER_AFTER`` times.
"""
from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass
from datetime import datetime

from celery import Celery, Task
from kombu.exceptions import OperationalError
from pydicom import Dataset, dcmread
from redis import Redis, RedisError

from ..dicom import read_dataset
from ..inference import FractureModel
from ..metrics import DriftMonitor, record_queue_depth, record_send_failure
from ..reads.results import keep_result
from .archive import result_row
from .config import NodeConfig
from .dead_letter import to_redis
from .fhir_report import FhirSender, name_of, study_bundle
from .private_files import dicom_file
from .radiograph import read_radiograph
from .readings import Reading, readings_json
from .report import report_what_can_be_reported
from .results import secondary_capture
from .sender import Failure, Sender
from .shared_studies import SharedStudies

log = logging.getLogger(__name__)

ANALYSE, REPORT, DELIVER, READ_FILE = ("fracture.analyse", "fracture.report_study", "fracture.deliver",
                                       "fracture.read_file")
DELIVER_FHIR = "fracture.deliver_fhir"
#: The Redis list Celery's default queue lives in.
QUEUE = "celery"
#: Where an *analyse* task counts its starts (``<task id>:<retry>``; a redelivered message keeps both).
DELIVERIES = "fracture:deliveries:"
#: How long a re-read's result rows wait in Redis for the command that asked for them.
RESULT_SECONDS = 86400
#: Seconds to open a connection to Redis: the node answers a C-STORE within a few of them when Redis is down.
CONNECT_SECONDS = 2.0
#: Seconds to wait for Redis's answer to a command on an open connection: without it a frozen Redis (or a
#: failover, a firewall that drops packets) holds a C-STORE, or a worker's task, for ever. Longer than
#: the workers' BRPOP poll (1 s); TCP keepalive notices a peer that vanished while the connection idles.
SOCKET_SECONDS = 3.0
#: The Redis connection settings of the transport, the result backend and the node's own client alike.
REDIS_SOCKET = {"socket_connect_timeout": CONNECT_SECONDS, "socket_timeout": SOCKET_SECONDS, "socket_keepalive": True}


@dataclass(frozen=True)
class WorkerContext:
    """What a worker process loads once: its settings, the model, its sender and the shared studies."""

    config: NodeConfig
    model: FractureModel
    sender: Sender
    studies: SharedStudies
    drift: DriftMonitor | None = None  # the share of fractured verdicts over this worker's recent images
    fhir: FhirSender | None = None  # with FRACTURE_FHIR_URL: where the studies' FHIR reports go


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
        broker_transport_options={"visibility_timeout": config.visibility_timeout, **REDIS_SOCKET},
        redis_socket_connect_timeout=CONNECT_SECONDS, redis_socket_timeout=SOCKET_SECONDS,
        redis_socket_keepalive=True, worker_hijack_root_logger=False)
    # A Redis hiccup mid-task would fail the task, and a failed task's message is acknowledged: retry
    # instead (and while Redis is down even the acknowledgement fails, so the message comes back).
    transient = {"autoretry_for": (RedisError, OperationalError), "retry_backoff": True,
                 "retry_backoff_max": config.resend_interval, "max_retries": None}
    app.task(name=ANALYSE, bind=True, **transient)(analyse)
    app.task(name=REPORT, bind=True, **transient)(report_study)
    app.task(name=DELIVER, bind=True, **transient)(deliver)
    app.task(name=DELIVER_FHIR, bind=True, **transient)(deliver_fhir)
    app.task(name=READ_FILE, bind=True, ignore_result=False)(read_file)
    return app


def encode(data: bytes | Dataset) -> str:
    """A DICOM file (or dataset) as text for a JSON task message."""
    return base64.b64encode(data if isinstance(data, bytes) else dicom_file(data)).decode("ascii")


def decode(text: str) -> bytes:
    return base64.b64decode(text)


def analyse(task: Task, data: str, received: float) -> None:
    """Read one received radiograph; queue its Secondary Capture and a check of its study. One that
    cannot be read (whatever the fault) was acknowledged already: it goes to the dead letter."""
    context = task.app.context
    counter = f"{DELIVERIES}{task.request.id}:{task.request.retries}"
    if _too_often_started(context, counter, data):
        return
    try:
        source = read_dataset(decode(data))  # the one parse of the file on this side
        analysis = read_radiograph(source, context.model, context.config.operating_point, context.drift)
        p, warnings = analysis.prediction, analysis.warnings
        results = secondary_capture(source, p, warnings, analysis.overlay, datetime.now())
    except Exception as err:  # noqa: BLE001 - InvalidImageError or any other fault: kept, never dropped
        to_redis(context.studies.client, "analysis_failed", "a received radiograph", data, err)
        context.studies.client.delete(counter)
        return
    keep_result(context.config.database_url, results.SOPInstanceUID, p, analysis.context)
    key = context.studies.add(Reading.of(source, p, warnings, received))
    deliver_or_queue(task, [results])
    task.app.send_task(REPORT, args=[key], countdown=context.config.settle_seconds)
    context.studies.client.delete(counter)
    watch_queue(context.studies.client)


def _too_often_started(context: WorkerContext, counter: str, data: str) -> bool:
    """Count this start of an *analyse* task; True (and the image set aside) when it was started
    ``max_deliveries`` times before without finishing: each time, it took its worker down."""
    client = context.studies.client
    with client.pipeline() as pipe:
        starts, _ = pipe.incr(counter).expire(counter, RESULT_SECONDS).execute()
    if starts <= context.config.max_deliveries:
        return False
    to_redis(client, "analysis_failed", "a received radiograph", data,
             f"WorkerLost: its analysis was started {starts - 1} times and never finished (the worker died)")
    client.delete(counter)
    return True


def report_study(task: Task, key: str) -> None:
    """Queue the study's report when the study has settled with images no report covers yet; the
    readings the report cannot be made with go to the dead letter (the others are still reported)."""
    context = task.app.context
    readings = context.studies.due(key, context.config.settle_seconds)
    if readings is None:  # it grew since (a later check will report it), or it was reported
        return
    if not context.studies.claim(key, len(readings), task.request.id or "", context.config.visibility_timeout):
        return  # another check is making this very report
    _report(task, key, readings)


def _report(task: Task, key: str, readings: tuple[Reading, ...]) -> None:
    """Make the study's report over ``readings``, send it (or queue it) and mark the study reported."""
    context = task.app.context
    made = report_what_can_be_reported(readings, datetime.now())
    if made.left_out:
        to_redis(context.studies.client, "report_failed", "a study's readings", readings_json(made.left_out),
                 made.error)
    if made.report is not None:
        deliver_or_queue(task, [made.report], key, len(readings))
        if context.fhir is not None:
            _queue_fhir(task, key, readings, made.left_out)
    context.studies.reporting(key, len(readings))  # after the report went or is queued: a death in between reports again


def _queue_fhir(task: Task, key: str, readings: tuple[Reading, ...], left_out: tuple[Reading, ...]) -> None:
    """Queue the FHIR report over the readings the SR covers; set them aside when it cannot be made."""
    context, left = task.app.context, {id(reading) for reading in left_out}
    reported = tuple(reading for reading in readings if id(reading) not in left)
    try:
        bundle = study_bundle(reported, datetime.now())
    except Exception as err:  # noqa: BLE001 - a report that cannot be made is kept, never dropped
        to_redis(context.studies.client, "report_failed", "a study's readings (FHIR)", readings_json(reported), err)
        return
    task.app.send_task(DELIVER_FHIR, args=[bundle, key, len(readings)])


def deliver_fhir(task: Task, bundle: str, study: str, readings: int, refusals: int = 0) -> None:
    """Post a study's FHIR report, once (as :func:`deliver` sends its SR); dropped when a report over
    more of its images was made meanwhile."""
    context = task.app.context
    sent = f"fhir-{name_of(bundle)}"
    if context.studies.superseded(study, readings) or context.studies.was_sent(sent):
        return
    failure = context.fhir.attempt(bundle)
    if failure is None:
        context.studies.sent(sent)
        return
    _retry_or_set_aside(task, [bundle], failure, refusals + failure.counts, context.fhir)


def deliver_or_queue(task: Task, datasets: list[Dataset], study: str | None = None, readings: int = 0) -> None:
    """Send results now, each once; what cannot go (or would wait on a destination that was
    unreachable moments ago) is queued as a *deliver* task, which retries and sets aside as usual."""
    context = task.app.context
    unsent = [ds for ds in datasets if not context.studies.was_sent(ds.SOPInstanceUID, readings)]
    if context.sender.recently_unreachable():
        failure: Failure | None = Failure("the destination was unreachable moments ago")
    else:
        failure = _send(context, unsent, readings)
    if failure is not None:
        task.app.send_task(DELIVER, args=[[encode(ds) for ds in unsent], study, readings],
                           kwargs={"refusals": int(failure.counts)})


def deliver(task: Task, datasets: list[str], study: str | None = None, readings: int = 0, refusals: int = 0) -> None:
    """Send result objects to the destination, each once (a task run again skips what was delivered);
    retry with doubling waits while it cannot be reached, and set them aside once it has refused them
    ``dead_letter_after`` times. A study's report is dropped when a report over more of its images was
    made meanwhile."""
    context = task.app.context
    if study is not None and context.studies.superseded(study, readings):
        log.info("dropped a study report that a newer one replaces")
        return
    pending = {text: dcmread(io.BytesIO(decode(text))) for text in datasets}
    unsent = {text: ds for text, ds in pending.items() if not context.studies.was_sent(ds.SOPInstanceUID, readings)}
    failure = _send(context, list(unsent.values()), readings)
    if failure is not None:
        _retry_or_set_aside(task, list(unsent), failure, refusals + failure.counts, context.sender)


def _send(context: WorkerContext, datasets: list[Dataset], readings: int) -> Failure | None:
    """One attempt at the datasets not delivered before, each marked once stored; what went wrong, if anything."""
    if not datasets:
        log.info("skipped a result delivered already (its task ran again)")
        return None
    failure = context.sender.attempt(datasets)
    if failure is None:
        for ds in datasets:
            context.studies.sent(ds.SOPInstanceUID, readings)
    return failure


def _retry_or_set_aside(task: Task, payloads: list[str], failure: Failure, refusals: int,
                        sender: Sender | FhirSender) -> None:
    """Retry the task with a doubling wait, or set its payloads (base64 DICOM files, or a FHIR
    bundle) aside once the destination has refused them ``dead_letter_after`` times."""
    context = task.app.context
    record_send_failure(sender.kind)
    if refusals >= context.config.dead_letter_after:
        for text in payloads:
            to_redis(context.studies.client, failure.dead_letter_reason, "a result object", text, failure.reason)
        return
    delay = min(context.config.retry_delay * 2 ** task.request.retries, context.config.resend_interval)
    log.warning("sending to %s failed (try %d): %s; retrying in %g s", sender.destination,
                task.request.retries + 1, failure, delay)
    raise task.retry(countdown=delay, kwargs={"refusals": refusals})


def read_file(task: Task, name: str, data: str, operating_point: str | None) -> dict:
    """One archive file's result row (see :func:`~fracture_web.dicom_node.archive.result_row`)."""
    return result_row(name, decode(data), task.app.context.model, operating_point)


def broker_client(config: NodeConfig) -> Redis:
    """A Redis client on the broker's database, for the shared studies."""
    return Redis.from_url(config.broker_url, **REDIS_SOCKET)


def watch_queue(client: Redis) -> None:
    """Record how many tasks wait in the queue (the metric only: a Redis hiccup here changes nothing)."""
    try:
        record_queue_depth(client.llen(QUEUE))
    except RedisError as err:
        log.warning("cannot read the queue depth: %s", err)

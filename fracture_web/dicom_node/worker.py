"""``python -m fracture_web.dicom_node.worker``: a worker that analyses radiographs and sends results.

Start one or more on any hosts with the node's settings and ``FRACTURE_BROKER_URL``. Each worker
loads the model once and runs one task at a time (Celery's solo pool: no forking after TensorFlow
has started), taking the next message only when the last is finished and acknowledged; for more
throughput on a host with many cores, start several workers with ``FRACTURE_THREADS`` splitting the
cores between them.
"""
from __future__ import annotations

import logging
import os
import sys
from datetime import timedelta

from celery import bootsteps
from celery.worker.consumer import Consumer

from ..inference import load_model
from ..metrics import DriftMonitor
from .config import NodeConfig, NodeConfigError
from .destinations import sender_for
from .fhir_report import FhirSender
from .shared_studies import SharedStudies
from .startup import start_process
from .tasks import NodeCelery, WorkerContext, broker_client, celery_app

log = logging.getLogger(__name__)
#: Longest wait between two looks for messages a dead worker left unacknowledged.
RESTORE_EVERY_SECONDS = 30.0


def restore_every(visibility_timeout: float) -> float:
    """Seconds between two looks for abandoned messages: a quarter of the visibility timeout, at most
    ``RESTORE_EVERY_SECONDS``."""
    return min(RESTORE_EVERY_SECONDS, max(1.0, visibility_timeout / 4))


def recovery_seconds(config: NodeConfig) -> float:
    """The longest a task a dead worker held waits before another worker takes it up."""
    return config.visibility_timeout + restore_every(config.visibility_timeout)


class RestoreAbandoned(bootsteps.StartStopStep):
    """Every few seconds (:func:`restore_every`), put back in the queue the messages that a worker
    took and never acknowledged within the visibility timeout: a dead worker's. kombu's Redis
    transport does this itself only about every 100 seconds."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def start(self, consumer: Consumer) -> None:
        visibility = consumer.app.conf.broker_transport_options["visibility_timeout"]
        consumer.timer.call_repeatedly(restore_every(visibility), self.restore, (consumer,))

    @staticmethod
    def restore(consumer: Consumer) -> None:
        consumer.connection.default_channel.qos.restore_visible(num=100, interval=1)


def worker_app(config: NodeConfig) -> NodeCelery:
    """The Celery app with what this process needs loaded: the model, the sender, the shared studies."""
    if not config.broker_url:
        raise NodeConfigError("Set FRACTURE_BROKER_URL (redis://HOST:PORT/N): workers take their work from it.")
    model = load_model(config.model_dir, config.operating_point, backend=config.backend,
                       tflite_file=config.tflite_file, threads=config.threads)
    app = celery_app(config)
    app.steps["consumer"].add(RestoreAbandoned)
    keep = timedelta(days=config.keep_studies_days).total_seconds()
    app.context = WorkerContext(config, model, sender_for(config), SharedStudies(broker_client(config), keep),
                                DriftMonitor.for_model(model, config.drift_window),
                                FhirSender(config) if config.fhir_url else None)
    log.info("worker ready: model %s; results go to %s", model.version, app.context.sender.destination)
    return app


def main(env: dict[str, str] | None = None) -> int:
    """Run a worker until SIGTERM or SIGINT (Celery's warm shutdown); 2 on a configuration or model problem."""
    started = start_process("worker", worker_app, env)
    if started is None:
        return 2
    _config, app = started
    try:
        app.worker_main(["worker", "--pool=solo", "--concurrency=1", "--loglevel=INFO",
                         f"--hostname=fracture-{os.getpid()}@%h", "--without-gossip", "--without-mingle"])
    finally:
        app.context.sender.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

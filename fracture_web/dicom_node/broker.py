"""The node with a broker (``FRACTURE_BROKER_URL``): it only receives. Each radiograph becomes an
*analyse* task in Redis (:mod:`fracture_web.dicom_node.tasks`) before the C-STORE is answered with
success; the workers do the rest. When Redis cannot take the task, the C-STORE is refused within a
few seconds (out of resources, 0xA700, a status senders retry) so that the sender keeps the image
and tries again.

A Redis that takes connections but does not answer (frozen, failing over, behind a firewall that
drops packets) is found out by a PING first, which gives up after ``SOCKET_SECONDS``: the image is
then refused without having been handed to Redis. Should Redis freeze in the moment between, the
task may be queued although the C-STORE was refused (or queued twice by the publish retries); the
image sent again is harmless: its reading is kept by its SOP Instance UID (the copy replaces it) and
every result's UID derives from the source, so each result is delivered once.

The task is sent without a result (``ignore_result``): asking for one would first subscribe to the
result backend, whose own reconnection loop takes about twenty seconds to give up and raises an
error that is neither kombu's nor Redis's."""
from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

from kombu.exceptions import OperationalError
from pydicom import Dataset
from redis import RedisError

from .config import NodeConfig
from .scp import OUT_OF_RESOURCES, SUCCESS, StorageServer, refusal
from .tasks import ANALYSE, broker_client, celery_app, encode, watch_queue

log = logging.getLogger(__name__)
#: How hard to try to hand a task to Redis before refusing the C-STORE (Celery's publish retry policy).
PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}


class BrokerNode(StorageServer):
    """An association server that queues each radiograph for the workers."""

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.app = celery_app(config)
        self.redis = broker_client(config)

    def receive(self, source: Dataset, data: bytes) -> int | Dataset:
        """Queue the radiograph's DICOM file for analysis; answer success once Redis holds it."""
        try:
            self.redis.ping()  # a frozen Redis is refused here, before the image is handed to it
            self.app.send_task(ANALYSE, args=[encode(data), time.time()], retry=True, retry_policy=PUBLISH_RETRY,
                               ignore_result=True)
        except (OperationalError, RedisError, OSError) as err:
            log.error("cannot queue a received radiograph, refused for the sender to retry: %s", err)
            return refusal(OUT_OF_RESOURCES, "the node's queue is unavailable; try again later")
        watch_queue(self.redis)
        return SUCCESS

    @property
    def destination(self) -> str:
        parts = urlsplit(self.config.broker_url)  # never the password
        return f"the workers, through Redis at {parts.hostname}:{parts.port or 6379}{parts.path}"

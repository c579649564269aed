"""The node's settings, from ``FRACTURE_DICOM_*`` environment variables (and the app's
``FRACTURE_MODEL_DIR``, ``FRACTURE_OPERATING_POINT``, ``FRACTURE_BACKEND``, ``FRACTURE_TFLITE_FILE``
and ``FRACTURE_THREADS``). Read once, by :func:`from_environment`."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..config import DEFAULT_BACKEND, DEFAULT_TFLITE_FILE, defaults

PREFIX = "FRACTURE_DICOM_"


class NodeConfigError(ValueError):
    """A missing or malformed setting; the message names the variable."""


@dataclass(frozen=True)
class NodeConfig:
    """Where the node listens, where results go, where they wait while the destination is down."""

    dest_host: str
    dest_ae_title: str
    dest_port: int = 104
    ae_title: str = "FRACTURE_AI"
    bind: str = "0.0.0.0"
    port: int = 11112
    queue_dir: Path = Path("~/.fracture-web/dicom-queue")  # "~" is expanded when the outbox opens it
    retries: int = 3  # tries per send before the result is queued on disk
    retry_delay: float = 1.0  # seconds before the 2nd try, doubled for each further one
    resend_interval: float = 30.0  # longest wait between attempts to resend the disk queue
    model_dir: Path = Path(defaults()["MODEL_DIR"])
    operating_point: str | None = None
    backend: str = DEFAULT_BACKEND  # "litert" serves the .tflite file, as the web app does
    tflite_file: str = DEFAULT_TFLITE_FILE
    threads: int | None = None  # cores one image may use; None = all


def from_environment(env: Mapping[str, str]) -> NodeConfig:
    """Settings from the environment; refuses a missing destination or a malformed number."""
    def get(name: str, default=None):
        return env.get(PREFIX + name) or default

    missing = [PREFIX + name for name in ("DEST_HOST", "DEST_AE_TITLE") if not get(name)]
    if missing:
        raise NodeConfigError(f"Set {' and '.join(missing)}: the PACS that receives the results.")
    try:
        return NodeConfig(
            dest_host=get("DEST_HOST"), dest_ae_title=get("DEST_AE_TITLE"), dest_port=int(get("DEST_PORT", 104)),
            ae_title=get("AE_TITLE", NodeConfig.ae_title), bind=get("BIND", NodeConfig.bind),
            port=int(get("PORT", NodeConfig.port)), queue_dir=Path(get("QUEUE_DIR", NodeConfig.queue_dir)),
            retries=int(get("RETRIES", NodeConfig.retries)),
            retry_delay=float(get("RETRY_DELAY", NodeConfig.retry_delay)),
            resend_interval=float(get("RESEND_INTERVAL", NodeConfig.resend_interval)),
            model_dir=Path(env.get("FRACTURE_MODEL_DIR") or NodeConfig.model_dir),
            operating_point=env.get("FRACTURE_OPERATING_POINT") or None,
            backend=env.get("FRACTURE_BACKEND") or NodeConfig.backend,
            tflite_file=env.get("FRACTURE_TFLITE_FILE") or NodeConfig.tflite_file,
            threads=int(env["FRACTURE_THREADS"]) if env.get("FRACTURE_THREADS") else None)
    except ValueError as err:
        raise NodeConfigError(f"A {PREFIX}* number is malformed: {err}") from err

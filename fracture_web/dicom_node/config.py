"""The node's settings, from ``FRACTURE_DICOM_*`` and ``FRACTURE_DICOMWEB_*`` environment variables
(and the app's ``FRACTURE_MODEL_DIR``, ``FRACTURE_OPERATING_POINT``, ``FRACTURE_BACKEND``,
``FRACTURE_TFLITE_FILE`` and ``FRACTURE_THREADS``). Read once, by :func:`from_environment`.

Results go by C-STORE to ``FRACTURE_DICOM_DEST_*``, or by DICOMweb STOW-RS when
``FRACTURE_DICOMWEB_URL`` is set (then the C-STORE destination is not needed). With
``FRACTURE_BROKER_URL`` (``redis://HOST:PORT/N``) the node only receives and Celery workers on any
number of hosts analyse and send (:mod:`fracture_web.dicom_node.tasks`); every host reads the same settings.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import ip_network
from pathlib import Path

from ..config import DEFAULT_BACKEND, DEFAULT_TFLITE_FILE, defaults

PREFIX = "FRACTURE_DICOM_"
WEB_PREFIX = "FRACTURE_DICOMWEB_"
BROKER_PREFIX = "FRACTURE_BROKER_"


class NodeConfigError(ValueError):
    """A missing or malformed setting; the message names the variable."""


@dataclass(frozen=True)
class DicomWebDestination:
    """A DICOMweb server's base URL (STOW-RS posts to ``<url>/studies``) and how to sign in, if at all."""

    url: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)  # sent as "Authorization: Bearer <token>"


@dataclass(frozen=True)
class NodeConfig:
    """Where the node listens, where results go, where they wait while the destination is down."""

    dest_host: str = ""  # the C-STORE destination; unused when ``dicomweb`` is set
    dest_ae_title: str = ""
    dest_port: int = 104
    dicomweb: DicomWebDestination | None = None  # results by STOW-RS instead of C-STORE
    ae_title: str = "FRACTURE_AI"
    bind: str = "0.0.0.0"
    port: int = 11112
    allowed_ae_titles: tuple[str, ...] = ()  # calling AE titles that may store here; () = the destination's
    allowed_hosts: tuple[str, ...] = ()  # addresses or networks that may connect; () = any (AE titles still checked)
    max_associations: int = 32  # associations served at once (pynetdicom's default is 10)
    idle_seconds: float = 60.0  # an association that stores nothing for this long is closed (C-ECHO aside)
    queue_dir: Path = Path("~/.fracture-web/dicom-queue")  # "~" is expanded when the outbox opens it
    settle_seconds: float = 5.0  # a study is reported once no new image of it came for this long
    keep_studies_days: float = 7.0  # how long a reported study's readings wait for late images
    retries: int = 3  # tries per send before the result is queued on disk
    retry_delay: float = 1.0  # seconds before the 2nd try, doubled for each further one
    resend_interval: float = 30.0  # longest wait between attempts to resend the disk queue
    dead_letter_after: int = 10  # refusals by the destination before a result is set aside (dead letter)
    model_dir: Path = Path(defaults()["MODEL_DIR"])
    operating_point: str | None = None
    backend: str = DEFAULT_BACKEND  # "litert" serves the .tflite file, as the web app does
    tflite_file: str = DEFAULT_TFLITE_FILE
    threads: int | None = None  # cores one image may use; None = all
    broker_url: str | None = field(default=None, repr=False)  # Redis for the workers; None = one box
    visibility_timeout: float = 90.0  # seconds before a task a dead worker held runs again elsewhere
    metrics_port: int | None = None  # serve this process's Prometheus metrics on this port; None = not

    @property
    def studies_dir(self) -> Path:
        """Where received images wait for their study to settle: inside the queue folder."""
        return self.queue_dir / "studies"

    @property
    def dead_letter_dir(self) -> Path:
        """Where results that cannot be built or that the destination keeps refusing are set aside."""
        return self.queue_dir / "dead-letter"

    @property
    def callers(self) -> tuple[str, ...]:
        """The calling AE titles the node accepts associations from: the allowed ones, else the destination PACS."""
        return self.allowed_ae_titles or ((self.dest_ae_title,) if self.dest_ae_title else ())


def from_environment(env: Mapping[str, str]) -> NodeConfig:
    """Settings from the environment; refuses a missing destination or a malformed number."""
    def get(name: str, default=None):
        return env.get(PREFIX + name) or default

    dicomweb = dicomweb_destination(env)
    missing = [PREFIX + name for name in ("DEST_HOST", "DEST_AE_TITLE") if not get(name)]
    if missing and dicomweb is None:
        raise NodeConfigError(f"Set {' and '.join(missing)} (the PACS that receives the results), "
                              f"or {WEB_PREFIX}URL to send them by DICOMweb.")
    try:
        config = NodeConfig(
            dest_host=get("DEST_HOST", ""), dest_ae_title=get("DEST_AE_TITLE", ""),
            dest_port=int(get("DEST_PORT", 104)), dicomweb=dicomweb,
            ae_title=get("AE_TITLE", NodeConfig.ae_title), bind=get("BIND", NodeConfig.bind),
            port=int(get("PORT", NodeConfig.port)), queue_dir=Path(get("QUEUE_DIR", NodeConfig.queue_dir)),
            allowed_ae_titles=listed(get("ALLOWED_AE_TITLES", "")), allowed_hosts=listed(get("ALLOWED_HOSTS", "")),
            max_associations=int(get("MAX_ASSOCIATIONS", NodeConfig.max_associations)),
            idle_seconds=float(get("IDLE_SECONDS", NodeConfig.idle_seconds)),
            dead_letter_after=int(get("DEAD_LETTER_AFTER", NodeConfig.dead_letter_after)),
            settle_seconds=float(get("SETTLE_SECONDS", NodeConfig.settle_seconds)),
            keep_studies_days=float(get("KEEP_STUDIES_DAYS", NodeConfig.keep_studies_days)),
            retries=int(get("RETRIES", NodeConfig.retries)),
            retry_delay=float(get("RETRY_DELAY", NodeConfig.retry_delay)),
            resend_interval=float(get("RESEND_INTERVAL", NodeConfig.resend_interval)),
            model_dir=Path(env.get("FRACTURE_MODEL_DIR") or NodeConfig.model_dir),
            operating_point=env.get("FRACTURE_OPERATING_POINT") or None,
            backend=env.get("FRACTURE_BACKEND") or NodeConfig.backend,
            tflite_file=env.get("FRACTURE_TFLITE_FILE") or NodeConfig.tflite_file,
            threads=int(env["FRACTURE_THREADS"]) if env.get("FRACTURE_THREADS") else None,
            broker_url=broker_url(env),
            visibility_timeout=float(env.get(BROKER_PREFIX + "VISIBILITY_TIMEOUT") or NodeConfig.visibility_timeout),
            metrics_port=int(get("METRICS_PORT")) if get("METRICS_PORT") else None)
        for host in config.allowed_hosts:
            ip_network(host, strict=False)
    except ValueError as err:
        raise NodeConfigError(f"A {PREFIX}* number or address is malformed: {err}") from err
    if config.max_associations < 1 or config.idle_seconds <= 0 or config.dead_letter_after < 1:
        raise NodeConfigError(f"{PREFIX}MAX_ASSOCIATIONS, IDLE_SECONDS and DEAD_LETTER_AFTER must be positive.")
    if bad := [title for title in config.allowed_ae_titles if len(title) > 16]:
        raise NodeConfigError(f"{PREFIX}ALLOWED_AE_TITLES: an AE title has at most 16 characters ({bad[0]!r}).")
    if config.broker_url and config.visibility_timeout <= max(config.settle_seconds, config.resend_interval):
        raise NodeConfigError(f"{BROKER_PREFIX}VISIBILITY_TIMEOUT must be longer than {PREFIX}SETTLE_SECONDS and "
                              f"{PREFIX}RESEND_INTERVAL: tasks wait that long in a worker before they run.")
    return config


def listed(text: str) -> tuple[str, ...]:
    """A comma-separated setting's items."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def broker_url(env: Mapping[str, str]) -> str | None:
    """``FRACTURE_BROKER_URL`` when set: a Redis URL (redis:// or rediss:// for TLS)."""
    url = env.get(BROKER_PREFIX + "URL") or None
    if url is not None and not url.startswith(("redis://", "rediss://")):
        raise NodeConfigError(f"{BROKER_PREFIX}URL must start with redis:// or rediss://.")
    return url


def dicomweb_destination(env: Mapping[str, str]) -> DicomWebDestination | None:
    """The STOW-RS destination when ``FRACTURE_DICOMWEB_URL`` is set; a user needs a password, and a
    token is the other way to sign in, not a third."""
    url, user, password, token = (env.get(WEB_PREFIX + name) or None for name in ("URL", "USER", "PASSWORD", "TOKEN"))
    if url is None:
        if user or password or token:
            raise NodeConfigError(f"{WEB_PREFIX}USER, PASSWORD or TOKEN is set without {WEB_PREFIX}URL.")
        return None
    if not url.startswith(("http://", "https://")):
        raise NodeConfigError(f"{WEB_PREFIX}URL must start with http:// or https://.")
    if bool(user) != bool(password):
        raise NodeConfigError(f"Set both {WEB_PREFIX}USER and {WEB_PREFIX}PASSWORD, or neither.")
    if user and token:
        raise NodeConfigError(f"Set {WEB_PREFIX}USER and PASSWORD or {WEB_PREFIX}TOKEN, not both.")
    return DicomWebDestination(url.rstrip("/"), user, password, token)

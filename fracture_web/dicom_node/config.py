"""The node's settings as one value, :class:`NodeConfig`, made from the package's one settings object
(:class:`fracture_web.config.Settings`: every ``FRACTURE_*`` variable read once, by its kind) by
:func:`node_config`, which adds the checks that take several settings together.

Results go by C-STORE to ``FRACTURE_DICOM_DEST_*``, or by DICOMweb STOW-RS when
``FRACTURE_DICOMWEB_URL`` is set (then the C-STORE destination is not needed); with
``FRACTURE_FHIR_URL`` each study's report also goes to an EMR's FHIR server. With
``FRACTURE_BROKER_URL`` (``redis://HOST:PORT/N``) the node only receives and Celery workers on any
number of hosts analyse and send (:mod:`fracture_web.dicom_node.tasks`); every host reads the same settings.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import BY_NAME, Settings, SettingsError

PREFIX = "FRACTURE_DICOM_"
WEB_PREFIX = "FRACTURE_DICOMWEB_"
BROKER_PREFIX = "FRACTURE_BROKER_"


class NodeConfigError(SettingsError):
    """A missing, malformed or contradictory setting; the message names the variable."""


def _default(name: str) -> Any:
    """The table's default of a setting, for a field of :class:`NodeConfig`."""
    return BY_NAME[name].default


@dataclass(frozen=True)
class DicomWebDestination:
    """A DICOMweb server's base URL (STOW-RS posts to ``<url>/studies``) and how to sign in, if at all."""

    url: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)  # sent as "Authorization: Bearer <token>"


@dataclass(frozen=True)
class NodeConfig:
    """Where the node listens, where results go, where they wait while the destination is down.
    The defaults are the settings table's (``fracture_web.config.table``)."""

    dest_host: str = ""  # the C-STORE destination; unused when ``dicomweb`` is set
    dest_ae_title: str = ""
    dest_port: int = _default("DICOM_DEST_PORT")
    dicomweb: DicomWebDestination | None = None  # results by STOW-RS instead of C-STORE
    ae_title: str = _default("DICOM_AE_TITLE")
    bind: str = _default("DICOM_BIND")
    port: int = _default("DICOM_PORT")
    allowed_ae_titles: tuple[str, ...] = ()  # calling AE titles that may store here; () = the destination's
    allowed_hosts: tuple[str, ...] = ()  # addresses or networks that may connect; () = any (AE titles still checked)
    max_associations: int = _default("DICOM_MAX_ASSOCIATIONS")  # associations served at once
    idle_seconds: float = _default("DICOM_IDLE_SECONDS")  # an association storing nothing this long is closed
    queue_dir: Path = Path(_default("DICOM_QUEUE_DIR"))  # "~" is expanded when the outbox opens it
    settle_seconds: float = _default("DICOM_SETTLE_SECONDS")  # a study is reported once quiet this long
    keep_studies_days: float = _default("DICOM_KEEP_STUDIES_DAYS")  # a reported study's readings wait for late images
    retries: int = _default("DICOM_RETRIES")  # tries per send before the result is queued on disk
    retry_delay: float = _default("DICOM_RETRY_DELAY")  # seconds before the 2nd try, doubled for each further one
    resend_interval: float = _default("DICOM_RESEND_INTERVAL")  # longest wait between resends of the disk queue
    dead_letter_after: int = _default("DICOM_DEAD_LETTER_AFTER")  # refusals before a result is set aside
    model_dir: Path = Path(_default("MODEL_DIR"))
    operating_point: str | None = None
    backend: str = _default("BACKEND")  # "litert" serves the .tflite file, as the web app does
    tflite_file: str = _default("TFLITE_FILE")
    threads: int | None = None  # cores one image may use; None = all
    broker_url: str | None = field(default=None, repr=False)  # Redis for the workers; None = one box
    visibility_timeout: float = _default("BROKER_VISIBILITY_TIMEOUT")  # a dead worker's task runs again after this
    max_deliveries: int = _default("BROKER_MAX_DELIVERIES")  # an image taken up this often is set aside
    metrics_port: int | None = None  # serve this process's Prometheus metrics on this port; None = not
    drift_window: int = _default("METRICS_DRIFT_WINDOW")  # images in this process's drift signal
    database_url: str | None = field(default=None, repr=False)  # where results' analyses are kept for reads
    fhir_url: str | None = None  # an EMR's FHIR server: each study's report also goes there
    fhir_token: str | None = field(default=None, repr=False)

    @property
    def studies_dir(self) -> Path:
        """Where received images wait for their study to settle: inside the queue folder."""
        return self.queue_dir / "studies"

    @property
    def fhir_dir(self) -> Path:
        """Where FHIR reports wait while the FHIR server cannot take them."""
        return self.queue_dir / "fhir"

    @property
    def dead_letter_dir(self) -> Path:
        """Where results that cannot be built or that the destination keeps refusing are set aside."""
        return self.queue_dir / "dead-letter"

    @property
    def callers(self) -> tuple[str, ...]:
        """The calling AE titles the node accepts associations from: the allowed ones, else the destination PACS."""
        return self.allowed_ae_titles or ((self.dest_ae_title,) if self.dest_ae_title else ())


def from_environment(env: Mapping[str, str] | None = None) -> NodeConfig:
    """The node's settings from ``env`` (the process's environment when None); ``NodeConfigError``
    naming the variable for a malformed, missing or contradictory one."""
    try:
        settings = Settings.from_environ(env)
    except SettingsError as err:
        raise NodeConfigError(str(err)) from None
    return node_config(settings)


def node_config(settings: Mapping) -> NodeConfig:
    """The node's settings from the package's settings; refuses a missing destination and settings
    that contradict each other."""
    dicomweb = dicomweb_destination(settings)
    missing = [PREFIX + name for name in ("DEST_HOST", "DEST_AE_TITLE") if not settings["DICOM_" + name]]
    if missing and dicomweb is None:
        raise NodeConfigError(f"Set {' and '.join(missing)} (the PACS that receives the results), "
                              f"or {WEB_PREFIX}URL to send them by DICOMweb.")
    config = NodeConfig(
        dest_host=settings["DICOM_DEST_HOST"] or "", dest_ae_title=settings["DICOM_DEST_AE_TITLE"] or "",
        dest_port=settings["DICOM_DEST_PORT"], dicomweb=dicomweb, ae_title=settings["DICOM_AE_TITLE"],
        bind=settings["DICOM_BIND"], port=settings["DICOM_PORT"], queue_dir=Path(settings["DICOM_QUEUE_DIR"]),
        allowed_ae_titles=settings["DICOM_ALLOWED_AE_TITLES"], allowed_hosts=settings["DICOM_ALLOWED_HOSTS"],
        max_associations=settings["DICOM_MAX_ASSOCIATIONS"], idle_seconds=settings["DICOM_IDLE_SECONDS"],
        dead_letter_after=settings["DICOM_DEAD_LETTER_AFTER"], settle_seconds=settings["DICOM_SETTLE_SECONDS"],
        keep_studies_days=settings["DICOM_KEEP_STUDIES_DAYS"], retries=settings["DICOM_RETRIES"],
        retry_delay=settings["DICOM_RETRY_DELAY"], resend_interval=settings["DICOM_RESEND_INTERVAL"],
        model_dir=Path(settings["MODEL_DIR"]), operating_point=settings["OPERATING_POINT"],
        backend=settings["BACKEND"], tflite_file=settings["TFLITE_FILE"], threads=settings["THREADS"],
        broker_url=settings["BROKER_URL"], visibility_timeout=settings["BROKER_VISIBILITY_TIMEOUT"],
        max_deliveries=settings["BROKER_MAX_DELIVERIES"],
        metrics_port=settings["DICOM_METRICS_PORT"], drift_window=settings["METRICS_DRIFT_WINDOW"],
        database_url=settings["DATABASE_URL"], fhir_url=settings["FHIR_URL"], fhir_token=settings["FHIR_TOKEN"])
    if config.fhir_token and not config.fhir_url:
        raise NodeConfigError("FRACTURE_FHIR_TOKEN is set without FRACTURE_FHIR_URL.")
    if config.broker_url and config.visibility_timeout <= max(config.settle_seconds, config.resend_interval):
        raise NodeConfigError(f"{BROKER_PREFIX}VISIBILITY_TIMEOUT must be longer than {PREFIX}SETTLE_SECONDS and "
                              f"{PREFIX}RESEND_INTERVAL: tasks wait that long in a worker before they run.")
    return config


def dicomweb_destination(settings: Mapping) -> DicomWebDestination | None:
    """The STOW-RS destination when ``FRACTURE_DICOMWEB_URL`` is set; a user needs a password, and a
    token is the other way to sign in, not a third."""
    url, user, password, token = (settings["DICOMWEB_" + name] for name in ("URL", "USER", "PASSWORD", "TOKEN"))
    if url is None:
        if user or password or token:
            raise NodeConfigError(f"{WEB_PREFIX}USER, PASSWORD or TOKEN is set without {WEB_PREFIX}URL.")
        return None
    if bool(user) != bool(password):
        raise NodeConfigError(f"Set both {WEB_PREFIX}USER and {WEB_PREFIX}PASSWORD, or neither.")
    if user and token:
        raise NodeConfigError(f"Set {WEB_PREFIX}USER and PASSWORD or {WEB_PREFIX}TOKEN, not both.")
    return DicomWebDestination(url, user, password, token)

"""Every ``FRACTURE_*`` setting in one table: its name (the variable without ``FRACTURE_``), kind,
default, who reads it and what it does. The settings table in docs/operations.md is generated from
it (``python -m fracture_web.config --markdown``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .kinds import (Kind, ae_title, boolean, choice, days, integer, listed, network, optional, path, port, rate,
                    seconds, secret, size, text, url)

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
#: The prefix of every setting's environment variable.
PREFIX = "FRACTURE_"
#: The runtime the model is served with unless ``BACKEND`` says otherwise: the fastest of the model
#: folder's exports verified to stand in for its SavedModel, else TensorFlow (runtimes.resolve_backend).
DEFAULT_BACKEND = "auto"
#: The LiteRT file served by default: the fastest of the ``.tflite`` files written by
#: scripts/export_tflite.py that its parity report vouches for (runtimes.served_file).
DEFAULT_TFLITE_FILE = "auto"

#: Who reads a setting: the web app (create_app), the DICOM node, its Celery workers, the command lines.
WEB, NODE, WORKER, CLI = "web", "node", "worker", "cli"
READERS = (WEB, NODE, WORKER, CLI)
MODEL_USERS = READERS  # the model's settings: everyone loads the model
SENDERS = (NODE, WORKER)  # whoever sends results: the node alone, or the workers behind a broker


class SettingsError(ValueError):
    """A malformed setting; the message names the variable and says what it takes."""


@dataclass(frozen=True)
class Setting:
    """One setting: its name (the variable without the prefix), kind, default, readers and meaning;
    ``shown`` is the default as the docs say it, where the value itself would not read well."""

    name: str
    kind: Kind
    default: Any
    readers: tuple[str, ...]
    description: str
    shown: str | None = None

    @property
    def variable(self) -> str:
        return PREFIX + self.name

    def read(self, value: Any) -> Any:
        """``value`` as this setting's kind, or ``SettingsError`` naming the variable."""
        try:
            return self.kind(value)
        except ValueError as err:
            raise SettingsError(f"{self.variable} {err}.") from None


MODEL = (
    Setting("MODEL_DIR", path, str(PROJECT_ROOT / "model"), MODEL_USERS,
            "Folder with the SavedModel and `metadata.json`.", shown="`model/` of the checkout"),
    Setting("BACKEND", choice("auto", "tensorflow", "litert", "onnx"), DEFAULT_BACKEND, MODEL_USERS,
            "Runtime: `auto` serves the fastest of the model folder's exports whose parity report vouches for "
            "that very file (same model version, same SHA-256, probabilities within its tolerance of the "
            "SavedModel's; for int8, AUC, operating points, in-scope verdicts and findings): the `.tflite` file through LiteRT "
            "(`tflite_parity.json`) or the `.onnx` file through ONNX Runtime (`onnx_parity.json`, which also "
            "times each runtime), else the SavedModel through TensorFlow; `tensorflow` always the SavedModel; "
            "`litert` always the `.tflite` file; `onnx` always an `.onnx` file (the fastest vouched one, else "
            "`model.onnx`); neither needs TensorFlow. `/healthz` says which one runs."),
    Setting("TFLITE_FILE", text, DEFAULT_TFLITE_FILE, MODEL_USERS,
            "The `.tflite` file in the model folder that the `auto` and `litert` backends serve; `auto`: the "
            "fastest one `tflite_parity.json` vouches for (`model_float32.tflite` where it vouches for none)."),
    Setting("THREADS", optional(integer(1, 1024)), None, MODEL_USERS,
            "Cores one image may use (latency first).", shown="every core the process may use"),
    Setting("OPERATING_POINT", optional(text), None, MODEL_USERS,
            "Operating point used when a request (or a command line) names none.", shown="the model's own"),
)

WEB_APP = (
    Setting("LOAD_MODEL", boolean, True, (WEB,),
            "Load (and warm up) the model when the app is created; false only in tests."),
    Setting("UPLOAD_TIMEOUT", seconds, 60.0, (WEB,),
            "Seconds a client may take to send a whole request body (an upload), counted from its start; "
            "slower gets 408."),
    Setting("UPLOAD_MIN_RATE", rate, 64 * 1024, (WEB,),
            "Slowest average upload accepted once `FRACTURE_UPLOAD_GRACE` has passed, in bytes per second "
            "(units allowed, e.g. `64KiB`); `0` = no minimum. A slower client gets 408.", shown="`64KiB`"),
    Setting("UPLOAD_GRACE", seconds, 5.0, (WEB,),
            "Seconds an upload may take before `FRACTURE_UPLOAD_MIN_RATE` applies."),
    Setting("MAX_STUDY_IMAGES", integer(1, 99), 8, (WEB,),
            "Most files one study may have (the page, `POST /api/v1/studies`)."),
    Setting("MAX_CONTENT_LENGTH", size, 32 * 1024 * 1024, (WEB,),
            "Largest request body, all files of one upload together, also when sent in chunks; larger gets 413.",
            shown="`32MiB`"),
    Setting("DISPLAY_MAX_SIDE", integer(16), 640, (WEB,), "Longest side of the images shown on the result page."),
    Setting("AUDIT_LOG", optional(path), None, (WEB,),
            "File for the audit trail (one JSON line per prediction).", shown="stdout"),
    Setting("SECRET_KEY", secret, None, (WEB,),
            "Signs the page's cookie (its CSRF token and sign-in); all workers must share it.",
            shown="made once in `instance/secret_key`"),
    Setting("SESSION_COOKIE_SAMESITE", choice("Lax",
            "Strict"), "Lax", (WEB,), "SameSite attribute of the page's cookie."),
    Setting("SESSION_COOKIE_SECURE", boolean, False, (WEB,),
            "Send the page's cookie over HTTPS only; set `true` when served over HTTPS (behind nginx)."),
    Setting("API_TOKEN", secret, None, (WEB,),
            "When set, analysing needs it: the API wants `Authorization: Bearer <token>`, the page asks for it "
            "once (sign-in).", shown="unset: open to anyone who can reach the app"),
    Setting("METRICS", boolean, True, (WEB,),
            "Serve Prometheus metrics at `/metrics` (not behind the API token: keep it off the public path at "
            "nginx); `false` answers 404 there."),
    Setting("METRICS_DRIFT_WINDOW", integer(1), 200, (WEB, NODE, WORKER),
            "Images in the drift signal's window (share of fractured verdicts), in each process that analyses."),
    Setting("DATABASE_URL", optional(url("postgresql", "postgresql+psycopg", "sqlite")), None, (WEB, NODE, WORKER, CLI),
            "Where the analyses and the readers' reads are kept (the site page's figures): "
            "`postgresql://USER:PASSWORD@HOST/DB` for several hosts, or an `sqlite:///` file (never logged). "
            "Set for the DICOM node and its workers too, they keep their results' analyses there, under each "
            "Secondary Capture's SOP Instance UID.",
            shown="web and `calibrate_site.py --from-reads`: `instance/reads.sqlite3`; node: unset, none kept"),
)

DICOM_NODE = (
    Setting("DICOM_AE_TITLE", ae_title,
            "FRACTURE_AI", SENDERS, "The node's AE title (also the workers' calling AE title)."),
    Setting("DICOM_BIND", text,
            "0.0.0.0", SENDERS, "Address the node listens on (its metrics server too, and a worker's)."),
    Setting("DICOM_PORT", port, 11112, (NODE,), "Port the node listens on."),
    Setting("DICOM_DEST_HOST", optional(text), None, SENDERS,
            "The PACS that receives the results by C-STORE.", shown="required unless DICOMweb"),
    Setting("DICOM_DEST_PORT", port, 104, SENDERS, "Its port."),
    Setting("DICOM_DEST_AE_TITLE", optional(ae_title), None, SENDERS,
            "Its AE title.", shown="required unless DICOMweb"),
    Setting("DICOMWEB_URL", optional(url("http", "https")), None, SENDERS,
            "A DICOMweb server's base URL, e.g. `https://pacs.hospital.example/dicom-web`: results go by STOW-RS "
            "instead of C-STORE."),
    Setting("DICOMWEB_USER", optional(text), None, SENDERS,
            "HTTP Basic sign-in for the DICOMweb server, with the password."),
    Setting("DICOMWEB_PASSWORD", optional(text), None, SENDERS, "Its password (never logged)."),
    Setting("DICOMWEB_TOKEN", optional(text), None, SENDERS,
            "Or a bearer token (`Authorization: Bearer ...`), not both (never logged)."),
    Setting("FHIR_URL", optional(url("http", "https")), None, SENDERS,
            "An EMR's FHIR R4 server base URL, e.g. `https://emr.hospital.example/fhir`: each study's report also "
            "goes there as a FHIR transaction Bundle (a DiagnosticReport, its Observations and the Device), "
            "beside the SR; resent and set aside like the DICOM results.", shown="unset: no FHIR report"),
    Setting("FHIR_TOKEN", optional(text), None, SENDERS,
            "Bearer token for the FHIR server (`Authorization: Bearer ...`; never logged).",
            shown="unset: no sign-in"),
    Setting("DICOM_ALLOWED_AE_TITLES", listed(ae_title, empty="leave the choice to FRACTURE_DICOM_DEST_AE_TITLE"), (), (NODE,),
            "Calling AE titles that may open an association; any other is rejected. The node does not start when "
            "neither this nor `FRACTURE_DICOM_DEST_AE_TITLE` is set (e.g. DICOMweb only).",
            shown="`FRACTURE_DICOM_DEST_AE_TITLE`"),
    Setting("DICOM_ALLOWED_HOSTS", listed(network, empty="allow any host"), (), (NODE,),
            "Addresses or CIDR networks; connections from other hosts are closed before any association. "
            "Firewall the node anyway.", shown="any host"),
    Setting("DICOM_MAX_ASSOCIATIONS", integer(1), 32, (NODE,),
            "Associations served at once; the next is rejected as transient (the sender retries). Each may be "
            "analysing an image, so memory grows with it."),
    Setting("DICOM_IDLE_SECONDS", seconds, 60.0, (NODE,),
            "An association that stores nothing for this long is aborted, C-ECHO or not (an image being analysed "
            "does not count as idle); also pynetdicom's network timeout."),
    Setting("DICOM_QUEUE_DIR", path, "~/.fracture-web/dicom-queue", (NODE,),
            "Results waiting while the PACS is down, the dead letter, and (in `studies/`) the images of studies "
            "still settling (mode 0700)."),
    Setting("DICOM_SETTLE_SECONDS", seconds, 5.0, SENDERS,
            "A study is reported once no new image of it came for this long."),
    Setting("DICOM_KEEP_STUDIES_DAYS", days, 7.0, SENDERS,
            "How long a reported study's readings are kept for late images."),
    Setting("DICOM_RETRIES", integer(1), 3, SENDERS, "Tries per send before the results are queued."),
    Setting("DICOM_RETRY_DELAY", seconds, 1.0, SENDERS, "Seconds before the second try, doubled for each further one."),
    Setting("DICOM_RESEND_INTERVAL", seconds, 30.0, SENDERS,
            "Longest wait, in seconds, between attempts to resend the queue."),
    Setting("DICOM_DEAD_LETTER_AFTER", integer(1), 10, SENDERS,
            "Failed sends of one result that count against it before it is set aside in the dead letter: a refusal "
            "(a C-STORE failure status; a STOW-RS 4xx, redirect, or answer that does not confirm every instance "
            "stored) or a destination that was reached but cut "
            "the association or never answered (a C-STORE abort, a STOW-RS read timeout); a destination that cannot "
            "be reached at all counts against no result."),
    Setting("DICOM_METRICS_PORT", optional(port), None, SENDERS,
            "Serve the node's (or a worker's) own Prometheus metrics on this port, on `FRACTURE_DICOM_BIND` only.",
            shown="unset: not served"),
    Setting("BROKER_URL", optional(url("redis", "rediss")), None, (NODE, WORKER, CLI),
            "`redis://HOST:PORT/N` (`rediss://` for TLS): the node only receives, workers analyse and send, "
            "`scripts/reread.py` sends its files to them.", shown="unset: one box"),
    Setting("BROKER_VISIBILITY_TIMEOUT", seconds, 90.0, (NODE, WORKER, CLI),
            "Seconds after which a task a worker took and never acknowledged (the worker died) runs on another "
            "worker; must be longer than any task, than `FRACTURE_DICOM_SETTLE_SECONDS` and than "
            "`FRACTURE_DICOM_RESEND_INTERVAL` (the node refuses to start otherwise)."),
    Setting("BROKER_MAX_DELIVERIES", integer(1), 3, (WORKER,),
            "Times the workers may start analysing one received image: once this many starts never finished (the "
            "worker died each time: a crash, an out-of-memory kill), the image is not analysed again but set aside "
            "in the dead letter (`analysis_failed`), so that one poison image cannot kill worker after worker."),
)

#: Every setting, with its default and what it does.
SETTINGS: tuple[Setting, ...] = MODEL + WEB_APP + DICOM_NODE
BY_NAME = {setting.name: setting for setting in SETTINGS}

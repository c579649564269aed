"""The settings: one typed table, each setting read from a ``FRACTURE_`` environment variable
(e.g. ``FRACTURE_MODEL_DIR``) by its kind.

A malformed value stops start-up with a message naming the variable (``SettingsError``), and a
security setting is never switched off, or made impossible to satisfy, by a value that looks like
a word ("false", "0", "null", an empty string). The web app reads the table in ``create_app``; a
DICOM node, a worker or a command line can read the same settings with ``from_environ``. Written
here rather than taken from a settings library: the kinds are few, and the refusal of word-like
secrets is ours. Imports nothing from the package.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: The prefix of every setting's environment variable.
PREFIX = "FRACTURE_"
#: The runtime the model is served with unless ``BACKEND`` says otherwise: LiteRT where the model
#: folder's .tflite file is a verified stand-in for its SavedModel, else TensorFlow (runtimes.resolve_backend).
DEFAULT_BACKEND = "auto"
#: The LiteRT file served by default, written by scripts/export_tflite.py beside the SavedModel.
DEFAULT_TFLITE_FILE = "model_float32.tflite"
#: Fewest characters of an API token or secret key (``secrets.token_urlsafe(32)`` gives 43).
MIN_SECRET_LENGTH = 16
#: Words that switch things on or off; as a secret they are a mistake, never a secret.
WORDS = frozenset({"", "0", "1", "false", "true", "no", "yes", "off", "on", "null", "none", "nil", "disabled",
                   "enabled", "unset", "changeme"})
TRUE, FALSE = frozenset({"true", "yes", "on", "1"}), frozenset({"false", "no", "off", "0"})
#: Units a size may carry: SI (1 MB = 1,000,000 bytes) and binary (1 MiB = 1,048,576 bytes).
UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
SIZE = re.compile(r"\s*(\d+)\s*([a-z]*)\s*", re.IGNORECASE)


class SettingsError(ValueError):
    """A malformed setting; the message names the variable and says what it takes."""


Kind = Callable[[Any], Any]  # the text of a variable (or a value given in Python) -> the setting's value


def boolean(value: Any) -> bool:
    """true/false, yes/no, on/off or 1/0, and nothing else."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE or word in FALSE:
        return word in TRUE
    raise ValueError("takes true or false (or yes/no, on/off, 1/0)")


def integer(minimum: int) -> Kind:
    """A whole number of at least ``minimum``."""
    def parse(value: Any) -> int:
        number = value if isinstance(value, int) and not isinstance(value, bool) else _int(value)
        if number < minimum:
            raise ValueError(f"must be at least {minimum}")
        return number
    return parse


def _int(value: Any) -> int:
    if not isinstance(value, str) or not value.strip().isdigit():
        raise ValueError("takes a whole number")
    return int(value)


def seconds(value: Any) -> float:
    """A positive number of seconds (``2``, ``0.5``)."""
    try:
        number = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        number = float("nan")
    if not number > 0 or number == float("inf"):
        raise ValueError("takes a positive number of seconds")
    return number


def size(value: Any) -> int:
    """Bytes, plain (``33554432``) or with a unit (``32MiB``, ``32MB``); at least 1."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        match = SIZE.fullmatch(value) if isinstance(value, str) else None
        if match is None or match[2].lower() not in UNITS:
            raise ValueError("takes a size in bytes, e.g. 33554432, 32MiB or 32MB")
        number = int(match[1]) * UNITS[match[2].lower()]
    if number < 1:
        raise ValueError("must be at least 1 byte")
    return number


def rate(value: Any) -> int:
    """Bytes per second, as a size (``64KiB``); 0 for no minimum."""
    return 0 if str(value).strip() == "0" else size(value)


def text(value: Any) -> str:
    """Any text that is not empty."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def choice(*options: str) -> Kind:
    """One of ``options`` (as written there, whatever the case it is given in)."""
    def parse(value: Any) -> str:
        found = [option for option in options if str(value).strip().lower() == option.lower()]
        if not found:
            raise ValueError(f"takes one of {', '.join(options)}")
        return found[0]
    return parse


def optional(kind: Kind) -> Kind:
    """``kind``, or None when unset or empty."""
    def parse(value: Any) -> Any:
        return None if value is None or isinstance(value, str) and not value.strip() else kind(value)
    return parse


def secret(value: Any) -> str | None:
    """A token or key: None when unset; else at least ``MIN_SECRET_LENGTH`` characters, no spaces,
    never a word that looks like a switch (an empty, "false" or "0" token would otherwise pass as
    "no token" and leave what it guards open)."""
    if value is None:
        return None
    if not isinstance(value, str) or value.strip().lower() in WORDS:
        raise ValueError(f"is {value!r}, which is not a secret: unset the variable to turn this off, "
                         f"or give at least {MIN_SECRET_LENGTH} random characters")
    if len(value) < MIN_SECRET_LENGTH or any(char.isspace() for char in value):
        raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters without spaces "
                         "(python -c 'import secrets; print(secrets.token_urlsafe(32))' makes one)")
    return value


@dataclass(frozen=True)
class Setting:
    """One setting: its name (the variable without the prefix), kind, default and meaning."""

    name: str
    kind: Kind
    default: Any
    description: str

    def read(self, value: Any, prefix: str = PREFIX) -> Any:
        """``value`` as this setting's kind, or ``SettingsError`` naming the variable."""
        try:
            return self.kind(value)
        except ValueError as err:
            raise SettingsError(f"{prefix}{self.name} {err}.") from None


#: Every setting of the web app, with its default and what it does.
SETTINGS: tuple[Setting, ...] = (
    Setting("MODEL_DIR", text, str(PROJECT_ROOT / "model"), "Folder with the SavedModel and metadata.json."),
    Setting("BACKEND", choice("auto", "tensorflow", "litert"), DEFAULT_BACKEND,
            "Runtime: auto (the .tflite file where its parity report vouches for it, else the SavedModel), "
            "tensorflow (the SavedModel) or litert (the .tflite file, no TensorFlow needed)."),
    Setting("TFLITE_FILE", text, DEFAULT_TFLITE_FILE, "The .tflite file in MODEL_DIR that litert and auto serve."),
    Setting("THREADS", optional(integer(1)), None, "Cores one image may use; unset = every core (latency first)."),
    Setting("LOAD_MODEL", boolean, True, "Load (and warm up) the model when the app is created; false only in tests."),
    Setting("OPERATING_POINT", optional(text), None,
            "Operating point used when a request names none; unset = the model's own default."),
    Setting("UPLOAD_TIMEOUT", seconds, 60.0,
            "Seconds a client may take to send a whole request body (an upload) before it gets 408."),
    Setting("UPLOAD_MIN_RATE", rate, 64 * 1024,
            "Slowest average upload accepted after UPLOAD_GRACE seconds, in bytes per second (e.g. 64KiB); "
            "0 = no minimum. A slower client gets 408."),
    Setting("UPLOAD_GRACE", seconds, 5.0, "Seconds an upload may take before UPLOAD_MIN_RATE applies."),
    Setting("MAX_STUDY_IMAGES", integer(1), 8, "Most files one study may have (the page, POST /api/v1/studies)."),
    Setting("MAX_CONTENT_LENGTH", size, 32 * 1024 * 1024,
            "Largest request body, all files of one upload together (32MiB, 32MB or bytes); larger gets 413."),
    Setting("DISPLAY_MAX_SIDE", integer(16), 640, "Longest side of the images shown on the result page."),
    Setting("AUDIT_LOG", optional(text), None, "File for the audit trail (one JSON line per prediction); unset = stdout."),
    Setting("SECRET_KEY", secret, None,
            "Signs the page's cookie (its CSRF token and sign-in). Unset: a random key made once per install "
            "in the instance folder (instance/secret_key), shared by all workers."),
    Setting("SESSION_COOKIE_SAMESITE", choice("Lax", "Strict"), "Lax", "SameSite attribute of the page's cookie."),
    Setting("SESSION_COOKIE_SECURE", boolean, False,
            "Send the page's cookie over HTTPS only; set true when served over HTTPS (behind nginx)."),
    Setting("API_TOKEN", secret, None,
            "When set, analysing needs it: the API wants 'Authorization: Bearer <token>', the page asks for it "
            "once (sign-in). Unset = open to anyone who can reach the app."),
    Setting("METRICS", boolean, True,
            "Serve Prometheus metrics at /metrics (not behind API_TOKEN: keep it off the public path at nginx)."),
    Setting("METRICS_DRIFT_WINDOW", integer(1), 200, "Images in the drift signal's window (share of fractured verdicts)."),
)
BY_NAME = {setting.name: setting for setting in SETTINGS}


def defaults() -> dict:
    """Fresh defaults for one app instance."""
    return {setting.name: setting.default for setting in SETTINGS}


def from_environ(env: Mapping[str, str], settings: Iterable[Setting] = SETTINGS, prefix: str = PREFIX) -> dict:
    """The settings whose variables are set in ``env``, each read by its kind; ``SettingsError``
    (naming the variable) for the first malformed one."""
    return {setting.name: setting.read(env[prefix + setting.name], prefix)
            for setting in settings if prefix + setting.name in env}


def check(values: Mapping[str, Any], settings: Iterable[Setting] = SETTINGS) -> dict:
    """The table's settings among ``values`` (e.g. from an instance config.py), each read by its kind:
    text as from the environment, a value of the right type checked as it is."""
    return {setting.name: setting.read(values[setting.name]) for setting in settings if setting.name in values}


def unknown(env: Mapping[str, str], known_prefixes: Iterable[str] = (), prefix: str = PREFIX) -> list[str]:
    """Variables with ``prefix`` that name no setting of the table (a typo, e.g. FRACTURE_API_TOKN),
    apart from those under ``known_prefixes`` (another process's settings)."""
    known = {prefix + name for name in BY_NAME}
    return sorted(name for name in env if name.startswith(prefix) and name not in known
                  and not any(name.startswith(other) for other in known_prefixes))

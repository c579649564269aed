"""The kinds a setting may be: each turns the text of a variable (or a value given in Python) into the
setting's value, or raises ``ValueError`` saying what it takes (the table adds the variable's name).

A security setting is never switched off, or made impossible to satisfy, by a value that looks like a
word ("false", "0", "null", an empty string). Written here rather than taken from a settings library:
the kinds are few, and the refusal of word-like secrets is ours.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_network
from typing import Any
from urllib.parse import urlsplit

#: Fewest characters of an API token or secret key (``secrets.token_urlsafe(32)`` gives 43).
MIN_SECRET_LENGTH = 16
#: Words that switch things on or off; as a secret they are a mistake, never a secret.
WORDS = frozenset({"", "0", "1", "false", "true", "no", "yes", "off", "on", "null", "none", "nil", "disabled",
                   "enabled", "unset", "changeme"})
TRUE, FALSE = frozenset({"true", "yes", "on", "1"}), frozenset({"false", "no", "off", "0"})
#: Units a size may carry: SI (1 MB = 1,000,000 bytes) and binary (1 MiB = 1,048,576 bytes).
UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
SIZE = re.compile(r"\s*(\d+)\s*([a-z]*)\s*", re.IGNORECASE)
#: Most digits of a whole-number setting (no setting needs more than a few).
MAX_DIGITS = 12
#: Longest DICOM AE title.
AE_TITLE_LENGTH = 16


@dataclass(frozen=True)
class Kind:
    """How a setting is read, and what the settings table calls it (``label``)."""

    label: str
    parse: Callable[[Any], Any]

    def __call__(self, value: Any) -> Any:
        return self.parse(value)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE or word in FALSE:
        return word in TRUE
    raise ValueError("takes true or false (or yes/no, on/off, 1/0)")


#: true/false, yes/no, on/off or 1/0, and nothing else.
boolean = Kind("switch", _boolean)


def _int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    digits = value.strip() if isinstance(value, str) else ""
    if not (digits.isascii() and digits.isdigit() and len(digits) <= MAX_DIGITS):
        raise ValueError("takes a whole number")
    return int(digits)


def integer(minimum: int, maximum: int | None = None, label: str = "") -> Kind:
    """A whole number of at least ``minimum`` (and at most ``maximum``)."""
    def parse(value: Any) -> int:
        number = _int(value)
        if number < minimum:
            raise ValueError(f"must be at least {minimum}")
        if maximum is not None and number > maximum:
            raise ValueError(f"must be at most {maximum}")
        return number
    return Kind(label or f"whole number, at least {minimum}", parse)


#: A TCP port.
port = integer(1, 65535, "port")


def positive(unit: str) -> Kind:
    """A positive number of ``unit`` (``2``, ``0.5``)."""
    def parse(value: Any) -> float:
        try:
            number = float(value) if not isinstance(value, bool) else float("nan")
        except (TypeError, ValueError):
            number = float("nan")
        if not number > 0 or number == float("inf"):
            raise ValueError(f"takes a positive number of {unit}")
        return number
    return Kind(unit, parse)


seconds, days = positive("seconds"), positive("days")


def _size(value: Any, minimum: int = 1) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        match = SIZE.fullmatch(value) if isinstance(value, str) else None
        if match is None or match[2].lower() not in UNITS:
            raise ValueError("takes a size in bytes, e.g. 33554432, 32MiB or 32MB")
        number = int(match[1]) * UNITS[match[2].lower()]
    if number < minimum:
        raise ValueError(f"must be at least {minimum} byte")
    return number


#: Bytes, plain (``33554432``) or with a unit (``32MiB``, ``32MB``); at least 1.
size = Kind("size (bytes, KiB, MiB, MB...)", _size)
#: Bytes per second, as a size (``64KiB``); 0 for no minimum.
rate = Kind("bytes per second (0 = none)", lambda value: _size(value, minimum=0))


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


#: Any text that is not empty.
text = Kind("text", _text)
#: A file or folder.
path = Kind("path", _text)


def choice(*options: str) -> Kind:
    """One of ``options`` (as written there, whatever the case it is given in)."""
    def parse(value: Any) -> str:
        found = [option for option in options if str(value).strip().lower() == option.lower()]
        if not found:
            raise ValueError(f"takes one of {', '.join(options)}")
        return found[0]
    return Kind(f"one of {', '.join(options)}", parse)


def optional(kind: Kind) -> Kind:
    """``kind``, or None when unset or empty."""
    def parse(value: Any) -> Any:
        return None if value is None or isinstance(value, str) and not value.strip() else kind(value)
    return Kind(kind.label, parse)


def listed(kind: Kind, empty: str | None = None) -> Kind:
    """Comma-separated items, each of ``kind``; empty for none, unless ``empty`` says what an empty list
    would mean (a security setting: it is refused, saying so, rather than taken as unset)."""
    def parse(value: Any) -> tuple:
        items = value.split(",") if isinstance(value, str) else list(value)
        found = tuple(kind(item) for item in items if str(item).strip())
        if not found and empty and isinstance(value, str):  # a variable set to nothing, not the default
            raise ValueError(f"lists nothing, which would {empty}: unset the variable for that, or list at least one")
        return found
    return Kind(f"{kind.label}, comma-separated", parse)


def _ae_title(value: Any) -> str:
    title = _text(value)
    if len(title) > AE_TITLE_LENGTH or "\\" in title:
        raise ValueError(f"takes AE titles of at most {AE_TITLE_LENGTH} characters ({title!r})")
    return title


#: A DICOM application entity title.
ae_title = Kind("AE title", _ae_title)


def _network(value: Any) -> str:
    address = _text(value)
    try:
        ip_network(address, strict=False)
    except ValueError:
        raise ValueError(f"takes IP addresses or networks such as 10.0.0.0/8 ({address!r})") from None
    return address


#: An IP address or a network (``10.0.0.0/8``), kept as written.
network = Kind("address or network", _network)


def url(*schemes: str) -> Kind:
    """A URL starting with one of ``schemes`` (``redis``; ``sqlite`` takes a file, ``sqlite:///``), with
    something after it and a port, if any, that is a number; a trailing slash dropped."""
    starts = tuple(f"{scheme}:///" if scheme == "sqlite" else f"{scheme}://" for scheme in schemes)
    def parse(value: Any) -> str:
        address = _text(value)
        if not address.startswith(starts):
            raise ValueError(f"must start with {' or '.join(starts)}")
        if address.rstrip("/") + "/" in (start.rstrip("/") + "/" for start in starts):
            raise ValueError("names no host or file after its scheme")
        try:
            _port(address)
        except ValueError:
            raise ValueError("has a port that is not a number from 0 to 65535") from None
        return address.rstrip("/")
    return Kind(f"{' or '.join(schemes)} URL", parse)


def _port(address: str) -> int | None:
    """A URL's port as the library that will open it reads it (SQLAlchemy takes a password up to the
    last '@', with any '/' in it); ``ValueError`` when it is not a port."""
    if address.startswith(("postgresql", "sqlite")):
        from sqlalchemy.engine import make_url  # only where a database URL is read
        from sqlalchemy.exc import ArgumentError
        try:
            return make_url(address).port
        except ArgumentError as err:
            raise ValueError(str(err)) from None
    return urlsplit(address).port


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.strip().lower() in WORDS:
        raise ValueError(f"is {value!r}, which is not a secret: unset the variable to turn this off, "
                         f"or give at least {MIN_SECRET_LENGTH} random characters")
    if len(value) < MIN_SECRET_LENGTH or not all("!" <= char <= "~" for char in value):
        raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters of plain ASCII, without spaces (an HTTP "
                         "header carries no other reliably; python -c 'import secrets; "
                         "print(secrets.token_urlsafe(32))' makes one)")
    return value


#: A token or key: None when unset; else at least ``MIN_SECRET_LENGTH`` characters, no spaces, never a
#: word that looks like a switch (an empty, "false" or "0" token would otherwise pass as "no token" and
#: leave what it guards open).
secret = Kind(f"secret, {MIN_SECRET_LENGTH}+ characters", _secret)

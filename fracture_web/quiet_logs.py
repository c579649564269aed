"""Keep patient data that libraries quote out of the log.

pydicom logs (and warns about) an invalid value with the value in the message (``Invalid value for
VR DA: '1970-01-01'``, a patient's birth date), and highdicom warns with the patient's name when it
looks odd (``The string "..." is unlikely to represent the intended person name``). Such values
arrive in ordinary studies, so their text must never reach the log. :func:`withhold_quoted_values`
routes Python warnings through logging and puts :class:`WithheldValues` on the root logger's
handlers: a record from the ``pydicom`` or ``highdicom`` loggers, or a warning, keeps its level,
logger and (for a warning) category and place, and loses its text and any traceback. That something
was withheld stays in the log. Stdlib only, so any process may use it.
"""
from __future__ import annotations

import logging
import re

#: Loggers whose records may quote a dataset's values; ``py.warnings`` is where Python warnings go
#: once routed through logging (pydicom and highdicom warn with the values too).
QUOTING_LOGGERS = frozenset({"pydicom", "highdicom", "py.warnings"})
WITHHELD = "(text withheld: it may quote patient data)"
#: The head of a formatted warning: ``<file>:<line>: <Category>: <message>``.
WARNING_HEAD = re.compile(r"(?P<file>[^\n]*?):(?P<line>\d+): (?P<category>\w+):")


class WithheldValues(logging.Filter):
    """Replace the text of records from ``QUOTING_LOGGERS`` (and their children) by a note that it
    was withheld; every record still passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if quoting(record.name) and not getattr(record, "withheld", False):
            record.msg, record.args = f"{warning_origin(record)}{WITHHELD}", ()
            record.exc_info, record.exc_text, record.stack_info = None, None, None
            record.withheld = True  # each handler sees the same record: the first one's note stays
        return True


def quoting(name: str) -> bool:
    """Whether a logger is one of ``QUOTING_LOGGERS`` or a child of one."""
    return any(name == quoter or name.startswith(f"{quoter}.") for quoter in QUOTING_LOGGERS)


def warning_origin(record: logging.LogRecord) -> str:
    """For a routed Python warning, its category and where it was raised (no message), else nothing."""
    head = WARNING_HEAD.match(record.getMessage()) if record.name == "py.warnings" else None
    if head is None:
        return ""
    place = "/".join(head["file"].replace("\\", "/").split("/")[-2:])
    return f"{head['category']} at {place}:{head['line']} "


def withhold_quoted_values() -> None:
    """Route Python warnings to logging and filter the root logger's handlers (call after
    ``logging.basicConfig``); calling it again adds nothing."""
    logging.captureWarnings(True)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, WithheldValues) for f in handler.filters):
            handler.addFilter(WithheldValues())

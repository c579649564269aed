"""How the node and a worker start, written once: log to stdout (pynetdicom's request dumps left out,
and the text of pydicom's and highdicom's messages and of Python warnings withheld, since they may
quote patient data: :mod:`~fracture_web.quiet_logs`), read the settings once, build what
the process runs, and serve its metrics."""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TypeVar

from ..config import Settings, SettingsError
from ..inference import ModelLoadError, UnknownOperatingPointError
from .config import NodeConfig, node_config
from ..quiet_logs import withhold_quoted_values
from .scp import serve_metrics

log = logging.getLogger(__name__)
Started = TypeVar("Started")
#: What stops a process from starting: a setting, the model, a port or a folder.
START_ERRORS = (SettingsError, ModelLoadError, UnknownOperatingPointError, OSError)


def start_process(what: str, build: Callable[[NodeConfig], Started],
          env: Mapping[str, str] | None = None) -> tuple[NodeConfig, Started] | None:
    """Logging, the settings from ``env`` (the process's environment when None; unknown ``FRACTURE_*``
    variables named in the log), ``build(config)`` and the process's metrics server. None, the reason
    logged ("the <what> cannot start: ..."), when a setting, the model, a port or a folder is wrong."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its INFO lines dump request details
    withhold_quoted_values()  # pydicom and highdicom quote invalid values (a birth date, a name)
    try:
        settings = Settings.from_environ(env)
        settings.warn_unknown(log)
        config = node_config(settings)
        started = build(config)
        serve_metrics(config)  # this process's own metrics, for Prometheus to scrape
    except START_ERRORS as err:
        log.error("the %s cannot start: %s", what, err)
        return None
    return config, started

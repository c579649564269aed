"""The WSGI entry point for gunicorn: the app, or one clear line and a boot-error exit.

gunicorn stops (instead of restarting workers forever) when a worker exits with code 3
while booting, so a missing or broken model, or a malformed setting, ends start-up at once with its reason.
"""
from __future__ import annotations

import logging
import sys

from . import create_app
from .config import SettingsError
from .inference import ModelLoadError, UnknownOperatingPointError

try:
    app = create_app()
except (ModelLoadError, SettingsError, UnknownOperatingPointError) as err:
    logging.getLogger(__name__).critical("cannot start: %s", err)
    sys.exit(3)  # gunicorn's WORKER_BOOT_ERROR

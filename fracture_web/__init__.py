"""Fracture-detection assistant: a Flask app around a SavedModel (a decision aid, not a diagnosis)."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from . import config
from .config import PROJECT_ROOT, WEB, Settings
from .quiet_logs import withhold_quoted_values

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)


def create_app(test_config: dict | None = None, environ: Mapping[str, str] | None = None,
               settings: Settings | None = None) -> Flask:
    """Application factory: settings, the model extension, the reads' store, blueprints and error handlers.

    Settings come from the defaults, then an optional instance ``config.py``, then the
    ``FRACTURE_*`` variables (``settings``, else read from ``environ``, else from the process's
    environment), then ``test_config``; each is read by its kind (``fracture_web.config``), and a
    malformed one raises ``SettingsError`` naming it. Flask is imported here, not at package import,
    so the training and command-line tools (which import ``fracture_web.imaging`` and friends) do
    not need it.
    """
    from flask import Flask

    from .web import (access, audit, camera, csrf, errors, extension, jsonprovider, monitoring, reads, security, site,
                      uploads, views)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    withhold_quoted_values()  # pydicom quotes a header's values (a name, a birth date) in its warnings
    settings = Settings.from_environ(environ) if settings is None else settings
    app = Flask(__name__, instance_relative_config=True,
                template_folder=str(PROJECT_ROOT / "templates"),
                static_folder=str(PROJECT_ROOT / "static"))
    app.config.from_mapping(config.defaults(WEB))
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_mapping(settings.given_to(WEB))
    if test_config:
        app.config.from_mapping(test_config)
    app.config.from_mapping(config.check(app.config))
    settings.warn_unknown(log)

    jsonprovider.init_app(app)
    extension.init_app(app)
    audit.init_app(app)
    # Counted before any later hook can refuse the request.
    monitoring.init_app(app)
    # Request hooks run in this order: refuse cross-site POSTs and requests without the API token
    # before reading their body, read the body (in memory, within a deadline), then check the
    # form's CSRF token.
    security.init_app(app)
    access.init_app(app)
    uploads.init_app(app)
    csrf.init_app(app)
    errors.init_app(app)
    app.register_blueprint(views.bp)
    app.register_blueprint(camera.bp)  # the camera page; its frames go through the upload form's view
    # The readers' side: their reads kept in the store (``DATABASE_URL``), and the site page from them.
    reads.init_app(app)
    site.init_app(app)
    return app

"""Fracture-detection assistant: a Flask app around a SavedModel (a decision aid, not a diagnosis)."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .config import PROJECT_ROOT, defaults

if TYPE_CHECKING:
    from flask import Flask


def create_app(test_config: dict | None = None) -> Flask:
    """Application factory: config, the model extension, blueprints and error handlers.

    Flask is imported here, not at package import, so the training and command-line
    tools (which import ``fracture_web.imaging`` and friends) do not need it.
    """
    from flask import Flask

    from .web import audit, csrf, errors, extension, jsonprovider, monitoring, security, uploads, views

    app = Flask(__name__, instance_relative_config=True,
                template_folder=str(PROJECT_ROOT / "templates"),
                static_folder=str(PROJECT_ROOT / "static"))
    app.config.from_mapping(defaults())
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env("FRACTURE")
    if test_config:
        app.config.from_mapping(test_config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    jsonprovider.init_app(app)
    extension.init_app(app)
    audit.init_app(app)
    # Counted before any later hook can refuse the request.
    monitoring.init_app(app)
    # Request hooks run in this order: refuse cross-site POSTs before reading their body,
    # read the body (in memory, with a timeout), then check the form's CSRF token.
    security.init_app(app)
    uploads.init_app(app)
    csrf.init_app(app)
    errors.init_app(app)
    app.register_blueprint(views.bp)
    return app

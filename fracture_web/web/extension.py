"""The model as a Flask extension: loaded and warmed up once per worker process."""
from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, current_app

from ..inference import FractureModel

log = logging.getLogger(__name__)
KEY = "fracture_model"


def init_app(app: Flask) -> None:
    """Load the model named by ``MODEL_DIR`` into ``app.extensions`` (unless ``LOAD_MODEL`` is off).

    A missing or broken model raises ``ModelLoadError`` here, so a worker fails
    fast at start-up instead of answering requests without a model.
    """
    app.extensions[KEY] = None
    if not app.config["LOAD_MODEL"]:
        return
    model = FractureModel(Path(app.config["MODEL_DIR"]), app.config["OPERATING_POINT"],
                          backend=app.config["BACKEND"], tflite_file=app.config["TFLITE_FILE"],
                          threads=app.config["THREADS"])
    model.warm_up()
    app.extensions[KEY] = model
    log.info("model %s loaded from %s (%s)", model.version, app.config["MODEL_DIR"], model.backend)


def get_model() -> FractureModel | None:
    """The current app's model, or None when it is not loaded."""
    return current_app.extensions.get(KEY)

"""The model as a Flask extension: loaded and warmed up once per worker process."""
from __future__ import annotations

from flask import Flask, current_app

from ..inference import FractureModel, load_model

KEY = "fracture_model"


def init_app(app: Flask) -> None:
    """Load the model named by ``MODEL_DIR`` into ``app.extensions`` (unless ``LOAD_MODEL`` is off).

    A missing or broken model raises ``ModelLoadError`` here, so a worker fails
    fast at start-up instead of answering requests without a model.
    """
    app.extensions[KEY] = None
    if not app.config["LOAD_MODEL"]:
        return
    app.extensions[KEY] = load_model(app.config["MODEL_DIR"], app.config["OPERATING_POINT"],
                                     backend=app.config["BACKEND"], tflite_file=app.config["TFLITE_FILE"],
                                     threads=app.config["THREADS"])


def get_model() -> FractureModel | None:
    """The current app's model, or None when it is not loaded."""
    return current_app.extensions.get(KEY)

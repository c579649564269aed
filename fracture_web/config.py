"""Default settings. Each can be overridden by an environment variable with the
``FRACTURE_`` prefix (e.g. ``FRACTURE_MODEL_DIR``), read by ``create_app``."""
from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: The runtime the model is served with unless ``BACKEND`` says otherwise: LiteRT where the model
#: folder's .tflite file is a verified stand-in for its SavedModel, else TensorFlow (runtimes.resolve_backend).
DEFAULT_BACKEND = "auto"
#: The LiteRT file served by default, written by scripts/export_tflite.py beside the SavedModel.
DEFAULT_TFLITE_FILE = "model_float32.tflite"


def defaults() -> dict:
    """Fresh defaults for one app instance."""
    return {
        # Folder with the SavedModel and metadata.json.
        "MODEL_DIR": str(PROJECT_ROOT / "model"),
        # Runtime: "auto" (the .tflite file where its parity report vouches for it, else the SavedModel),
        # "tensorflow" (the SavedModel) or "litert" (the .tflite file, no TensorFlow needed).
        "BACKEND": DEFAULT_BACKEND,
        # The .tflite file in MODEL_DIR that the litert and auto backends serve (training's export writes it).
        "TFLITE_FILE": DEFAULT_TFLITE_FILE,
        # Cores one image may use; None = every core this process may run on (latency first).
        "THREADS": None,
        # Load (and warm up) the model when the app is created; False only in tests.
        "LOAD_MODEL": True,
        # Operating point used when a request names none; None = the model's own default.
        "OPERATING_POINT": None,
        # Seconds a client may pause while sending an upload before it gets 408.
        "UPLOAD_TIMEOUT": 30,
        # Most files one study may have (the page's several views, POST /api/v1/studies).
        "MAX_STUDY_IMAGES": 8,
        # Largest upload accepted, in bytes (larger gets 413); for a study, all its files together.
        "MAX_CONTENT_LENGTH": 32 * 1024 * 1024,
        # Longest side of the images shown on the result page.
        "DISPLAY_MAX_SIDE": 640,
        # File for the audit trail (one JSON line per prediction); None = stdout.
        "AUDIT_LOG": None,
        # Signs the upload form's CSRF token. Unset: a random key generated once per install
        # in the instance folder (instance/secret_key), shared by all workers.
        "SECRET_KEY": None,
        # The only cookie: a random CSRF token for the form. Set FRACTURE_SESSION_COOKIE_SECURE=true
        # when the app is served over HTTPS (behind nginx).
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": False,
        # When set, the JSON API requires "Authorization: Bearer <API_TOKEN>"; the page does not.
        "API_TOKEN": None,
        # Serve Prometheus metrics at /metrics; "off" (or false) answers 404 there. When on, keep
        # /metrics off the public path at the reverse proxy (README, Operations: metrics).
        "METRICS": "on",
        # Images in the drift signal's window (the share of fractured verdicts over the last N).
        "METRICS_DRIFT_WINDOW": 200,
    }

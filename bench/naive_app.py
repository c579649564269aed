"""The naive baseline for bench/benchmark.py: how hobby fracture apps serve a model. NOT the product.

    python -m bench.naive_app --port 5001 [--model model/]

Deliberately written the usual hobby way, so the benchmark can show what the product's design
buys on the same weights and images: a single Flask development-server process, the Keras model
built and loaded at import, preprocessing inside the view, ``model.predict()`` per request, the
heatmap blended with OpenCV defaults and a default-compression PNG. (It is the one Flask app
outside ``fracture_web.web``, and the one place that preprocesses on its own: that is the point.)

The weights are the shipped model's own: the Keras network is rebuilt from
``fracture_web.training.network`` and its variables restored from ``model/variables`` (the
SavedModel's checkpoint), so nothing outside the repository is needed. Same response shape as
``/api/v1/predict?heatmap=1`` (label, probability, heatmap_png), plus ``/healthz`` for the
benchmark's readiness probe.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from flask import Flask, jsonify, request  # noqa: E402

from fracture_web.training.checkpoint import recipe_of  # noqa: E402
from fracture_web.training.network import HEAD, build_network  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--port", type=int, default=5001)
parser.add_argument("--model", type=Path, default=ROOT / "model")
args = parser.parse_args()

# Model loaded at import, the hobby way.
metadata = json.loads((args.model / "metadata.json").read_text())
SLOPE, INTERCEPT = metadata["calibration"]["slope_intercept"]
NEGATIVE, POSITIVE = metadata["labels"]
THRESHOLD = metadata["operating_points"][metadata["default_operating_point"]]["threshold"]
# An ensemble's networks (metadata's members) are each run on their own input and their logits averaged.
recipes = [recipe_of(m["training"]) for m in metadata["training"].get("members", [])] or [recipe_of(metadata["training"])]
models = [build_network(r.image_size, imagenet=False, backbone=r.backbone) for r in recipes]
tf.train.Checkpoint(network=models[0], members=models[1:]).restore(
    str(args.model / "variables" / "variables")).assert_nontrivial_match()
kernel = models[0].get_layer(HEAD).kernel.numpy()[:, 0]

app = Flask(__name__)


@app.route("/healthz")
def healthz():
    return "ok"


@app.route("/api/v1/predict", methods=["POST"])
def predict():
    data = request.files["file"].read()
    # Preprocessing in the view: decode, stretch to the square input, scale to [0, 1].
    gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    outputs = [model.predict((cv2.resize(gray, model.input_shape[1:3]).astype("float32") / 255.0)[None, :, :, None],
                             verbose=0) for model in models]
    logit = np.mean([output[0][0, 0] for output in outputs])
    features = outputs[0][1]  # any further output is unused
    probability = float(1 / (1 + np.exp(-(SLOPE * logit + INTERCEPT))))
    # Class activation map, upsampled onto the upload and blended.
    cam = np.maximum(features[0] @ kernel, 0)
    cam = cam / cam.max() if cam.max() > 0 else cam
    heat = cv2.applyColorMap(np.uint8(255 * cv2.resize(cam, gray.shape[::-1])), cv2.COLORMAP_JET)
    blended = cv2.addWeighted(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), 0.6, heat, 0.4, 0)
    png = cv2.imencode(".png", blended)[1].tobytes()
    label = POSITIVE if probability >= THRESHOLD else NEGATIVE
    return jsonify(label=label, probability=probability, heatmap_png=base64.b64encode(png).decode())


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=args.port)

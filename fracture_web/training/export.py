"""Write the trained network as a TensorFlow SavedModel whose ``serving_default``
signature returns the calibrated probability and the class activation map together.

This is the one step that needs the TensorFlow backend.
"""
from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

from .network import HEAD, inference_network
from .scope import Scope

INPUT_NAME = "image"


def _unit_peak(maps: tf.Tensor) -> tf.Tensor:
    """Each (h, w) map divided by its own peak, so the peak is 1; an all-zero map stays zero."""
    return tf.math.divide_no_nan(maps, tf.reduce_max(maps, axis=[1, 2], keepdims=True))


def export_savedmodel(network: keras.Model, platt: tuple[float, float], scope: Scope, out_dir: Path) -> None:
    """Export ``image (B, S, S, 1) float32 in [0, 1] -> {probability (B,), heatmap (B, h, w),
    cam (B, h32, w32), fracture_map (B, h, w), atypicality (B,)}``.

    ``fracture_map`` is the locator's probability of a fracture in each cell (stride 8) (trained on
    the radiologists' outlines); ``heatmap``, what the page overlays, is that map scaled so its peak
    is 1. ``cam`` is the class activation map of the fracture logit (for a GAP -> Dense head it
    equals Grad-CAM on the last feature map), ReLU'd and scaled the same way; an all-zero map
    stays zero. ``atypicality`` is the image's feature-space distance from the training images
    divided by the in-scope threshold: above 1 means "unlike what the model was trained on".

    The signature runs :func:`~.network.inference_network` (batch norm folded away); the trained
    network is saved beside it unchanged, so ``tf.train.Checkpoint(network=...)`` can still
    restore it from ``variables/`` (``bench/naive_app.py`` does).
    """
    size = network.input_shape[1]
    slope, intercept = (float(v) for v in platt)
    serving = inference_network(network)
    kernel = serving.get_layer(HEAD).kernel
    mean = tf.constant(scope.mean)
    projection = tf.constant(scope.projection)

    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        logit, features, map_logits = serving(image, training=False)
        probability = tf.sigmoid(slope * logit[:, 0] + intercept)
        cam = tf.nn.relu(tf.einsum("bhwc,c->bhw", features, tf.cast(kernel[:, 0], features.dtype)))
        fracture_map = tf.sigmoid(map_logits[..., 0])
        pooled = tf.reduce_mean(features, axis=[1, 2])
        distance = tf.norm(tf.matmul(pooled - mean, projection), axis=1)
        return {"probability": probability, "heatmap": _unit_peak(fracture_map), "cam": _unit_peak(cam),
                "fracture_map": fracture_map, "atypicality": distance / scope.threshold}

    # A plain tf.Module (keras.export.ExportArchive would store each network's variables twice).
    module = tf.Module()
    module.network = network
    module.serving_network = serving
    module.serve = tf.function(serve, input_signature=[
        tf.TensorSpec([None, size, size, 1], tf.float32, name=INPUT_NAME)])
    tf.saved_model.save(module, str(out_dir), signatures={"serving_default": module.serve})

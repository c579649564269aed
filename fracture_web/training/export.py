"""Write the trained network, or an ensemble of trained networks, as a TensorFlow SavedModel whose
``serving_default`` signature returns the calibrated probability and the maps together.

This is the one step that needs the TensorFlow backend.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import tensorflow as tf

from .network import HEAD, inference_network
from .scope import Scope

INPUT_NAME = "image"


def _unit_peak(maps: tf.Tensor) -> tf.Tensor:
    """Each (h, w) map divided by its own peak, so the peak is 1; an all-zero map stays zero."""
    return tf.math.divide_no_nan(maps, tf.reduce_max(maps, axis=[1, 2], keepdims=True))


def member_input(image: tf.Tensor, size: int) -> tf.Tensor:
    """The ensemble's input as a member of input ``size`` sees it: bilinearly resized where the
    sizes differ (the served graph and the calibration both resize this way)."""
    return image if image.shape[1] == size else tf.image.resize(image, (size, size), method="bilinear")


def _onto(maps: tf.Tensor, shape: tuple[int, int]) -> tf.Tensor:
    """(B, h, w) maps bilinearly resized onto a (B, *shape) grid (unchanged where it is that grid)."""
    if tuple(maps.shape[1:3]) == tuple(shape):
        return maps
    return tf.image.resize(maps[..., None], shape, method="bilinear")[..., 0]


def _member_outputs(serving: keras.Model, kernel, image: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """One member's fracture logit (B,), class activation map before its ReLU (B, h32, w32; its
    spatial mean is the logit less the bias), fracture map (B, h, w) and pooled features (B, C)."""
    logit, features, map_logits = serving(member_input(image, serving.input_shape[1]), training=False)
    cam = tf.einsum("bhwc,c->bhw", features, tf.cast(kernel[:, 0], features.dtype))
    return logit[:, 0], cam, tf.sigmoid(map_logits[..., 0]), tf.reduce_mean(features, axis=[1, 2])


def _mean(tensors: Sequence[tf.Tensor]) -> tf.Tensor:
    """The members' mean (a lone network's output as it is, adding no op to its graph)."""
    return tensors[0] if len(tensors) == 1 else tf.add_n(tensors) / len(tensors)


def export_savedmodel(networks: keras.Model | Sequence[keras.Model], platt: tuple[float, float], scope: Scope,
                      out_dir: Path, map_members: int | None = None) -> None:
    """Export ``image (B, S, S, 1) float32 in [0, 1] -> {probability (B,), heatmap (B, h, w),
    cam (B, h32, w32), fracture_map (B, h, w), atypicality (B,)}``.

    ``networks`` is one trained network or an ensemble of them; the first has the largest input
    (``S``), and each other member sees the input resized to its own size. The ensemble's logit is
    the mean of its members' logits, calibrated by ``platt``; its maps are the means of theirs on the first
    member's grids (its fracture map, that of the first ``map_members`` only, where given: the
    others' locators are then left out of the graph, and their cost with them).

    ``fracture_map`` is the locator's probability of a fracture in each cell (stride 8) (trained on
    the radiologists' outlines); ``heatmap``, what the page overlays, is that map scaled so its peak
    is 1. ``cam`` is the class activation map of the fracture logit (for a GAP -> Dense head it
    equals Grad-CAM on the last feature map; for an ensemble, that of the mean logit), ReLU'd and
    scaled the same way; an all-zero map stays zero. ``atypicality`` is the image's feature-space
    distance (the members' pooled features side by side) from the training images divided by the
    in-scope threshold: above 1 means "unlike what the model was trained on".

    The signature runs :func:`~.network.inference_network` of each member (batch norm folded away);
    the trained networks are saved beside it unchanged, so ``tf.train.Checkpoint(network=...)`` can
    still restore the first from ``variables/`` (``bench/naive_app.py`` does).
    """
    networks = [networks] if isinstance(networks, keras.Model) else list(networks)
    size = networks[0].input_shape[1]
    slope, intercept = (float(v) for v in platt)
    servings = [inference_network(network) for network in networks]
    kernels = [serving.get_layer(HEAD).kernel for serving in servings]
    mean = tf.constant(scope.mean)
    projection = tf.constant(scope.projection)

    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        logits, cams, maps, pooled = zip(*(_member_outputs(serving, kernel, image)
                                           for serving, kernel in zip(servings, kernels)))
        probability = tf.sigmoid(slope * _mean(logits) + intercept)
        cam = tf.nn.relu(_mean([_onto(one, cams[0].shape[1:3]) for one in cams]))
        fracture_map = _mean([_onto(one, maps[0].shape[1:3]) for one in maps[:map_members]])
        distance = tf.norm(tf.matmul(tf.concat(pooled, axis=1) - mean, projection), axis=1)
        return {"probability": probability, "heatmap": _unit_peak(fracture_map), "cam": _unit_peak(cam),
                "fracture_map": fracture_map, "atypicality": distance / scope.threshold}

    # A plain tf.Module (keras.export.ExportArchive would store each network's variables twice).
    module = tf.Module()
    module.network = networks[0]
    module.members = networks[1:]
    module.serving_networks = servings
    module.serve = tf.function(serve, input_signature=[
        tf.TensorSpec([None, size, size, 1], tf.float32, name=INPUT_NAME)])
    tf.saved_model.save(module, str(out_dir), signatures={"serving_default": module.serve})

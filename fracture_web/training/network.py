"""The fracture classifier: EfficientNet-Lite0 (ImageNet start) -> GAP -> one logit.

Backend-agnostic Keras 3 (trains on TensorFlow or JAX). The network has two
outputs, the fracture logit and the last feature map, so the export can compute
the class activation map (Grad-CAM of a GAP -> Dense head) without layer names.
"""
from __future__ import annotations

import keras
from keras import layers

from .efficientnet_lite import build_efficientnet_lite0, fold_batch_norm, load_lite0_imagenet_weights
from .torch_weights import lite0_weights_path, read_torch_state_dict

BACKBONE = "backbone"
HEAD = "fracture_logit"


def build_network(input_size: int, imagenet: bool = True, dropout: float = 0.3) -> keras.Model:
    """(input_size, input_size, 1) image in [0, 1] -> [logit (B, 1), features (B, h, w, 1280)]."""
    image = keras.Input((input_size, input_size, 1), name="image")
    # The ImageNet weights expect three channels in [-1, 1].
    signed = layers.Rescaling(2.0, offset=-1.0, name="to_signed")(image)
    rgb = layers.Concatenate(name="to_rgb")([signed, signed, signed])
    backbone = build_efficientnet_lite0((input_size, input_size, 3), include_top=False, name=BACKBONE)
    if imagenet:
        load_lite0_imagenet_weights(backbone, read_torch_state_dict(lite0_weights_path()))
    features = backbone(rgb)
    pooled = layers.GlobalAveragePooling2D(name="pool")(features)
    dropped = layers.Dropout(dropout, name="dropout")(pooled)
    logit = layers.Dense(1, name=HEAD)(dropped)
    return keras.Model(image, [logit, features], name="fracture_net")


def inference_network(network: keras.Model) -> keras.Model:
    """The trained ``network`` rebuilt for serving: the same outputs from the same weights, with
    batch norm folded into the convolutions and the grey-to-RGB copy folded into the stem.

    Equal to ``network(image, training=False)`` up to float rounding, in about a quarter less time
    on TensorFlow's CPU runtime, which runs Keras 3's batch norm as separate element-wise ops.
    """
    size = network.input_shape[1]
    image = keras.Input((size, size, 1), name="image")
    signed = layers.Rescaling(2.0, offset=-1.0, name="to_signed")(image)
    backbone = build_efficientnet_lite0((size, size, 1), include_top=False, name=BACKBONE, batch_norm=False)
    fold_batch_norm(network.get_layer(BACKBONE), backbone)
    features = backbone(signed)
    pooled = layers.GlobalAveragePooling2D(name="pool")(features)
    head = layers.Dense(1, name=HEAD)
    logit = head(pooled)
    head.set_weights(network.get_layer(HEAD).get_weights())
    return keras.Model(image, [logit, features], name="fracture_net_inference")


def classifier(network: keras.Model) -> keras.Model:
    """The logit-only view of the network, for training and scoring."""
    return keras.Model(network.input, network.outputs[0], name="fracture_classifier")


def set_trainable_from(network: keras.Model, first_block: int | None) -> int:
    """Freeze the backbone below ``block{first_block}``; ``None`` freezes it all, 0 trains all.

    Returns the number of trainable backbone layers. Frozen BatchNorm layers run in
    inference mode (Keras 3 semantics), which is what fine-tuning wants.
    """
    backbone = network.get_layer(BACKBONE)
    backbone.trainable = True
    trainable = 0
    reached = first_block == 0
    for layer in backbone.layers:
        if first_block and layer.name.startswith(f"block{first_block}"):
            reached = True
        layer.trainable = reached and first_block is not None
        trainable += int(layer.trainable and bool(layer.weights))
    return trainable

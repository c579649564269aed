"""Augmentation that suits radiographs, as a backend-agnostic Keras PyDataset.

Small rotations and shifts, scale jitter (a crop or zoom-out), horizontal flips,
brightness/contrast and gamma. No colour jitter: radiographs are grayscale.
"""
from __future__ import annotations

import math

import cv2
import keras
import numpy as np


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random, label-preserving variation of a (S, S, 1) [0, 1] model input."""
    size = image.shape[0]
    angle = rng.uniform(-12.0, 12.0)
    scale = rng.uniform(0.9, 1.15)
    shift = rng.uniform(-0.06, 0.06, size=2) * size
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    matrix[:, 2] += shift
    out = cv2.warpAffine(image[..., 0], matrix, (size, size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    # Exposure: gamma, then contrast and brightness, kept in [0, 1].
    out = np.power(np.clip(out, 0.0, 1.0), rng.uniform(0.8, 1.25))
    out = (out - 0.5) * rng.uniform(0.85, 1.15) + 0.5 + rng.uniform(-0.08, 0.08)
    return np.clip(out, 0.0, 1.0).astype(np.float32)[..., np.newaxis]


class AugmentedImages(keras.utils.PyDataset):
    """Batches of (augmented images, labels, sample weights), reshuffled every epoch."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int,
                 class_weight: dict[int, float], seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.images, self.labels, self.batch_size = images, labels.astype(np.float32), batch_size
        self.weights = np.array([class_weight[int(y)] for y in labels], dtype=np.float32)
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(labels))

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        rng = np.random.default_rng(self.rng.integers(1 << 31) + index)
        batch = np.stack([augment(self.images[i], rng) for i in rows])
        return batch, self.labels[rows, None], self.weights[rows]

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.labels))

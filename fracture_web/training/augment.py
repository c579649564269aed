"""Augmentation that suits radiographs from many sites, as a backend-agnostic Keras PyDataset.

Geometry (small rotations, shifts, scale jitter, flips and turns by multiples of 90 degrees, as
radiographs reach a PACS in any orientation) moves the image and its fracture-outline mask together; the site shifts of :mod:`fracture_web.shifts` (resolution,
JPEG, gamma, contrast, CLAHE, equalisation, noise, blur, borders, burnt-in text, 12-bit
windows, and phone photos of a film or a monitor) then change only how the image is rendered, followed by a small exposure jitter.
No colour jitter: radiographs are grayscale.
"""
from __future__ import annotations

import math

import cv2
import keras
import numpy as np

from ..shifts import random_site_shift

#: How strongly a cell's outline coverage counts: a cell a third covered is a full target.
COVERAGE_GAIN = 3.0


def augment(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
            site_shift_probability: float = 0.5, orientation_probability: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """One random, label-preserving variation of a (S, S, 1) [0, 1] model input and its (S, S) mask."""
    size = image.shape[0]
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(-12.0, 12.0), rng.uniform(0.85, 1.15))
    matrix[:, 2] += rng.uniform(-0.06, 0.06, size=2) * size
    out = cv2.warpAffine(image[..., 0], matrix, (size, size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    mask = cv2.warpAffine(mask, matrix, (size, size), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if rng.random() < 0.5:
        out, mask = out[:, ::-1], mask[:, ::-1]
    if rng.random() < orientation_probability:  # with the flip: every orientation of the square
        turns = int(rng.integers(1, 4))
        out, mask = np.rot90(out, turns), np.rot90(mask, turns)
    out = random_site_shift(np.ascontiguousarray(out), rng, site_shift_probability)
    # Exposure: gamma, then contrast and brightness, kept in [0, 1].
    out = np.power(np.clip(out, 0.0, 1.0), rng.uniform(0.8, 1.25))
    out = (out - 0.5) * rng.uniform(0.85, 1.15) + 0.5 + rng.uniform(-0.08, 0.08)
    return np.clip(out, 0.0, 1.0).astype(np.float32)[..., np.newaxis], np.ascontiguousarray(mask)


def map_target(mask: np.ndarray, cells: int) -> np.ndarray:
    """The fracture map's target: each of ``cells`` x ``cells`` cells' outline coverage, amplified
    by :data:`COVERAGE_GAIN` and capped at 1, flattened row by row to (cells * cells,) float32."""
    coverage = cv2.resize(mask.astype(np.float32), (cells, cells), interpolation=cv2.INTER_AREA)
    return np.minimum(1.0, COVERAGE_GAIN * coverage).reshape(-1)


class AugmentedImages(keras.utils.PyDataset):
    """Batches of (augmented images, [labels, map targets], [class weights, map weights]), reshuffled every epoch.

    ``masks`` (N, S, S) uint8 are the fracture outlines over the model inputs; ``map_weights`` (N,)
    is 0 for images whose outlines are unknown (their map is not trained), else 1.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, masks: np.ndarray, map_weights: np.ndarray,
                 cells: int, batch_size: int, class_weight: dict[int, float], seed: int = 0,
                 site_shift_probability: float = 0.5, orientation_probability: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.site_shift_probability, self.orientation_probability = site_shift_probability, orientation_probability
        self.images, self.masks, self.cells = images, masks, cells
        self.labels, self.batch_size = labels.astype(np.float32), batch_size
        self.weights = np.array([class_weight[int(y)] for y in labels], dtype=np.float32)
        self.map_weights = (self.weights * map_weights).astype(np.float32)
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(labels))

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        rng = np.random.default_rng(self.rng.integers(1 << 31) + index)
        pairs = [augment(self.images[i], self.masks[i], rng, self.site_shift_probability,
                         self.orientation_probability) for i in rows]
        batch = np.stack([image for image, _ in pairs])
        maps = np.stack([map_target(mask, self.cells) for _, mask in pairs])
        return batch, (self.labels[rows, None], maps), (self.weights[rows], self.map_weights[rows])

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.labels))

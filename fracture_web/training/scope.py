"""Is an image like the training radiographs? A Mahalanobis distance in feature space.

The network's pooled features of the training images are summarised by their mean and a
Ledoit-Wolf shrunk covariance; an image whose Mahalanobis distance from that cloud exceeds
what 99% of the validation images reach is flagged, so the app can warn that it is outside what the model was trained on
(another body part, a photograph, a screenshot...). numpy + scikit-learn; backend-agnostic.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from sklearn.covariance import LedoitWolf

from ..evaluation.calibration import IN_SCOPE_QUANTILE



@dataclass(frozen=True)
class Scope:
    """Mahalanobis distance ``|| (x - mean) @ projection ||``, flagged above ``threshold``.

    ``projection`` is the Cholesky factor of the precision matrix (precision = L @ L.T).
    """

    mean: np.ndarray        # (features,)
    projection: np.ndarray  # (features, features)
    threshold: float

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Distance of each row of pooled features from the training cloud."""
        return np.linalg.norm((features - self.mean) @ self.projection, axis=1)

    def save(self, path: Path) -> None:
        np.savez(path, mean=self.mean, projection=self.projection, threshold=self.threshold)

    @classmethod
    def load(cls, path: Path) -> "Scope":
        with np.load(path) as data:
            return cls(data["mean"], data["projection"], float(data["threshold"]))


def fit_scope(train_features: np.ndarray, val_features: np.ndarray) -> Scope:
    """Fit on the training features; set the threshold on held-out validation features.

    Ledoit-Wolf shrinkage keeps the 1280 x 1280 covariance well conditioned with a few
    thousand images. (A 64-component whitened PCA, tried first, ignored what lies outside
    its subspace and missed noise and text screenshots.)
    """
    estimate = LedoitWolf().fit(train_features.astype(np.float64))
    projection = np.linalg.cholesky(estimate.precision_).astype(np.float32)
    unthresholded = Scope(estimate.location_.astype(np.float32), projection, float("inf"))
    threshold = float(np.quantile(unthresholded.distance(val_features), IN_SCOPE_QUANTILE))
    return Scope(unthresholded.mean, projection, threshold)


def logits_and_features(network: keras.Model, images: np.ndarray,
                        batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """One forward pass: the fracture logits (B,) and the globally pooled last feature map
    (B, channels), which is what the fracture head sees."""
    logits, features, _fracture_map = network.predict(images, batch_size=batch_size, verbose=0)
    return logits[:, 0], features.mean(axis=(1, 2))

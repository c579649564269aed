"""The training recipe: head first on a frozen backbone, then fine-tune the top
blocks, keeping the weights of the epoch with the best validation AUC."""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import keras
import numpy as np

from .augment import AugmentedImages
from .network import build_network, classifier, set_trainable_from

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Recipe settings; the defaults train on 2 CPU cores in about an hour (see README)."""

    image_size: int = 384
    epochs: int = 9
    head_epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 3e-4
    unfreeze_from_block: int = 3
    patience: int = 4
    seed: int = 0
    imagenet: bool = True

    def as_dict(self) -> dict:
        """Plain dict for metadata.json."""
        return asdict(self)


class EpochSummary(keras.callbacks.Callback):
    """One log line per epoch: losses, validation AUC, best so far, seconds."""

    def __init__(self, phase: str, total_epochs: int) -> None:
        super().__init__()
        self.phase, self.total, self.best, self.started = phase, total_epochs, 0.0, 0.0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = logs or {}
        self.best = max(self.best, logs.get("val_auc", 0.0))
        log.info("%s epoch %d/%d  loss %.4f  val_loss %.4f  val_auc %.4f  (best %.4f)  %.0f s",
                 self.phase, epoch + 1, self.total, logs.get("loss", float("nan")),
                 logs.get("val_loss", float("nan")), logs.get("val_auc", float("nan")),
                 self.best, time.monotonic() - self.started)


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Balanced weights so both classes contribute equally to the loss."""
    counts = np.bincount(labels, minlength=2).astype(float)
    return {c: float(len(labels) / (2 * counts[c])) for c in (0, 1)}


def _fit(model: keras.Model, data: AugmentedImages, val: tuple, epochs: int, rate: float,
         phase: str, patience: int) -> keras.callbacks.History:
    # Cosine decay from ``rate`` to zero over the phase's planned steps.
    schedule = keras.optimizers.schedules.CosineDecay(rate, decay_steps=max(1, epochs * len(data)))
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=[keras.metrics.AUC(from_logits=True, name="auc")])
    stop = keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=patience,
                                         restore_best_weights=True)
    return model.fit(data, validation_data=val, epochs=epochs, verbose=1,
                     # The progress bar first, so each summary line starts on a line of its own.
                     callbacks=[stop, keras.callbacks.ProgbarLogger(), EpochSummary(phase, epochs)])


def train(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
          config: TrainConfig) -> tuple[keras.Model, dict]:
    """Train the network; returns it (best validation-AUC weights) and the per-epoch history."""
    keras.utils.set_random_seed(config.seed)
    network = build_network(config.image_size, imagenet=config.imagenet)
    model = classifier(network)
    data = AugmentedImages(train_x, train_y, config.batch_size, class_weights(train_y), seed=config.seed)
    val = (val_x, val_y[:, None].astype(np.float32))
    history = {}
    set_trainable_from(network, None)
    if config.head_epochs:
        history["head"] = _fit(model, data, val, config.head_epochs, config.learning_rate, "head",
                               config.patience).history
    set_trainable_from(network, config.unfreeze_from_block)
    fine_epochs = config.epochs - config.head_epochs
    if fine_epochs > 0:
        history["fine_tune"] = _fit(model, data, val, fine_epochs, config.fine_tune_learning_rate,
                                    "fine-tune", config.patience).history
    return network, {k: {m: [float(x) for x in v] for m, v in h.items()} for k, h in history.items()}

"""The training recipe: heads first on a frozen backbone, then fine-tune the top blocks,
keeping the weights of the epoch with the best validation AUC. Two losses: the fracture
logit's (binary cross-entropy, classes balanced) and the fracture map's (focal loss against
the radiologists' outlines), so the classifier's features are those that find the fracture."""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np

from ..datasets import Split
from ..outlines import Outlines, mask_in_model_input
from .augment import AugmentedImages, map_target
from .network import build_network, restore_from_savedmodel, set_trainable_from, trainable_outputs
from .progress import VAL_AUC, RunProgress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Recipe settings; the defaults are the shipped model's recipe (why, and what it measured: docs/model.md)."""

    image_size: int = 384
    #: The EfficientNet-Lite backbone: "lite0", "lite1" or "lite2".
    backbone: str = "lite1"
    epochs: int = 12
    head_epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 3e-4
    unfreeze_from_block: int = 3
    patience: int = 4
    seed: int = 0
    imagenet: bool = True
    #: Weight of the fracture map's loss against the classifier's (0 trains the classifier alone).
    localisation_weight: float = 5.0
    #: Share of training images that get one or two site shifts (resolution, JPEG, gamma ...).
    site_shift_probability: float = 0.5
    #: Share of training images turned by a multiple of 90 degrees (besides the flips of half of them).
    orientation_probability: float = 0.5
    #: A model folder to start from instead of ImageNet (a warm start on a site's own images).
    init_from: str | None = None

    def as_dict(self) -> dict:
        """Plain dict for metadata.json."""
        return asdict(self)


@dataclass
class Examples:
    """Model inputs with their labels and fracture outlines (masks over the inputs)."""

    images: np.ndarray  # (N, S, S, 1) float32 in [0, 1]
    labels: np.ndarray  # (N,) 0 or 1
    masks: np.ndarray  # (N, S, S) uint8, 1 inside an outline
    map_weights: np.ndarray  # (N,) 1 where the outlines are known (every negative, outlined positives), else 0

    @classmethod
    def of(cls, split: Split, outlines: Outlines | None, root: Path) -> "Examples":
        """A split's inputs with the masks of their outlines (``root``: the folder the outline file
        names are relative to). Without outlines no map is trained (every map weight 0)."""
        size = split.images.shape[1]
        masks = np.zeros(split.images.shape[:3], np.uint8)
        known = np.zeros(len(split.labels), np.float32)
        for i, (path, label) in enumerate(zip(split.records.paths, split.labels)):
            outlined = outlines.of(path, root) if outlines is not None else None
            if outlined is not None:
                polygons, (height, width) = outlined
                masks[i] = mask_in_model_input(polygons, height, width, size)
            known[i] = outlines is not None and (label == 0 or outlined is not None)
        return cls(split.images, split.labels, masks, known)

    def map_targets(self, cells: int) -> np.ndarray:
        """The fracture map's targets without augmentation (for validation)."""
        return np.stack([map_target(mask, cells) for mask in self.masks])


class EpochSummary(keras.callbacks.Callback):
    """One log line per epoch: losses, validation AUC, best so far, seconds."""

    def __init__(self, phase: str, total_epochs: int) -> None:
        super().__init__()
        self.phase, self.total, self.best, self.started = phase, total_epochs, 0.0, 0.0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = logs or {}
        self.best = max(self.best, logs.get(VAL_AUC, 0.0))
        log.info("%s epoch %d/%d  loss %.4f (map %.4f)  val_loss %.4f (map %.4f)  val_auc %.4f  (best %.4f)  %.0f s",
                 self.phase, epoch + 1, self.total, logs.get("loss", float("nan")),
                 logs.get("fracture_map_cells_loss", float("nan")), logs.get("val_loss", float("nan")),
                 logs.get("val_fracture_map_cells_loss", float("nan")), logs.get(VAL_AUC, float("nan")),
                 self.best, time.monotonic() - self.started)


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Balanced weights so both classes contribute equally to the loss."""
    counts = np.bincount(labels, minlength=2).astype(float)
    return {c: float(len(labels) / (2 * counts[c])) for c in (0, 1)}


def _compile(model: keras.Model, schedule, localisation_weight: float) -> None:
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
                  loss=[keras.losses.BinaryCrossentropy(from_logits=True),
                        keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.75, gamma=2.0,
                                                             from_logits=True)],
                  loss_weights=[1.0, localisation_weight],
                  metrics=[[keras.metrics.AUC(from_logits=True, name="auc")], []])


def _fit(model: keras.Model, data: AugmentedImages, val: tuple, epochs: int, rate: float,
         phase: str, config: TrainConfig, progress: RunProgress) -> dict:
    """One phase: ``epochs`` at most, stopped early and ended on its best epoch's weights; a phase
    that finished before an interruption is restored instead of trained again."""
    if progress.restore_finished(phase, model):
        return progress.history(phase)
    # Cosine decay from ``rate`` to zero over the phase's planned steps.
    schedule = keras.optimizers.schedules.CosineDecay(rate, decay_steps=max(1, epochs * len(data)))
    _compile(model, schedule, config.localisation_weight)
    model.fit(data, validation_data=val, epochs=epochs, verbose=1,
              # The progress bar first, so each summary line starts on a line of its own.
              callbacks=[*progress.callbacks(phase, config.patience), keras.callbacks.ProgbarLogger(),
                         EpochSummary(phase, epochs)])
    progress.finish(phase, model)
    return progress.history(phase)


def train(examples: Examples, val: Examples, config: TrainConfig, progress: RunProgress) -> tuple[keras.Model, dict]:
    """Train the network, saving its progress every epoch; returns it (best validation-AUC
    weights) and the per-epoch history of the phases trained in this call."""
    keras.utils.set_random_seed(config.seed)
    network = build_network(config.image_size, imagenet=config.imagenet and not config.init_from,
                            backbone=config.backbone)
    if config.init_from:
        restore_from_savedmodel(network, Path(config.init_from))
    model = trainable_outputs(network)
    cells = int(network.outputs[2].shape[1])
    data = AugmentedImages(examples.images, examples.labels, examples.masks, examples.map_weights, cells,
                           config.batch_size, class_weights(examples.labels), seed=config.seed,
                           site_shift_probability=config.site_shift_probability,
                           orientation_probability=config.orientation_probability)
    validation = (val.images, (val.labels[:, None].astype(np.float32), val.map_targets(cells)),
                  (np.ones(len(val.labels), np.float32), val.map_weights.astype(np.float32)))
    history = {}
    set_trainable_from(network, None)
    if config.head_epochs:
        history["head"] = _fit(model, data, validation, config.head_epochs, config.learning_rate, "head",
                               config, progress)
    set_trainable_from(network, config.unfreeze_from_block)
    fine_epochs = config.epochs - config.head_epochs
    if fine_epochs > 0:
        history["fine_tune"] = _fit(model, data, validation, fine_epochs, config.fine_tune_learning_rate,
                                    "fine-tune", config, progress)
    return network, {k: {m: [float(x) for x in v] for m, v in h.items()} for k, h in history.items()}

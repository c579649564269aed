"""Train -> calibrate -> checkpoint: the network's weights, the in-scope detector and a summary
(calibration, thresholds, validation metrics) in one folder. Runs on any Keras backend."""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import keras

from ..datasets import load_split, read_records
from ..evaluation.diagnostic_accuracy import to_json
from ..outlines import outlines_beside
from .calibration import calibrate
from .network import DEFAULT_BACKBONE, build_network
from .progress import RunProgress
from .scope import fit_scope, logits_and_features
from .splits import split_train_val, subsample
from .train import Examples, TrainConfig, train

log = logging.getLogger(__name__)

#: The files of a checkpoint folder.
WEIGHTS = "network.weights.h5"
SUMMARY = "summary.json"
SCOPE = "scope.npz"
PROGRESS = "progress"


def fit_and_checkpoint(data_dir: Path, config: TrainConfig, checkpoint_dir: Path, limit: int = 0,
                       resume: bool = False) -> dict:
    """Train on ``data_dir``; save the best weights and a summary (calibration, thresholds, metrics).
    Progress is saved every epoch under ``checkpoint_dir/progress``; ``resume`` carries on from it."""
    progress = RunProgress(checkpoint_dir / PROGRESS, {**config.as_dict(), "limit": limit}, resume)
    started = time.monotonic()
    train_rec, val_rec = split_train_val(read_records(data_dir), seed=config.seed)
    train_rec, val_rec = subsample(train_rec, limit, config.seed), subsample(val_rec, limit // 2, config.seed)
    log.info("train %d images (%d fractured), validation %d (%d fractured)", len(train_rec),
             train_rec.labels.sum(), len(val_rec), val_rec.labels.sum())
    train_split, val_split = load_split(train_rec, config.image_size), load_split(val_rec, config.image_size)
    outlines = outlines_beside(data_dir)
    log.info("fracture outlines: %s", f"{len(outlines)} outlined images" if outlines else "none (map not trained)")
    progress.begin()
    network, history = train(Examples.of(train_split, outlines, data_dir), Examples.of(val_split, outlines, data_dir),
                             config, progress)
    logits, val_features = logits_and_features(network, val_split.images)  # one pass for both
    summary = calibrate(val_split, logits)
    scope = fit_scope(logits_and_features(network, train_split.images)[1], val_features)
    summary.update(config=config.as_dict(), history=history, data_dir=str(data_dir),
                   n_train=len(train_split.labels), n_val=len(val_split.labels),
                   trained_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   keras_backend=keras.backend.backend(),
                   wall_time_min=round((time.monotonic() - started) / 60, 1), resumed=progress.resumed)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    network.save_weights(checkpoint_dir / WEIGHTS)
    scope.save(checkpoint_dir / SCOPE)
    (checkpoint_dir / SUMMARY).write_text(to_json(summary))
    progress.remove()
    return summary


def add_scope(checkpoint_dir: Path, data_dir: Path) -> None:
    """Fit the in-scope detector for a checkpoint trained before it existed (needs the data)."""
    summary, network = load_checkpoint(checkpoint_dir)
    config = recipe_of(summary)
    train_rec, val_rec = split_train_val(read_records(data_dir), seed=config.seed)
    features = [logits_and_features(network, load_split(rec, config.image_size).images)[1]
                for rec in (train_rec, val_rec)]
    fit_scope(*features).save(checkpoint_dir / SCOPE)


def load_checkpoint(checkpoint_dir: Path) -> tuple[dict, keras.Model]:
    """The checkpoint's summary and its network, rebuilt with the trained weights."""
    summary = json.loads((checkpoint_dir / SUMMARY).read_text())
    config = recipe_of(summary)
    network = build_network(config.image_size, imagenet=False, backbone=config.backbone)
    network.load_weights(checkpoint_dir / WEIGHTS)
    return summary, network


def recipe_of(summary: dict) -> TrainConfig:
    """The recipe a checkpoint was trained with (those from before the backbone was a choice used Lite0,
    and no turns)."""
    return TrainConfig(**{"backbone": DEFAULT_BACKBONE, "orientation_probability": 0.0, **summary["config"]})

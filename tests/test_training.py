"""The ML engineer's story: read a dataset, train a small model, calibrate, choose operating points."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from fracture_web.datasets import DatasetError, read_records
from fracture_web.evaluation.calibration import choose_operating_points, fit_platt
from fracture_web.evaluation.diagnostic_accuracy import confusion_rates, expected_calibration_error
from fracture_web.probability import sigmoid
from fracture_web.training.splits import split_train_val
from fracture_web.training.workflow import LABELS

from helpers import FRACATLAS, run_script


def test_training_script_writes_a_servable_model_with_metadata(tiny_model_dir):
    metadata = json.loads((tiny_model_dir / "metadata.json").read_text())
    assert metadata["input_size"] == 64 and metadata["labels"] == list(LABELS)
    assert set(metadata["operating_points"]) == {"balanced", "high_sensitivity"}
    assert metadata["default_operating_point"] == "balanced"
    assert "FracAtlas" in metadata["training"]["data"] and metadata["training"]["trained_at"]
    assert (tiny_model_dir / "saved_model.pb").is_file()
    assert 0 <= metadata["validation_metrics"]["auc"] <= 1
    metrics = json.loads((tiny_model_dir / "metrics.json").read_text())  # scored through the SavedModel
    assert metrics["model_version"] == metadata["model_version"]
    assert metrics["n"] == metadata["training"]["n_val"]
    assert metrics["auc"] == pytest.approx(metadata["validation_metrics"]["auc"], abs=1e-3)
    card = (tiny_model_dir / "MODEL_CARD.md").read_text()
    assert f"AUC {metrics['auc']:.3f}" in card and "Intended use" in card


def test_served_model_outputs_probability_and_heatmap_together(tiny_model_dir):
    from fracture_web.inference import FractureModel

    model = FractureModel(tiny_model_dir)
    probs, heatmaps = model.infer(np.random.default_rng(0).random((3, 64, 64, 1)).astype(np.float32))
    assert probs.shape == (3,) and heatmaps.shape == (3, 8, 8)  # the fracture map, at stride 8
    assert np.all((probs >= 0) & (probs <= 1)) and np.all((heatmaps >= 0) & (heatmaps <= 1))


def test_batch_size_is_accepted_with_an_underscore_too(tmp_path):
    done = run_script("train_model.py", "--data-dir", str(tmp_path / "none"), "--batch_size", "4")
    assert done.returncode == 2 and "not found" in done.stdout


def test_one_class_dataset_is_refused_clearly(tmp_path):
    (tmp_path / "Fractured").mkdir()
    (tmp_path / "Fractured" / "a.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="only one class"):
        read_records(tmp_path)
    with pytest.raises(DatasetError, match="No labelled images"):
        read_records(tmp_path / "Fractured")


def test_folder_per_class_layout_is_read(tiny_dataset):
    records = read_records(tiny_dataset)
    assert len(records) == 48 and records.labels.sum() == 24


def test_split_without_a_split_column_keeps_duplicate_groups_together(tmp_path):
    rows = ["path,label,dup_group"] + [f"{i}.png,{i % 2},{i // 4 + 1}" for i in range(80)]
    (tmp_path / "labels.csv").write_text("\n".join(rows))
    train, val = split_train_val(read_records(tmp_path))
    train_groups, val_groups = set(train.columns["dup_group"]), set(val.columns["dup_group"])
    assert train_groups.isdisjoint(val_groups) and len(val) > 0 and set(val.labels) == {0, 1}


@pytest.mark.skipif(not FRACATLAS.is_dir(), reason="FracAtlas is only on the project's machines")
def test_fracatlas_suggested_split_is_used():
    train, val = split_train_val(read_records(FRACATLAS))
    assert (len(train), len(val)) == (2942, 515)
    assert set(train.columns["dup_group"]).isdisjoint(val.columns["dup_group"])


def test_operating_points_meet_their_definition():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(400, int), np.ones(100, int)]
    probs = np.clip(rng.normal(0.3 + 0.3 * labels, 0.15), 0, 1)
    points = choose_operating_points(labels, probs)
    high = confusion_rates(labels, probs, points["high_sensitivity"])
    balanced = confusion_rates(labels, probs, points["balanced"])
    assert high["sensitivity"] >= 0.90
    assert points["high_sensitivity"] <= points["balanced"]
    j = balanced["sensitivity"] + balanced["specificity"]
    for t in np.linspace(0.05, 0.95, 19):  # Youden's J is maximal at the balanced point
        other = confusion_rates(labels, probs, t)
        assert other["sensitivity"] + other["specificity"] <= j + 1e-9


def test_platt_scaling_calibrates_overconfident_scores():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, 5000)
    labels = (rng.random(5000) < sigmoid(true_logits)).astype(int)
    overconfident = 3 * true_logits + 1
    slope, intercept = fit_platt(overconfident, labels)
    assert slope == pytest.approx(1 / 3, rel=0.1) and intercept == pytest.approx(-1 / 3, abs=0.15)
    before = expected_calibration_error(labels, sigmoid(overconfident))
    after = expected_calibration_error(labels, sigmoid(slope * overconfident + intercept))
    assert after < 0.03 < before


def test_confusion_rates_count_correctly():
    rates = confusion_rates(np.array([1, 1, 0, 0, 0]), np.array([0.9, 0.2, 0.8, 0.1, 0.3]), 0.5)
    assert (rates["tp"], rates["fn"], rates["fp"], rates["tn"]) == (1, 1, 1, 2)
    assert rates["sensitivity"] == 0.5 and rates["specificity"] == pytest.approx(2 / 3)


def test_wilson_interval_matches_a_known_value():
    from fracture_web.evaluation.diagnostic_accuracy import wilson_interval

    low, high = wilson_interval(81, 90)  # 0.9 of 90: the textbook interval is about 0.821-0.946
    assert low == pytest.approx(0.8211, abs=1e-3) and high == pytest.approx(0.9464, abs=1e-3)


def test_scope_flags_features_far_from_the_training_cloud():
    from fracture_web.training.scope import fit_scope

    rng = np.random.default_rng(0)
    basis = rng.normal(size=(8, 40))
    train = rng.normal(size=(500, 8)) @ basis + 3.0
    val = rng.normal(size=(200, 8)) @ basis + 3.0
    scope = fit_scope(train, val)
    assert np.mean(scope.distance(val) > scope.threshold) == pytest.approx(0.01, abs=0.006)
    elsewhere = rng.normal(size=(50, 8)) @ basis * 4 + 3.0  # same directions, far larger spread
    assert np.all(scope.distance(elsewhere) > scope.threshold)


def test_scope_round_trips_through_a_file(tmp_path):
    from fracture_web.training.scope import Scope

    scope = Scope(np.zeros(4, np.float32), np.eye(4, dtype=np.float32), 2.5)
    scope.save(tmp_path / "scope.npz")
    loaded = Scope.load(tmp_path / "scope.npz")
    assert loaded.threshold == 2.5 and np.array_equal(loaded.projection, scope.projection)


def test_every_recipe_flag_reaches_its_own_config_field():
    from fracture_web.cli.train import parse_args, train_config
    from fracture_web.training.train import TrainConfig

    args = parse_args(["--data-dir", "d", "--epochs", "5", "--head-epochs", "7", "--batch-size", "3",
                      "--image-size", "96", "--learning-rate", "0.1", "--fine-tune-learning-rate", "0.2",
                      "--unfreeze-from-block", "4", "--patience", "6", "--seed", "8", "--no-imagenet",
                      "--localisation-weight", "0.5", "--site-shift-probability", "0.25", "--backbone", "lite2",
                      "--orientation-probability", "0.75"])
    assert train_config(args) == TrainConfig(
        image_size=96, epochs=5, head_epochs=5, batch_size=3, learning_rate=0.1, fine_tune_learning_rate=0.2,
        unfreeze_from_block=4, patience=6, seed=8, imagenet=False, localisation_weight=0.5,
        site_shift_probability=0.25, backbone="lite2", orientation_probability=0.75)


def test_on_another_keras_backend_the_run_stops_at_the_checkpoint(tmp_path, monkeypatch, caplog):
    from fracture_web.training import workflow

    validation = {"auc": 0.9, "auc_ci95": [0.8, 0.95], "ece": 0.01}
    monkeypatch.setattr(workflow, "fit_and_checkpoint", lambda *args, **kwargs: {"validation": validation})
    monkeypatch.setattr(workflow.keras.backend, "backend", lambda: "jax")
    paths = workflow.RunPaths(out=tmp_path / "model", checkpoint=tmp_path / "checkpoint", data_dir=tmp_path)
    with caplog.at_level("INFO"):
        workflow.run(workflow.TrainConfig(), paths)
    assert f"--export-only {paths.checkpoint} --out {paths.out}" in caplog.text
    assert not paths.out.exists()


def test_exporting_a_checkpoint_without_its_scope_needs_the_data(tmp_path):
    from fracture_web.training.workflow import RunPaths, TrainConfig, TrainingError, run

    with pytest.raises(TrainingError, match="no scope.npz; give --data-dir"):
        run(TrainConfig(), RunPaths(out=tmp_path / "model", checkpoint=tmp_path), train=False)
    done = run_script("train_model.py", "--export-only", str(tmp_path), "--out", str(tmp_path / "model"))
    assert done.returncode == 2 and "give --data-dir to fit it" in done.stdout


def test_the_served_model_has_a_fracture_map_from_the_same_forward_pass(tiny_model_dir):
    from fracture_web.inference import FractureModel

    outputs = FractureModel(tiny_model_dir).outputs(np.random.default_rng(0).random((3, 64, 64, 1), np.float32))
    assert outputs["fracture_map"].shape == (3, 8, 8)  # stride 8
    assert np.all((outputs["fracture_map"] >= 0) & (outputs["fracture_map"] <= 1))


def test_outlines_become_map_targets_only_where_they_are_known(tmp_path):
    from fracture_web.datasets import Records, Split
    from fracture_web.outlines import Outlines
    from fracture_web.training.train import Examples

    paths = [tmp_path / "images" / f"{name}.png" for name in ("outlined", "not_outlined", "normal")]
    split = Split(Records(paths, np.array([1, 1, 0])), np.zeros((3, 64, 64, 1), np.float32), np.array([1, 1, 0]))
    square = np.array([[10, 10], [30, 10], [30, 30], [10, 30]], np.float32)
    outlines = Outlines({"images/outlined.png": (64, 64)}, {"images/outlined.png": [square]})
    examples = Examples.of(split, outlines, tmp_path)
    assert examples.map_weights.tolist() == [1.0, 0.0, 1.0]  # a positive without an outline: map not trained
    assert examples.masks[0, 20, 20] == 1 and examples.masks[0].sum() > 300 and examples.masks[2].sum() == 0
    targets = examples.map_targets(4)
    assert targets.shape == (3, 16) and targets[0].max() == 1.0 and targets[2].max() == 0.0
    assert Examples.of(split, None, tmp_path).map_weights.tolist() == [0.0, 0.0, 0.0]


def test_a_warm_start_fine_tunes_the_given_model(tiny_model_dir, tiny_dataset, tmp_path):
    import keras

    from fracture_web.inference import FractureModel
    from fracture_web.training.network import build_network, restore_from_savedmodel

    # The restored network is the served one: same probability through the exported calibration.
    metadata = json.loads((tiny_model_dir / "metadata.json").read_text())
    network = build_network(64, imagenet=False, backbone=metadata["training"]["config"]["backbone"])
    restore_from_savedmodel(network, tiny_model_dir)
    images = np.random.default_rng(1).random((2, 64, 64, 1), np.float32)
    slope, intercept = metadata["calibration"]["slope_intercept"]
    restored = sigmoid(slope * keras.ops.convert_to_numpy(network(images)[0])[:, 0] + intercept)
    np.testing.assert_allclose(restored, FractureModel(tiny_model_dir).outputs(images)["probability"], atol=1e-4)

    # Fine-tuned at a larger input than it was trained at: its convolutions take any size.
    done = run_script("train_model.py", "--init-from", str(tiny_model_dir), "--data-dir", str(tiny_dataset),
                      "--out", str(tmp_path / "warm"), "--epochs", "1", "--head-epochs", "0", "--batch-size", "8",
                      "--image-size", "96")
    assert done.returncode == 0, done.stdout + done.stderr
    metadata = json.loads((tmp_path / "warm" / "metadata.json").read_text())
    assert metadata["input_size"] == 96 and str(tiny_model_dir) in metadata["training"]["initial_weights"]
    heatmap = FractureModel(tmp_path / "warm").outputs(np.zeros((1, 96, 96, 1), np.float32))["heatmap"]
    assert heatmap.shape == (1, 12, 12)  # a cell per 8 px of the larger input


def test_a_warm_start_keeps_its_models_input_size_unless_told_another(tiny_model_dir):
    from fracture_web.cli.train import parse_args, train_config

    assert train_config(parse_args(["--init-from", str(tiny_model_dir), "--data-dir", "d"])).image_size == 64
    assert train_config(parse_args(["--init-from", str(tiny_model_dir), "--data-dir", "d",
                                    "--image-size", "96"])).image_size == 96
    assert train_config(parse_args(["--data-dir", "d"])).image_size == 384


def test_a_model_is_scored_again_after_the_evaluation_changes_without_training_it_again(tiny_model_dir, tiny_dataset,
                                                                                         tmp_path):
    from fracture_web.evaluation.localisation import levels_rule

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    metadata = json.loads((model / "metadata.json").read_text())
    metadata["findings"]["rule"] = "an older rule"
    (model / "metadata.json").write_text(json.dumps(metadata))
    (model / "metrics.json").unlink()
    weights = (model / "variables" / "variables.data-00000-of-00001").read_bytes()
    done = run_script("train_model.py", "--report-only", "--out", str(model), "--data-dir", str(tiny_dataset))
    assert done.returncode == 0, done.stdout + done.stderr
    rescored = json.loads((model / "metadata.json").read_text())
    assert rescored["findings"]["rule"] == levels_rule(rescored["default_operating_point"])
    assert rescored["operating_points"] == metadata["operating_points"]  # thresholds as training chose them
    assert json.loads((model / "metrics.json").read_text())["n"] > 0 and (model / "MODEL_CARD.md").is_file()
    assert (model / "variables" / "variables.data-00000-of-00001").read_bytes() == weights

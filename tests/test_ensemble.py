"""The ML engineer's story, continued: two models trained alone are served as one, the mean of their
logits calibrated, their maps averaged, through the app's own loading and every runtime it serves."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fracture_web.inference import FractureModel
from fracture_web.probability import sigmoid

from helpers import run_script


@pytest.fixture(scope="module")
def small_member(tiny_dataset: Path, tmp_path_factory) -> Path:
    """A second model on another backbone and a smaller input, trained alone like the first (the
    same seed: the tiny dataset has no split column, so the seed draws the validation images)."""
    return train_small_member(tiny_dataset, tmp_path_factory.mktemp("member") / "model", seed=0)


def train_small_member(data_dir: Path, out: Path, seed: int) -> Path:
    done = run_script("train_model.py", "--data-dir", str(data_dir), "--out", str(out), "--epochs", "2",
                      "--head-epochs", "1", "--image-size", "32", "--batch-size", "8", "--backbone", "lite0",
                      "--seed", str(seed))
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="module")
def ensemble_dir(tiny_model_dir: Path, small_member: Path, tiny_dataset: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ensemble") / "model"
    # The smaller member named first: the ensemble still takes its input from the larger one.
    done = run_script("train_model.py", "--ensemble", str(small_member), str(tiny_model_dir),
                      "--data-dir", str(tiny_dataset), "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def member_logits(folder: Path, images: np.ndarray) -> np.ndarray:
    """A member's raw fracture logits, from its own trained network, for images of the ensemble's input."""
    import keras

    from fracture_web.training.ensemble import load_member
    from fracture_web.training.export import member_input

    member = load_member(folder)
    resized = member_input(keras.ops.convert_to_tensor(images), member.input_size)
    return keras.ops.convert_to_numpy(member.network(resized)[0])[:, 0]


def test_the_ensemble_serves_the_calibrated_mean_of_its_members_logits(ensemble_dir, tiny_model_dir, small_member):
    metadata = json.loads((ensemble_dir / "metadata.json").read_text())
    assert metadata["input_size"] == 64 and metadata["model_version"].startswith("lite1-64px+lite0-32px-")
    assert [m["input_size"] for m in metadata["training"]["members"]] == [64, 32]
    images = np.random.default_rng(2).random((3, 64, 64, 1), np.float32)
    mean = (member_logits(tiny_model_dir, images) + member_logits(small_member, images)) / 2
    slope, intercept = metadata["calibration"]["slope_intercept"]
    served = FractureModel(ensemble_dir, backend="tensorflow").outputs(images)
    np.testing.assert_allclose(served["probability"], sigmoid(slope * mean + intercept), atol=1e-4)


def test_the_ensemble_keeps_the_first_members_maps_and_is_served_by_litert(ensemble_dir, tiny_model_dir):
    images = np.random.default_rng(3).random((1, 64, 64, 1), np.float32)
    alone = FractureModel(tiny_model_dir, backend="tensorflow").outputs(images)
    ensemble = FractureModel(ensemble_dir, backend="tensorflow")
    served = ensemble.outputs(images)
    for name in ("heatmap", "cam", "fracture_map"):
        assert served[name].shape == alone[name].shape
    assert served["heatmap"].max() == pytest.approx(1.0) and np.isfinite(served["atypicality"]).all()
    litert = FractureModel(ensemble_dir, backend="auto")
    assert litert.backend == "litert"  # its parity report vouches for the .tflite file
    np.testing.assert_allclose(litert.outputs(images)["probability"], served["probability"], atol=1e-4)


def test_the_model_card_names_every_member(ensemble_dir):
    card = (ensemble_dir / "MODEL_CARD.md").read_text()
    metadata = json.loads((ensemble_dir / "metadata.json").read_text())
    assert "An ensemble of 2 networks" in card
    for member in metadata["training"]["members"]:
        assert f"`{member['model_version']}`" in card
    # How to make it again: each network's own training, then the ensemble of their folders.
    reproduce = card[card.index("## Reproduce"):]
    folders = [member["folder"] for member in metadata["training"]["members"]]
    assert all(f"--out {folder}" in reproduce for folder in folders)
    assert f"--ensemble {' '.join(folders)} --data-dir" in reproduce


def test_a_shipped_ensemble_is_fitted_again_from_its_own_folder(ensemble_dir, tiny_dataset, tmp_path):
    """The members' own folders are not in the repository; the ensemble's folder gives them back."""
    out = tmp_path / "again"
    done = run_script("train_model.py", "--ensemble", str(ensemble_dir), "--ensemble-maps", "first",
                      "--data-dir", str(tiny_dataset), "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    before, after = (json.loads((folder / "metadata.json").read_text())["training"] for folder in (ensemble_dir, out))
    assert [(m["model_version"], m["folder"], m["training"]) for m in after["members"]] == \
        [(m["model_version"], m["folder"], m["training"]) for m in before["members"]]
    assert after["ensemble_maps"] == "first"
    # The same networks calibrated on the same images: the same verdicts.
    images = np.random.default_rng(5).random((3, 64, 64, 1), np.float32)
    served = [FractureModel(folder, backend="tensorflow").outputs(images)["probability"] for folder in (ensemble_dir, out)]
    np.testing.assert_allclose(served[1], served[0], atol=1e-5)


def test_every_network_of_an_ensemble_is_restored_from_its_folder(tmp_path):
    from fracture_web.training.export import export_savedmodel
    from fracture_web.training.network import build_network, restore_from_savedmodel
    from fracture_web.training.scope import Scope

    def networks() -> list:
        return [build_network(32, imagenet=False, backbone="lite0") for _ in range(3)]

    trained = networks()
    for n, network in enumerate(trained):
        network.get_layer("fracture_map").bias.assign([float(n)])  # tell them apart
    width = sum(network.outputs[1].shape[-1] for network in trained)
    export_savedmodel(trained, (1.0, 0.0), Scope(np.zeros(width, np.float32), np.eye(width, dtype=np.float32), 1.0),
                      tmp_path / "three")
    restored = networks()
    restore_from_savedmodel(restored[0], tmp_path / "three", members=restored[1:])
    for mine, theirs in zip(restored, trained):
        for a, b in zip(mine.get_weights(), theirs.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_an_ensemble_needs_two_networks_each_given_once(ensemble_dir, tiny_model_dir, tiny_dataset, tmp_path):
    alone = run_script("train_model.py", "--ensemble", str(tiny_model_dir), "--data-dir", str(tiny_dataset),
                       "--out", str(tmp_path / "one"))
    assert alone.returncode == 2 and "at least two" in alone.stdout
    twice = run_script("train_model.py", "--ensemble", str(ensemble_dir), str(tiny_model_dir),
                       "--data-dir", str(tiny_dataset), "--out", str(tmp_path / "twice"))
    assert twice.returncode == 2 and "comes twice" in twice.stdout
    warm = run_script("train_model.py", "--init-from", str(ensemble_dir), "--data-dir", str(tiny_dataset),
                      "--out", str(tmp_path / "warm"))
    assert warm.returncode == 2 and "not an ensemble" in warm.stderr
    # Trained with another seed on data without a split column, a member validated on other images.
    other = train_small_member(tiny_dataset, tmp_path / "other-seed", seed=3)
    mixed = run_script("train_model.py", "--ensemble", str(tiny_model_dir), str(other),
                       "--data-dir", str(tiny_dataset), "--out", str(tmp_path / "mixed"))
    assert mixed.returncode == 2 and "different seeds (0, 3)" in mixed.stdout


def test_an_ensemble_serving_the_first_members_map_leaves_the_others_locators_out(tmp_path):
    import keras
    import tensorflow as tf

    from bench.flops import multiply_adds
    from fracture_web.training.export import export_savedmodel
    from fracture_web.training.network import build_network, inference_network
    from fracture_web.training.scope import Scope
    from fracture_web.training.tflite import convert

    first, second = (build_network(size, imagenet=False, backbone="lite0") for size in (64, 32))
    second.get_layer("fracture_map").bias.assign([2.0])  # its map far from the first's (both start near 0.018)
    width = first.outputs[1].shape[-1] + second.outputs[1].shape[-1]
    scope = Scope(np.zeros(width, np.float32), np.eye(width, dtype=np.float32), 1.0)
    images = np.random.default_rng(4).random((2, 64, 64, 1), np.float32)
    served, costs = {}, {}
    for maps, members in (("mean", None), ("first", 1)):
        folder = tmp_path / maps
        export_savedmodel([first, second], (1.0, 0.0), scope, folder, map_members=members)
        served[maps] = tf.saved_model.load(str(folder)).signatures["serving_default"](image=tf.constant(images))
        (folder / "model.tflite").write_bytes(convert(folder, "float32"))
        costs[maps] = multiply_adds(folder / "model.tflite")
    own_map = keras.ops.sigmoid(inference_network(first)(images)[2][..., 0])
    np.testing.assert_allclose(served["first"]["fracture_map"], own_map, atol=1e-5)
    assert not np.allclose(served["mean"]["fracture_map"], own_map, atol=1e-3)
    np.testing.assert_allclose(served["first"]["probability"], served["mean"]["probability"], atol=1e-6)
    assert costs["first"] < costs["mean"]

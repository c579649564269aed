"""Several trained models served as one: their networks in one SavedModel, the mean of their
logits calibrated on the validation split, their maps averaged.

Each member is a model folder that ``scripts/train_model.py`` wrote (it keeps the trained network
beside its serving form); an ensemble's folder gives its members, restored from it, so a shipped
ensemble can be fitted again, or given another network, without its members' own folders. The
member with the largest input comes first and sets the ensemble's input; the others see that input
resized to their own, in calibration as in the served graph (:func:`~.export.member_input`). Needs
TensorFlow.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import keras
import numpy as np

from ..datasets import Records, load_split, read_records
from ..inference import read_metadata
from .calibration import calibrate
from .checkpoint import recipe_of
from .network import build_network, restore_from_savedmodel
from .scope import Scope, fit_scope, logits_and_features
from .splits import split_train_val

#: Images resized for a member at a time (bounds the extra memory of the resized copies).
RESIZE_CHUNK = 256


class EnsembleError(ValueError):
    """The given folders cannot make an ensemble."""


@dataclass(frozen=True)
class Member:
    """One trained model of the ensemble: its folder's metadata and its network with the trained weights."""

    folder: Path
    metadata: dict
    network: keras.Model

    @property
    def input_size(self) -> int:
        return int(self.metadata["input_size"])


def load_member(folder: Path) -> Member:
    """The model folder's trained network, rebuilt from its recipe (an ensemble is refused: see
    :func:`members_of`)."""
    metadata = read_metadata(folder)
    if "members" in metadata.get("training", {}):
        raise EnsembleError(f"{folder} is an ensemble; its networks are its members")
    network = _rebuilt(metadata["training"])
    restore_from_savedmodel(network, folder)
    return Member(Path(folder), metadata, network)


def members_of(folder: Path) -> list[Member]:
    """The networks served by the model folder: itself, or an ensemble's members restored from
    it, each with the folder, version, validation AUC and training its metadata recorded."""
    metadata = read_metadata(folder)
    recorded = metadata.get("training", {}).get("members")
    if not recorded:
        return [load_member(folder)]
    networks = [_rebuilt(member["training"]) for member in recorded]
    restore_from_savedmodel(networks[0], folder, members=networks[1:])
    return [Member(Path(member["folder"]),
                   {"model_version": member["model_version"], "input_size": member["input_size"],
                    "map_stride": metadata.get("map_stride"), "training": member["training"],
                    "validation_metrics": {"auc": member["validation_auc"]}}, network)
            for member, network in zip(recorded, networks)]


def _rebuilt(training: dict) -> keras.Model:
    """A network built as ``training``'s recipe built it, its weights still to be restored."""
    config = recipe_of(training)
    return build_network(config.image_size, imagenet=False, backbone=config.backbone)


def load_members(folders: list[Path]) -> list[Member]:
    """The networks of ``folders`` (an ensemble's folder gives its members), the largest input first
    (it sets the ensemble's input and map grids); refused where a network comes twice."""
    members = sorted((member for folder in folders for member in members_of(folder)), key=lambda m: -m.input_size)
    if len(members) < 2:
        raise EnsembleError("an ensemble needs at least two networks: give two model folders, or an ensemble's")
    versions = [(m.metadata["model_version"], m.metadata["training"].get("trained_at")) for m in members]
    if len(set(versions)) < len(versions):
        raise EnsembleError(f"a network comes twice ({', '.join(v for v, _ in versions)}): an ensemble's folder "
                            "already gives its members")
    strides = {m.metadata.get("map_stride") for m in members}
    if len(strides) > 1:
        raise EnsembleError(f"the members' fracture maps have different strides ({sorted(strides)})")
    return members


def shared_split(members: list[Member], records: Records) -> tuple[Records, Records]:
    """The one train/validation split of ``records`` that every member was trained on (the first
    member's). Refused where their seeds draw different validation images (data with no split
    column): one member's training images would then calibrate the ensemble."""
    seeds = [recipe_of(m.metadata["training"]).seed for m in members]
    splits = {seed: split_train_val(records, seed=seed) for seed in seeds}
    if len({tuple(val.paths) for _, val in splits.values()}) > 1:
        raise EnsembleError(f"the members were trained with different seeds ({', '.join(map(str, sorted(splits)))}) "
                            "on data with no split column, so each validated on other images; train them with one seed")
    return splits[seeds[0]]


def ensemble_logits_and_features(networks: list[keras.Model], images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ensemble's fracture logits (the members' mean) and its pooled features (the members'
    side by side) for ``images`` at the first member's input size."""
    logits, features = [], []
    for network in networks:
        size = network.input_shape[1]
        parts = [logits_and_features(network, resized_for(images[i:i + RESIZE_CHUNK], size))
                 for i in range(0, len(images), RESIZE_CHUNK)]
        logits.append(np.concatenate([p[0] for p in parts]))
        features.append(np.concatenate([p[1] for p in parts]))
    return np.mean(logits, axis=0), np.concatenate(features, axis=1)


def resized_for(images: np.ndarray, size: int) -> np.ndarray:
    """``images`` as a member of input ``size`` sees them (:func:`~.export.member_input`)."""
    from .export import member_input  # needs TensorFlow

    return keras.ops.convert_to_numpy(member_input(keras.ops.convert_to_tensor(images), size))


def fit_ensemble(members: list[Member], data_dir: Path) -> tuple[dict, Scope]:
    """Calibrate the ensemble and fit its in-scope detector on ``data_dir``'s split (as training does
    for one network); returns its summary (what ``build_metadata`` reads) and the detector."""
    started = time.monotonic()
    first = recipe_of(members[0].metadata["training"])
    train_rec, val_rec = shared_split(members, read_records(data_dir))
    networks = [m.network for m in members]
    val = load_split(val_rec, members[0].input_size)
    logits, val_features = ensemble_logits_and_features(networks, val.images)
    summary = calibrate(val, logits)
    train_features = ensemble_logits_and_features(networks, load_split(train_rec, members[0].input_size).images)[1]
    summary.update(config=first.as_dict(), history={}, data_dir=str(data_dir), n_train=len(train_rec),
                   n_val=len(val.labels), trained_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   keras_backend=keras.backend.backend(), wall_time_min=round((time.monotonic() - started) / 60, 1),
                   members=[_member_summary(m) for m in members])
    return summary, fit_scope(train_features, val_features)


def _member_summary(member: Member) -> dict:
    """What metadata.json keeps of a member: its version, folder, validation AUC alone and how it was trained."""
    training = {k: v for k, v in member.metadata["training"].items() if k != "history"}
    return {"model_version": member.metadata["model_version"], "folder": str(member.folder),
            "input_size": member.input_size, "validation_auc": member.metadata["validation_metrics"]["auc"],
            "training": training}

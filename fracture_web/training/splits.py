"""Which images train and which validate: FracAtlas's own ``split`` column where there is one,
else a stratified split that keeps duplicate groups on one side (scikit-learn)."""
from __future__ import annotations

import numpy as np

from ..datasets import Records


def split_train_val(records: Records, val_fraction: float = 0.15, seed: int = 0) -> tuple[Records, Records]:
    """Use the ``split`` column if present, else a stratified split that keeps duplicate groups together."""
    if "split" in records.columns:
        split = np.array(records.columns["split"])
        return records.subset(split == "train"), records.subset(split == "val")
    from sklearn.model_selection import StratifiedGroupKFold  # the training install; FracAtlas needs none

    groups = _groups(records)
    folds = StratifiedGroupKFold(n_splits=max(2, round(1 / val_fraction)), shuffle=True, random_state=seed)
    train_index, val_index = next(folds.split(np.zeros(len(records)), records.labels, groups))
    mask = np.zeros(len(records), dtype=bool)
    mask[val_index] = True
    return records.subset(~mask), records.subset(mask)


def _groups(records: Records) -> np.ndarray:
    """Duplicate groups from ``dup_group`` (0 = unique image), else one group per image."""
    own = np.arange(len(records))
    if "dup_group" not in records.columns:
        return own
    dup = np.array([int(g or 0) for g in records.columns["dup_group"]])
    return np.where(dup != 0, -dup, own)


def subsample(records: Records, limit: int, seed: int) -> Records:
    """At most ``limit`` images, both classes kept (for smoke tests and quick trials)."""
    if limit <= 0 or limit >= len(records):
        return records
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(records.labels == c))[: max(2, limit // 2)] for c in (0, 1)]
    mask = np.zeros(len(records), bool)
    mask[np.concatenate(picks)] = True
    return records.subset(mask)

"""A long training run survives an interruption: ``--resume`` carries on where it stopped, with
the same recipe, and reports every epoch as an uninterrupted run would."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fracture_web.training import progress as progress_module
from fracture_web.training.augment import augment
from fracture_web.training.checkpoint import PROGRESS, SUMMARY, fit_and_checkpoint
from fracture_web.training.progress import ResumeError
from fracture_web.training.train import TrainConfig

RECIPE = TrainConfig(image_size=32, epochs=3, head_epochs=1, batch_size=16, patience=5, imagenet=False,
                     backbone="lite0")


class PowerCut(Exception):
    """Stands for the machine going down in the middle of a run."""


@pytest.mark.parametrize("cut", ["between two epochs", "between the epoch's record and its backup"])
def test_an_interrupted_run_resumes_after_its_last_finished_epoch(tiny_dataset, tmp_path, monkeypatch, cut):
    checkpoint = tmp_path / "checkpoint"
    hook = "on_epoch_begin" if cut == "between two epochs" else "on_epoch_end"
    record = getattr(progress_module.BestEpoch, hook)
    cut_at = 1 if hook == "on_epoch_begin" else 0  # the second fine-tune epoch starts / the first one ends

    def power_cut_in_fine_tuning(self, epoch, logs=None):
        if hook == "on_epoch_end":
            record(self, epoch, logs)
        if self.state_file.parent.name == "fine-tune" and epoch == cut_at:
            raise PowerCut
        if hook == "on_epoch_begin":
            record(self, epoch, logs)

    monkeypatch.setattr(progress_module.BestEpoch, hook, power_cut_in_fine_tuning)
    with pytest.raises(PowerCut):
        fit_and_checkpoint(tiny_dataset, RECIPE, checkpoint)
    assert (checkpoint / PROGRESS / "head" / "done.weights.h5").is_file()
    assert not (checkpoint / SUMMARY).exists()

    monkeypatch.setattr(progress_module.BestEpoch, hook, record)
    with pytest.raises(ResumeError, match="add --resume"):  # a new run does not silently throw away the old one
        fit_and_checkpoint(tiny_dataset, RECIPE, checkpoint)
    with pytest.raises(ResumeError, match="another recipe"):
        fit_and_checkpoint(tiny_dataset, TrainConfig(**{**RECIPE.as_dict(), "epochs": 4}), checkpoint, resume=True)

    summary = fit_and_checkpoint(tiny_dataset, RECIPE, checkpoint, resume=True)
    assert summary["resumed"] is True
    assert len(summary["history"]["head"]["val_fracture_logit_auc"]) == 1  # not trained again
    # the fine-tuning's two epochs, each once (one recorded but not backed up runs again)
    assert len(summary["history"]["fine_tune"]["val_fracture_logit_auc"]) == 2
    assert json.loads((checkpoint / SUMMARY).read_text())["config"]["backbone"] == "lite0"
    assert not (checkpoint / PROGRESS).exists()  # checkpointed: nothing left to resume


def test_training_turns_images_and_their_outlines_together():
    """A radiograph reaches the PACS turned or flipped: training sees every orientation, and the
    fracture outline turns with the image."""
    size = 48
    image = np.zeros((size, size, 1), np.float32)
    image[2:10, 30:40] = 1.0  # a bright patch where the outline is
    mask = (image[..., 0] > 0).astype(np.uint8)
    rng = np.random.default_rng(3)
    corners = set()
    for _ in range(40):
        turned, turned_mask = augment(image, mask, rng, site_shift_probability=0.0, orientation_probability=1.0)
        ys, xs = np.nonzero(turned_mask)
        assert turned[ys, xs, 0].mean() > turned[..., 0].mean() + 0.3  # the outline is still on the patch
        corners.add((bool(ys.mean() < size / 2), bool(xs.mean() < size / 2)))
    assert corners == {(True, True), (True, False), (False, True), (False, False)}

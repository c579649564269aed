"""A long training run that survives an interruption: at the end of every epoch the phase's
weights and optimizer state (Keras's ``BackupAndRestore``) and its best epoch so far are saved
under the checkpoint folder's ``progress/``; ``--resume`` carries on from there with the same
recipe, and a finished phase is not trained again. The folder is removed once the run's
checkpoint is written.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import keras

log = logging.getLogger(__name__)

#: The validation AUC as Keras logs it for the logit output: what the best epoch is chosen by.
VAL_AUC = "val_fracture_logit_auc"


class ResumeError(ValueError):
    """The progress folder and the request do not go together (a run left there without
    ``--resume``, or a resume with another recipe)."""


class BestEpoch(keras.callbacks.Callback):
    """Early stopping on the validation AUC whose state lives on disk: the best epoch's weights,
    how many epochs have passed without a better one and every epoch's logs, so that a resumed
    phase stops, restores and reports exactly as an uninterrupted one would."""

    def __init__(self, folder: Path, patience: int) -> None:
        super().__init__()
        self.weights, self.state_file, self.patience = folder / "best.weights.h5", folder / "best.json", patience
        self.best, self.wait, self.history = float("-inf"), 0, {}

    def on_train_begin(self, logs=None) -> None:
        if self.state_file.is_file():
            state = json.loads(self.state_file.read_text())
            self.best, self.wait, self.history = state["best"], state["wait"], state["history"]

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        """Forget an epoch recorded here but not backed up (the run stopped between the two): it
        runs again, and the best epoch and the wait are those of the epochs kept."""
        if len(self.history.get(VAL_AUC, [])) > epoch:
            self.history = {name: values[:epoch] for name, values in self.history.items()}
            aucs = self.history.get(VAL_AUC, [])
            self.best = max(aucs, default=float("-inf"))
            self.wait = len(aucs) - 1 - aucs.index(self.best) if aucs else 0

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = logs or {}
        for name, value in logs.items():
            self.history.setdefault(name, []).append(float(value))
        auc = logs.get(VAL_AUC, float("-inf"))
        if auc > self.best:
            self.best, self.wait = auc, 0
            self.model.save_weights(self.weights, overwrite=True)
        else:
            self.wait += 1
        self.state_file.write_text(json.dumps({"best": self.best, "wait": self.wait, "history": self.history}))
        if self.wait >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs=None) -> None:
        if self.weights.is_file():
            self.model.load_weights(self.weights)


class RunProgress:
    """The progress folder of one training run with the recipe ``config``."""

    def __init__(self, folder: Path, config: dict, resume: bool) -> None:
        self.folder = folder
        recipe = folder / "config.json"
        if folder.exists() and not resume:
            raise ResumeError(f"{folder} holds an interrupted run: add --resume to carry on, or remove the folder "
                              "to start again")
        if resume and recipe.is_file() and json.loads(recipe.read_text()) != config:
            raise ResumeError(f"{folder} holds a run with another recipe ({recipe}); resume it with the same "
                              "arguments, or remove the folder to start again")
        #: Whether this call carries on an interrupted run (its wall time then counts this call only).
        self.resumed = resume and recipe.is_file()
        if resume and not self.resumed:
            log.info("nothing to resume in %s: starting a new run", folder)
        self.config = config

    def begin(self) -> None:
        """Training starts: from here on an interruption leaves something to resume."""
        if not self.resumed:
            log.info("progress saved every epoch in %s (--resume carries on from it)", self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "config.json").write_text(json.dumps(self.config, sort_keys=True))

    def _done(self, phase: str) -> Path:
        return self.folder / phase / "done.weights.h5"

    def restore_finished(self, phase: str, model: keras.Model) -> bool:
        """Load ``phase``'s final weights into ``model`` if it finished before; whether it did."""
        if not self._done(phase).is_file():
            return False
        model.load_weights(self._done(phase))
        log.info("%s: finished before the interruption, its weights restored", phase)
        return True

    def history(self, phase: str) -> dict[str, list[float]]:
        """Every epoch's logs of ``phase``, across interruptions."""
        state = self.folder / phase / "best.json"
        return json.loads(state.read_text())["history"] if state.is_file() else {}

    def callbacks(self, phase: str, patience: int) -> list[keras.callbacks.Callback]:
        """Save the phase's state every epoch and stop it early on the validation AUC."""
        (self.folder / phase).mkdir(parents=True, exist_ok=True)
        # The best epoch is recorded before the backup marks the epoch done, so no best epoch is lost.
        return [BestEpoch(self.folder / phase, patience),
                keras.callbacks.BackupAndRestore(str(self.folder / phase / "backup"), delete_checkpoint=False)]

    def finish(self, phase: str, model: keras.Model) -> None:
        """Mark ``phase`` finished, keeping the weights it ended with (its best epoch's)."""
        model.save_weights(self._done(phase), overwrite=True)
        shutil.rmtree(self.folder / phase / "backup", ignore_errors=True)

    def remove(self) -> None:
        """The run is checkpointed: nothing left to resume."""
        shutil.rmtree(self.folder, ignore_errors=True)

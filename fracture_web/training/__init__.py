"""Offline training (used by the training command only): the recipe, the Keras network, augmentation,
train/val splitting, calibration, checkpoints, SavedModel and TFLite export, and the run
that ties them together (:mod:`.workflow`). Reading datasets and measuring models belong to
:mod:`fracture_web.datasets` and :mod:`fracture_web.evaluation`, which never import this."""

"""Offline training: dataset reading, augmentation, the Keras network, calibration and export."""

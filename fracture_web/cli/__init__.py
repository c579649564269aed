"""The commands a user runs, as console entry points (pyproject.toml's ``[project.scripts]``):
``fracture-predict``, ``fracture-reread``, ``fracture-evaluate``, ``fracture-calibrate``,
``fracture-train`` and ``fracture-export-tflite``, each this package's ``<module>.main``. From a
checkout, ``python scripts/<name>.py`` runs the same main. Nothing in the package imports them.
"""

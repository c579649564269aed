"""The model folder a command is pointed at, checked before any work: one sentence when it cannot be a
model (missing, no metadata.json, metadata that is not a JSON object, an input size no network takes),
instead of a traceback from TensorFlow or LiteRT halfway through loading or exporting it. The loader
(:mod:`fracture_web.inference`) still checks the rest of the metadata."""
from __future__ import annotations

import json
from pathlib import Path

#: The smallest input side a model may declare: far below any trained one (64 px in the tests, 384 shipped),
#: and above what the network's pooling can take (0 made LiteRT fail to reshape its tensors).
SMALLEST_INPUT = 32


def model_folder_problem(model_dir: Path, saved_model: bool = False) -> str | None:
    """Why ``model_dir`` cannot be a model folder, or None; with ``saved_model``, it must also hold the
    SavedModel (the exports convert it)."""
    if not model_dir.is_dir():
        return f"{model_dir} is not a model folder: {'it is a file' if model_dir.exists() else 'it does not exist'}"
    metadata_file = model_dir / "metadata.json"
    if not metadata_file.is_file():
        return f"{model_dir} is not a model folder: it has no metadata.json"
    try:
        metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return f"{metadata_file} cannot be read as JSON ({getattr(err, 'strerror', None) or err})"
    if not isinstance(metadata, dict):
        return f"{metadata_file} must hold a JSON object, not a {type(metadata).__name__}"
    size = metadata.get("input_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < SMALLEST_INPUT:
        return (f"{metadata_file}: input_size must be the model's input side in pixels (a whole number, at least "
                f"{SMALLEST_INPUT}), not {size!r}")
    if saved_model and not (model_dir / "saved_model.pb").is_file():
        return f"{model_dir} has no saved_model.pb: the export converts the SavedModel that training writes"
    return None

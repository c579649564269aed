"""The model card's figure of findings: a few validation radiographs with the model's boxes and the
radiologists' outline boxes, drawn as the page and the DICOM image draw them. OpenCV only (no
matplotlib), so the serving install can draw it too."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..datasets import Records
from ..imaging import decode_image, to_model_input
from ..inference import FractureModel
from ..outlines import outlines_beside
from ..overlay import draw_findings, encode_png
from ..pixels import InvalidImageError, to_uint8

FINDINGS_FIGURE = "findings.png"
#: Tiles in the figure, and each tile's height in pixels.
TILES, TILE_HEIGHT, COLUMNS = 6, 360, 3
TRUTH_COLOUR = (255, 255, 255)
KEY = "white thin: radiologist's outline box | orange solid: definite | blue dashed: possible"


def write_findings_figure(records: Records, model: FractureModel, data_dir: Path, path: Path) -> Path | None:
    """Draw the first outlined fractured records (in file order) with predicted and true boxes into
    ``path`` (PNG); None when the folder has no outlines."""
    outlines = outlines_beside(data_dir)
    if outlines is None:
        return None
    tiles = []
    for image_path, label in sorted(zip(records.paths, records.labels)):
        outlined = outlines.of(image_path, data_dir) if label == 1 else None
        if outlined is None:
            continue
        try:
            tiles.append(_tile(decode_image(Path(image_path).read_bytes()).pixels, outlined[0], model))
        except (InvalidImageError, OSError):
            continue
        if len(tiles) == TILES:
            break
    if not tiles:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(_mosaic(tiles)))
    return path


def _tile(pixels: np.ndarray, polygons: list[np.ndarray], model: FractureModel) -> np.ndarray:
    """One radiograph at TILE_HEIGHT with its outline boxes (thin white) and the model's findings."""
    prediction = model.predict(to_model_input(pixels, model.input_size), image_shape=pixels.shape[:2])
    scale = TILE_HEIGHT / pixels.shape[0]
    size = (max(1, round(pixels.shape[1] * scale)), TILE_HEIGHT)
    rgb = cv2.cvtColor(to_uint8(cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)), cv2.COLOR_GRAY2RGB)
    for polygon in polygons:
        x0, y0 = (polygon.min(axis=0) * scale).round().astype(int)
        x1, y1 = (polygon.max(axis=0) * scale).round().astype(int)
        cv2.rectangle(rgb, (int(x0), int(y0)), (int(x1), int(y1)), TRUTH_COLOUR, 1)
    drawn = draw_findings(rgb, prediction.findings, scale)
    cv2.putText(drawn, f"p={prediction.probability:.2f}", (4, TILE_HEIGHT - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                TRUTH_COLOUR, 1, cv2.LINE_AA)
    return drawn


def _mosaic(tiles: list[np.ndarray]) -> np.ndarray:
    """Tiles in rows of COLUMNS (padded to one width) above a line of key text."""
    width = max(tile.shape[1] for tile in tiles)
    padded = [np.pad(t, ((0, 0), (0, width - t.shape[1] + 4), (0, 0))) for t in tiles]
    padded += [np.zeros_like(padded[0])] * (-len(padded) % COLUMNS)
    rows = [np.hstack(padded[i:i + COLUMNS]) for i in range(0, len(padded), COLUMNS)]
    key = np.zeros((28, rows[0].shape[1], 3), np.uint8)
    cv2.putText(key, KEY, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, TRUTH_COLOUR, 1, cv2.LINE_AA)
    return np.vstack([*rows, key])

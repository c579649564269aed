"""The radiologists' fracture outlines (COCO ``annotations.json``) as polygons and masks.

FracAtlas ships one outline per fracture, in the pixel coordinates of its image files. Training
uses them as masks over the letterboxed model input (where the network should look);
evaluation uses them to check where the heatmap points. numpy and OpenCV; no Flask.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .imaging import letterbox_geometry

#: The file FracAtlas's outlines come in, beside labels.csv.
OUTLINES_FILE = "annotations.json"


@dataclass(frozen=True)
class Outlines:
    """Every outlined image: its size and its fracture polygons (each an (N, 2) array of x, y)."""

    sizes: dict[str, tuple[int, int]]  # file name (as in labels.csv's path) -> (height, width)
    polygons: dict[str, list[np.ndarray]]

    def __contains__(self, name: str) -> bool:
        return name in self.polygons

    def __len__(self) -> int:
        return len(self.polygons)

    def of(self, path: Path, root: Path) -> tuple[list[np.ndarray], tuple[int, int]] | None:
        """The polygons and (height, width) of the image at ``path`` (the outline file's names are
        relative to ``root``, the labelled folder), or None when it has no outline."""
        name = Path(path).relative_to(root).as_posix()
        return (self.polygons[name], self.sizes[name]) if name in self.polygons else None


def outlines_beside(data_dir: Path) -> Outlines | None:
    """The outlines in a labelled folder's ``annotations.json``, or None when it has none."""
    path = Path(data_dir) / OUTLINES_FILE
    return read_outlines(path) if path.is_file() else None


def read_outlines(path: Path) -> Outlines:
    """Read a COCO file: each annotation's ``segmentation`` polygons (its ``bbox`` when it has none)."""
    coco = json.loads(Path(path).read_text())
    names = {image["id"]: image["file_name"] for image in coco["images"]}
    sizes = {image["file_name"]: (int(image["height"]), int(image["width"])) for image in coco["images"]}
    polygons: dict[str, list[np.ndarray]] = {}
    for annotation in coco["annotations"]:
        shapes = [np.asarray(s, np.float32).reshape(-1, 2) for s in annotation.get("segmentation") or []
                  if isinstance(s, list) and len(s) >= 6]
        if not shapes:
            x, y, w, h = annotation["bbox"]
            shapes = [np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float32)]
        polygons.setdefault(names[annotation["image_id"]], []).extend(shapes)
    return Outlines(sizes, polygons)


def mask_in_model_input(polygons: list[np.ndarray], height: int, width: int, size: int) -> np.ndarray:
    """The outlines filled in as a (size, size) uint8 mask (1 inside) over the letterboxed model input
    of a ``height`` x ``width`` image, i.e. exactly where ``imaging.to_model_input`` puts those pixels."""
    box = letterbox_geometry(height, width, size)
    mask = np.zeros((size, size), np.uint8)
    for polygon in polygons:
        points = polygon * np.float32(box.scale) + np.array([box.left, box.top], np.float32)
        cv2.fillPoly(mask, [np.rint(points).astype(np.int32)], 1)
    return mask


def mask_in_image(polygons: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """The outlines filled in as a (height, width) bool mask in the image's own pixels."""
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.rint(p).astype(np.int32) for p in polygons], 1)
    return mask.astype(bool)

"""Where do the findings miss the fracture: in the box drawn around a peak, or in the peak itself?

    python -m bench.localisation_headroom --out benchmarks/localisation-headroom.json

The served model's networks (an ensemble's members, restored from its folder) run once over the
outlined fractured images of the validation split and of the training split (TensorFlow; their
fracture maps cached in ``--cache``). For each way of combining the members' maps (the served
mean, the first network's alone, the geometric mean, the maximum) and each way of drawing the
boxes (today's region around each peak; that region scaled to the outlines' size, the scale
fitted on the training split's hits; today's top box centred on its peak instead; and, as an
oracle of what a perfect size regression could give, the top box at the size of the image's own
outline nearest its centre), it reports the
share of images whose top candidate, or any candidate, hits an outline as the evaluation counts a
hit, and the top box's IoU with its outline box. Candidates are ungraded (every box the decoding
keeps), so the finding thresholds do not enter. The training split's maps come from images the
networks were trained on: read them as a check on the direction, not as held-out figures.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from fracture_web.config import PROJECT_ROOT, defaults
from fracture_web.datasets import read_records
from fracture_web.evaluation.localisation import Located, bounds, fit_box_scale, hits
from fracture_web.findings import UNSCALED, Box, BoxScale, box_iou, candidates, fine_map, scaled_box, to_image_box
from fracture_web.imaging import decode_image, to_model_input
from fracture_web.inference import read_metadata
from fracture_web.outlines import outlines_beside

DATA = PROJECT_ROOT.parent / "shared" / "data" / "fracatlas"
SPLITS = ("val", "train")
ORACLE = "top box at its outline's size (oracle)"
WAYS = ("region", "scaled to the outlines", "top box centred on its peak", ORACLE)
BATCH = 32
Fusion = Callable[[list[np.ndarray]], np.ndarray]
FUSIONS: dict[str, Fusion] = {
    "mean (served)": lambda maps: np.mean(maps, axis=0),
    "first network alone": lambda maps: maps[0],
    "geometric mean": lambda maps: np.prod(maps, axis=0) ** (1 / len(maps)),
    "maximum": lambda maps: np.max(maps, axis=0),
}


def member_maps(model_dir: Path, data_dir: Path, cache: Path) -> dict[str, list[dict]]:
    """Per split, per outlined fractured image: each member's fracture map (on the first member's
    grid), the image's shape and the outlines' boxes; cached in ``cache``."""
    if cache.is_file():
        return pickle.loads(cache.read_bytes())
    import keras

    from fracture_web.training.ensemble import members_of
    from fracture_web.training.export import member_input

    members = sorted(members_of(model_dir), key=lambda m: -m.input_size)
    size, outlines = members[0].input_size, outlines_beside(data_dir)
    rows: dict[str, list[dict]] = {}
    for split in SPLITS:
        records = read_records(data_dir, split)
        outlined = [(path, outlines.of(path, data_dir)) for path, label in zip(records.paths, records.labels)
                    if label == 1]
        outlined = [(path, found[0]) for path, found in outlined if found is not None]
        rows[split] = []
        for start in range(0, len(outlined), BATCH):
            chunk = outlined[start:start + BATCH]
            pixels = [decode_image(Path(path).read_bytes()).pixels for path, _ in chunk]
            images = keras.ops.convert_to_tensor(np.stack([to_model_input(p, size) for p in pixels]))
            maps = [keras.ops.convert_to_numpy(keras.ops.sigmoid(m.network(member_input(images, m.input_size))[2]))
                    for m in members]
            grid = maps[0].shape[1:3]
            for i, ((_, polygons), image) in enumerate(zip(chunk, pixels)):
                rows[split].append({"maps": [cv2.resize(m[i, ..., 0], grid[::-1], interpolation=cv2.INTER_LINEAR)
                                             for m in maps],
                                    "shape": image.shape[:2], "targets": [bounds(p) for p in polygons]})
    cache.write_bytes(pickle.dumps(rows))
    return rows


def centred(cx: float, cy: float, like: Box) -> Box:
    """A box the size of ``like`` centred on (cx, cy)."""
    half_w, half_h = (like[2] - like[0]) / 2, (like[3] - like[1]) / 2
    return cx - half_w, cy - half_h, cx + half_w, cy + half_h


def on_peak(box: Box, fracture_map: np.ndarray, input_size: int) -> Box:
    """``box`` (the top candidate's) moved so that its centre is the map's peak, which the top
    candidate's is (the fine map :func:`~fracture_web.findings.candidates` reads)."""
    fine = fine_map(fracture_map, input_size)
    y, x = np.unravel_index(int(np.argmax(fine)), fine.shape)
    cell = input_size / fine.shape[0]
    return centred((x + 0.5) * cell, (y + 0.5) * cell, box)


def boxes(row: dict, fused: np.ndarray, input_size: int, way: str, scale: BoxScale) -> list[Box]:
    """The candidates' boxes in the image's pixels, drawn the ``way`` named."""
    drawn = [box for _, box in candidates(fused, input_size)]
    if way == "scaled to the outlines":
        drawn = [scaled_box(box, scale) for box in drawn]
    elif way == "top box centred on its peak":
        drawn = [on_peak(drawn[0], fused, input_size)] + drawn[1:]
    in_image = [to_image_box(box, *row["shape"], input_size) for box in drawn]
    if way == ORACLE:
        in_image[0] = outline_sized(in_image[0], row["targets"])
    return in_image


def outline_sized(box: Box, targets: list[Box]) -> Box:
    """``box`` at the size of the outline box whose centre is nearest its own (the same centre)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return centred(cx, cy, min(targets, key=lambda t: np.hypot((t[0] + t[2]) / 2 - cx, (t[1] + t[3]) / 2 - cy)))


def outline_scale(rows: list[dict], input_size: int) -> BoxScale:
    """The box scale the validation report would fit on ``rows`` (the served mean of the maps)."""
    return fit_box_scale([Located(1, 1.0, [(1.0, box) for box in boxes(row, np.mean(row["maps"], axis=0), input_size,
                                                                       "region", UNSCALED)], row["targets"])
                          for row in rows])


def rates(rows: list[dict], fusion: Fusion, way: str, input_size: int, scale: BoxScale) -> dict:
    """Top-candidate hit rate, any-candidate hit rate and the top box's mean best IoU."""
    top, any_, iou = [], [], []
    for row in rows:
        drawn = boxes(row, fusion(row["maps"]), input_size, way, scale)
        top.append(hits(drawn[0], row["targets"]))
        any_.append(any(hits(box, row["targets"]) for box in drawn))
        iou.append(max(box_iou(drawn[0], t) for t in row["targets"]))
    return {"top_hit": float(np.mean(top)), "any_hit": float(np.mean(any_)), "top_iou": float(np.mean(iou))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--model", type=Path, default=Path(defaults()["MODEL_DIR"]))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/localisation-headroom.pkl"))
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    args = parser.parse_args(argv)
    metadata = read_metadata(args.model)
    size = int(metadata["input_size"])
    rows = member_maps(args.model, args.data_dir, args.cache)
    scale = outline_scale(rows["train"], size)
    print(f"{metadata['model_version']}: outlined fractured images {', '.join(f'{s} {len(rows[s])}' for s in SPLITS)}; "
          f"box scale fitted on train (width, height): {scale[0]:.2f}, {scale[1]:.2f}")
    table = []
    for fusion in FUSIONS:
        for way in WAYS:
            row = {"maps": fusion, "boxes": way,
                   **{split: rates(rows[split], FUSIONS[fusion], way, size, scale) for split in SPLITS}}
            table.append(row)
            print(f"{fusion:20s} {way:38s} " + "  ".join(
                f"{s}: top {row[s]['top_hit']:.3f} any {row[s]['any_hit']:.3f} IoU {row[s]['top_iou']:.3f}"
                for s in SPLITS))
    if args.out:
        args.out.write_text(json.dumps({"model_version": metadata["model_version"], "data_dir": str(args.data_dir),
                                        "images": {s: len(rows[s]) for s in SPLITS}, "box_scale": scale,
                                        "table": table}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The findings table on the validation split for the decoding of an earlier commit and today's,
and how today's box extent fits the radiologists' outline boxes at other extents.

    python -m bench.findings_on_validation                       # before/after tables
    python -m bench.findings_on_validation --extents 0.5 0.6 0.7 0.8

The model runs once per validation image (LiteRT, one thread); its probability and fracture map are
cached in ``--cache``, so later runs decode only. "Before" is ``fracture_web/findings.py`` as it was
at ``--before`` with the model's shipped finding thresholds; "after" is today's decoding (with the
model's box scale) with the thresholds today's :func:`~fracture_web.evaluation.localisation.choose_levels` picks.
"""
from __future__ import annotations

import argparse
import importlib.util
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

from fracture_web.config import PROJECT_ROOT, defaults
from fracture_web.datasets import read_records
from fracture_web.evaluation.localisation import (Located, bounds, choose_levels, findings_table, format_findings,
                                                  outputs_of_records)
from fracture_web.findings import EXTENT, box_iou, candidates, to_image_box
from fracture_web.inference import FractureModel
from fracture_web.outlines import outlines_beside

DATA = PROJECT_ROOT.parent / "shared" / "data" / "fracatlas"
#: The commit whose decoding is "before" (issue 24's starting point: nested boxes, IoU-only suppression).
BEFORE = "50ec3b2"
Decode = Callable[[np.ndarray, int], list]


def model_outputs(data_dir: Path, model_dir: Path, cache: Path) -> list[dict]:
    """Per scored validation image: label, probability, fracture map, image shape and outline boxes
    (fractured images without outlines left out, as ``outputs_of_records`` does); cached in ``cache``."""
    if cache.is_file():
        return pickle.loads(cache.read_bytes())
    model = FractureModel(model_dir, backend="litert", threads=1)
    rows = [{"label": scored.label, "probability": float(scored.outputs["probability"][0]),
             "map": scored.outputs["fracture_map"][0], "shape": scored.shape,
             "targets": [bounds(p) for p in scored.outlines] if scored.outlines is not None else []}
            for scored in outputs_of_records(read_records(data_dir, "val"), outlines_beside(data_dir), data_dir,
                                             model, model.input_size)]
    cache.write_bytes(pickle.dumps(rows))
    return rows


def located(rows: list[dict], decode: Decode, input_size: int) -> list[Located]:
    """The rows as :class:`Located` items, their candidates from ``decode`` in the image's pixels."""
    return [Located(row["label"], row["probability"],
                    [(score, to_image_box(box, *row["shape"], input_size))
                     for score, box in decode(row["map"], input_size)], row["targets"]) for row in rows]


def findings_at(commit: str) -> ModuleType:
    """``fracture_web/findings.py`` as it was at ``commit``, imported beside today's."""
    source = subprocess.run(["git", "show", f"{commit}:fracture_web/findings.py"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, check=True).stdout
    name = f"fracture_web.findings_{commit}"
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader=None))
    module.__package__ = "fracture_web"
    sys.modules[name] = module  # dataclasses look their module up
    exec(compile(source, f"{commit}:fracture_web/findings.py", "exec"), module.__dict__)
    return module


def top_box_fit(items: list[Located]) -> float:
    """Mean over outlined fractured images of the best IoU between the top candidate and an outline box."""
    fits = [max(box_iou(item.candidates[0][1], t) for t in item.targets) if item.candidates else 0.0
            for item in items if item.outlined]
    return float(np.mean(fits)) if fits else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--model", type=Path, default=Path(defaults()["MODEL_DIR"]))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/findings-on-validation.pkl"))
    parser.add_argument("--before", default=BEFORE, help="the commit whose decoding is 'before'")
    parser.add_argument("--extents", type=float, nargs="*", default=[], help="box extents to compare")
    args = parser.parse_args(argv)
    model = FractureModel(args.model, backend="litert", threads=1)
    rows = model_outputs(args.data_dir, args.model, args.cache)
    threshold, lowest = model.thresholds[model.default_operating_point], min(model.thresholds.values())
    before = located(rows, findings_at(args.before).candidates, model.input_size)
    print(f"Before ({args.before}'s decoding, shipped thresholds):")
    print(format_findings(findings_table(before, model.finding_levels, threshold)))
    fits = {}
    for extent in sorted({EXTENT, *args.extents}):
        after = located(rows, lambda fracture_map, size: candidates(fracture_map, size, extent, model.box_scale),
                        model.input_size)
        table = findings_table(after, choose_levels(after, threshold, lowest), threshold, model.box_scale)
        fits[extent] = top_box_fit(after)
        print(f"\nAfter (today's decoding at extent {extent:.2f}{' (shipped)' if extent == EXTENT else ''}, "
              f"thresholds chosen here; top box's IoU with its outline box {fits[extent]:.3f}):")
        print(format_findings(table))
    print(f"\nBest-fitting extent of those tried: {max(fits, key=fits.get):.2f} (shipped: {EXTENT:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

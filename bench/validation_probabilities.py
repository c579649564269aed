"""Every validation image's probability and findings through the app's own analysis, exactly
(probabilities as ``float.hex``), so that a refactoring can be shown to change no answer by a bit.

    python -m bench.validation_probabilities --out before.json            # on the old code
    python -m bench.validation_probabilities --compare before.json        # on the new code: exit 1 on any change

The validation split is the rows of ``labels.csv`` whose ``split`` is ``val``.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from fracture_web.analysis import analyse
from fracture_web.config import PROJECT_ROOT, defaults
from fracture_web.inference import FractureModel

DATA = PROJECT_ROOT.parent / "shared" / "data" / "fracatlas"


def answers(data_dir: Path, model: FractureModel) -> dict[str, list]:
    """Each validation image's exact probability and its findings (box, score), by path."""
    with open(data_dir / "labels.csv", newline="") as table:
        rows = [row for row in csv.DictReader(table) if row["split"] == "val"]
    found = {}
    for row in rows:
        p = analyse((data_dir / row["path"]).read_bytes(), model, images=False).prediction
        found[row["path"]] = [float(p.probability).hex(),
                              [[float(v) for v in f.box] + [float(f.score)] for f in p.findings]]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--model", type=Path, default=Path(defaults()["MODEL_DIR"]))
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--out", type=Path, help="write the answers here")
    what.add_argument("--compare", type=Path, help="compare with answers written earlier")
    args = parser.parse_args(argv)
    found = answers(args.data_dir, FractureModel(args.model))
    if args.out:
        args.out.write_text(json.dumps(found, sort_keys=True) + "\n")
        print(f"{len(found)} validation images written to {args.out}")
        return 0
    before = json.loads(args.compare.read_text())
    changed = sorted(path for path in before.keys() | found.keys() if before.get(path) != found.get(path))
    print(f"{len(found)} validation images; {len(changed)} answers differ from {args.compare}")
    for path in changed[:20]:
        print(f"  {path}: {before.get(path)} -> {found.get(path)}")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Print the verdict and probability for one or more X-ray files (PNG, JPEG, TIFF or DICOM).

    fracture-predict --image PATH [PATH ...] [--json] [--model model/] [--operating-point NAME]
                     [--backend auto|tensorflow|litert] [--threads N]
    (from a checkout: python scripts/predict.py, the same arguments)

The defaults are the settings' (FRACTURE_MODEL_DIR, FRACTURE_BACKEND, FRACTURE_OPERATING_POINT,
FRACTURE_THREADS, FRACTURE_TFLITE_FILE: docs/operations.md, Settings); a flag overrides them.

One line per file, each warning (out of scope, truncated, several frames...) indented under
it. Exits 1 if any file could not be analysed (each says why on stderr).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from fracture_web.analysis import analyse
from fracture_web.cli.model_folder import model_folder_problem
from fracture_web.config import for_command_line
from fracture_web.pixels import InvalidImageError
from fracture_web.inference import FractureModel, ModelLoadError, UnknownOperatingPointError, load_model
from fracture_web.runtimes import BACKENDS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    settings = for_command_line(parser)
    point, threads = settings["OPERATING_POINT"] or "the model's own", settings["THREADS"] or "every core"
    parser.add_argument("--image", "--images", dest="images", type=Path, nargs="+", required=True)
    parser.add_argument("--model", type=Path, default=Path(settings["MODEL_DIR"]),
                        help="model directory (default: %(default)s)")
    parser.add_argument("--operating-point", default=settings["OPERATING_POINT"],
                        help=f"e.g. balanced or high_sensitivity (default: {point})")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--backend", choices=BACKENDS, default=settings["BACKEND"],
                        help="auto serves the fastest verified export where there is one, else the SavedModel; "
                             "litert runs a .tflite file without TensorFlow (FRACTURE_TFLITE_FILE: "
                             f"{settings['TFLITE_FILE']}) (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=settings["THREADS"],
                        help=f"cores one image may use (default: {threads})")
    parser.set_defaults(tflite_file=settings["TFLITE_FILE"])
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, not {args.threads}")
    if folders := [shown(path) for path in args.images if path.is_dir()]:
        parser.error(f"{', '.join(folders)}: a folder; give image files here, or read a whole folder with "
                     "fracture-reread (a CSV of verdicts) or, when it is labelled, fracture-evaluate")
    return args


def shown(path: Path) -> str:
    """The file's name as text any terminal or JSON reader takes: bytes that are not UTF-8 (a share
    mounted with another charset) are written as ``\\xff`` escapes instead of stopping the batch."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def describe(path: Path, model: FractureModel, operating_point: str | None, as_json: bool) -> str:
    """The result for one file: one line, then its warnings (out of scope, truncated, several frames...),
    each on its own indented line, as --json carries them (raises the domain errors)."""
    result = analyse(path.read_bytes(), model, operating_point, images=False)
    if as_json:
        return json.dumps({"file": shown(path), **result.as_dict()})
    p = result.prediction
    verdict = p.verdict.upper() if p.fractured else p.verdict.lower()  # a suspected fracture stands out
    header = f" [{' '.join(result.context.values())}]" if result.context else ""
    boxes = "".join(f"; {f.level} finding at x {f.box[0]:.0f}-{f.box[2]:.0f}, y {f.box[1]:.0f}-{f.box[3]:.0f} "
                    f"(score {f.score:.0%})" for f in p.findings)
    cautions = "".join(f"\n  warning: {warning}" for warning in result.warnings)
    return (f"{shown(path)}{header}: {verdict} (probability {p.probability:.1%}, threshold {p.threshold:.1%}, "
            f"{p.operating_point}){boxes}{cautions}")


def main(argv: list[str] | None = None) -> int:
    """Print one line per file; 1 when any file could not be analysed, 2 when the model cannot be loaded."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if problem := model_folder_problem(args.model):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        model = load_model(args.model, backend=args.backend, tflite_file=args.tflite_file, threads=args.threads)
        model.resolve(args.operating_point)
    except (ModelLoadError, UnknownOperatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    failures = 0
    for path in args.images:
        try:
            print(describe(path, model, args.operating_point, args.json), flush=True)
        except (InvalidImageError, OSError) as err:
            failures += 1
            print(f"{shown(path)}: error: {getattr(err, 'strerror', None) or err}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

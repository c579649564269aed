"""Time the model call of two (or more) model folders in one run, on this machine.

    python -m bench.compare_models --models /tmp/previous-model model --out benchmarks/model-call.json

Each model is loaded as the app loads it (the ``.tflite`` file the app serves from its folder,
through LiteRT, or with ``--runtime savedmodel`` its SavedModel through TensorFlow; one image per
call) and called on the same real radiographs; the calls are interleaved, round after round, so
that a busy moment of the machine falls on every model alike. It reports each model's file, p50
and p90 in ms, its ratio to the first model's p50, and its multiply-adds (from
``model_float32.tflite`` beside it, where there is one). An issue's "the model call may grow by at most 15%" is checked
here, not in a test.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from bench.flops import multiply_adds
from fracture_web.config import DEFAULT_TFLITE_FILE
from fracture_web.imaging import preprocess
from fracture_web.inference import read_metadata
from fracture_web.runtimes import FLOAT_TFLITE_FILE, Runner, available_cores, load_litert, load_savedmodel, served_file

SAMPLES = sorted((Path(__file__).resolve().parents[1] / "data" / "samples").glob("*.jpg"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, nargs="+", required=True, help="model folders; the first is the reference")
    parser.add_argument("--images", type=Path, nargs="+", default=SAMPLES, help="radiographs to call them on")
    parser.add_argument("--rounds", type=int, default=20, help="rounds; each calls every model once per image")
    parser.add_argument("--runtime", choices=("litert", "savedmodel"), default="litert",
                        help="call each folder's float32 .tflite through LiteRT (what the app serves) or its "
                             "SavedModel through TensorFlow")
    parser.add_argument("--out", type=Path, help="write the report here as JSON")
    return parser.parse_args(argv)


def time_calls(models: list[Path], images: list[Path], rounds: int, runtime: str = "litert") -> dict[str, list[float]]:
    """Per model folder, the ms of every call on ``runtime``, interleaved with the other models' calls."""
    threads = available_cores()
    runners, inputs = {}, {}
    for model_dir in models:
        size = int(read_metadata(model_dir)["input_size"])
        runners[str(model_dir)] = (load_litert(model_dir / served_tflite(model_dir), threads) if runtime == "litert"
                                   else load_savedmodel(model_dir, threads))
        inputs[str(model_dir)] = [preprocess(path.read_bytes(), size)[np.newaxis] for path in images]
    return interleaved_calls(runners, inputs, rounds)


def served_tflite(model_dir: Path) -> str:
    """The ``.tflite`` file the app serves from ``model_dir`` by default."""
    return served_file(model_dir, "litert", DEFAULT_TFLITE_FILE, str(read_metadata(model_dir)["model_version"]))


def interleaved_calls(runners: dict[str, Runner], inputs: dict[str, list[np.ndarray]],
                      rounds: int) -> dict[str, list[float]]:
    """Per runner, the ms of every call on its ``inputs`` (batches), the runners called in turn,
    round after round, after a warm-up (graph tracing and first allocations)."""
    for name, run in runners.items():
        for batch in inputs[name][:3]:
            run(batch)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            for batch in inputs[name]:
                start = time.perf_counter()
                run(batch)
                times[name].append((time.perf_counter() - start) * 1000)
    return times


def summarise(models: list[Path], times: dict[str, list[float]], runtime: str) -> dict:
    """p50, p90, ratio to the first model and multiply-adds, per model."""
    reference = float(np.percentile(times[str(models[0])], 50))
    rows = {}
    for model_dir in models:
        calls = times[str(model_dir)]
        tflite = model_dir / FLOAT_TFLITE_FILE
        rows[str(model_dir)] = {
            "model_version": read_metadata(model_dir)["model_version"], "calls": len(calls),
            "file": served_tflite(model_dir) if runtime == "litert" else "the SavedModel",
            "p50_ms": float(np.percentile(calls, 50)), "p90_ms": float(np.percentile(calls, 90)),
            "p50_ratio_to_first": float(np.percentile(calls, 50)) / reference,
            "multiply_adds": multiply_adds(tflite) if tflite.is_file() else None}
    return {"machine": {"cpu": platform.processor() or platform.machine(), "cores_usable": available_cores(),
                        "load_avg": os.getloadavg()}, "runtime": runtime, "models": rows}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = summarise(args.models, time_calls(args.models, args.images, args.rounds, args.runtime), args.runtime)
    for name, row in report["models"].items():
        macs = f", {row['multiply_adds'] / 1e9:.3f} G multiply-adds" if row["multiply_adds"] else ""
        print(f"{name} ({row['model_version']}): p50 {row['p50_ms']:.1f} ms, p90 {row['p90_ms']:.1f} ms, "
              f"{row['p50_ratio_to_first']:.3f}x the first{macs}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The app under gunicorn on two backends at once, timed end to end with requests alternating
between them, so that a busy moment of the machine falls on both alike.

    python -m bench.compare_backends [--backends tensorflow litert onnx auto] [--runs 30] [--out benchmarks/backends.json]

Starts one gunicorn server per backend (by default every runtime the model folder has an export for,
and ``auto``) (``gunicorn.conf.py``, one worker each, ``FRACTURE_BACKEND``
set), then for each upload of the full-size benchmark (bench/benchmark.py: a typical 454x373 JPEG,
a 2304x2880 FracAtlas original as baseline and progressive JPEG, 16-bit PNG and 12-bit MONOCHROME1
DICOM) posts it to ``/api/v1/predict?heatmap=1`` on each server in turn, each request followed by the
bare call of every runtime in this process (bench/benchmark.py's ``bare_calls``: the SavedModel,
the .tflite file, and the ONNX files where there are some). Reports, per upload and backend,
the e2e p50 and p95 in ms, and the p50 of the paired bare call, and the workers' resident memory.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import ExitStack
from http.client import HTTPConnection
from pathlib import Path

import numpy as np

from bench import local_server
from bench.benchmark import FULL_SIZE_SOURCE, API, bare_calls, default_images, full_size_cases, machine, percentiles
from bench.loadgen import multipart
from fracture_web.imaging import decode_image, to_model_input
from fracture_web.inference import read_metadata

ROOT = Path(__file__).resolve().parent.parent
#: The full-size benchmark's uploads compared here (the JPEG 2000 and 32 MB ones take long and add nothing).
CASES = 5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", help="default: every runtime with an export, and auto")
    parser.add_argument("--runs", type=int, default=30, help="timed requests per upload and backend")
    parser.add_argument("--model", type=Path, default=ROOT / "model")
    parser.add_argument("--out", type=Path, help="also write the report here as JSON")
    return parser.parse_args(argv)


def alternate(ports: dict[str, int], data: bytes, bare: dict, model_input: np.ndarray, runs: int) -> dict:
    """One upload, posted to each server in turn ``runs`` times (after 3 untimed rounds), each post
    followed by every runtime's bare call: per backend the e2e percentiles and the paired calls'."""
    body, content_type = multipart(data, "upload")
    connections = {name: HTTPConnection("127.0.0.1", port, timeout=120) for name, port in ports.items()}
    e2e = {name: [] for name in ports}
    calls = {name: {runtime: [] for runtime in bare} for name in ports}
    for round_number in range(-3, runs):
        for name, connection in connections.items():
            started = time.perf_counter()
            connection.request("POST", API, body, {"Content-Type": content_type})
            response = connection.getresponse()
            if response.status != 200:
                raise RuntimeError(f"{name} answered {response.status}: {response.read()[:200]!r}")
            response.read()
            if round_number >= 0:
                e2e[name].append(time.perf_counter() - started)
            for runtime, call in bare.items():
                started = time.perf_counter()
                call(model_input)
                if round_number >= 0:
                    calls[name][runtime].append(time.perf_counter() - started)
    return {name: {"e2e_ms": percentiles(e2e[name]),
                   "paired_bare_call_ms": {runtime: percentiles(t) for runtime, t in calls[name].items()}}
            for name in ports}


def compare(args: argparse.Namespace) -> dict:
    """Every backend's server started, the uploads alternated over them, the servers stopped."""
    size = int(read_metadata(args.model)["input_size"])
    cases = dict(list(full_size_cases(FULL_SIZE_SOURCE, default_images()[0]).items())[:CASES])
    bare = bare_calls(args.model)
    backends = args.backends or [*(name for name in bare if name != "onnx_int8"), "auto"]
    with ExitStack() as stack:
        servers = {name: stack.enter_context(local_server.running_gunicorn(
            {"WEB_CONCURRENCY": "1", "FRACTURE_BACKEND": name, "FRACTURE_MODEL_DIR": str(args.model)}))
            for name in backends}
        ports = {name: server.port for name, server in servers.items()}
        results = {case: alternate(ports, data, bare, to_model_input(decode_image(data, 640).pixels, size),
                                   args.runs) for case, data in cases.items()}
        memory = {name: local_server.worker_memory_mb(server.process.pid) for name, server in servers.items()}
    return {"machine": machine() | {"load_avg_end": os.getloadavg()}, "runs": args.runs, "cases": results,
            "worker_rss_mb": memory}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    report = compare(args)
    for case, by_backend in report["cases"].items():
        cells = [f"{name} {r['e2e_ms']['p50']:6.1f} ms" for name, r in by_backend.items()]
        calls = next(iter(by_backend.values()))["paired_bare_call_ms"]
        cells.append("bare calls " + ", ".join(f"{runtime} {ms['p50']:.1f}" for runtime, ms in calls.items()))
        print(f"{case:32s} " + " | ".join(cells))
    print("worker RSS MB: " + ", ".join(f"{name} {mb[0]:.0f}" for name, mb in report["worker_rss_mb"].items()))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where one API request with the heatmap spends its time, stage by stage, in this process.

For each of the issue's four uploads (a small JPEG, a full-size baseline and progressive JPEG, a
full-size 12-in-16-bit MONOCHROME1 DICOM), interleaved round by round: the whole request through
Flask's test client (``/api/v1/predict?heatmap=1``, the file as the body) with its stage timings
as the app records them, one plain library decode of the file and one bare call of the shipped
model on the served runtime. Prints p50s and the issue's ratio without the transport floor
(there is no socket here): (request − plain decode) / bare call. ``--profile`` adds cProfile's
top entries for the requests of each case.

    nice -n 19 .venv/bin/python bench/stages_in_process.py --rounds 20 [--heatmap 1 jpeg] [--profile]
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.benchmark import FULL_SIZE_SOURCE, default_images, full_size_cases, plain_decode  # noqa: E402
from fracture_web import create_app  # noqa: E402
from fracture_web.timings import STAGES  # noqa: E402
from fracture_web.web import monitoring  # noqa: E402

#: The issue's four cases, by the names ``full_size_cases`` gives them.
CASES = ("JPEG", "baseline JPEG", "progressive JPEG", "MONOCHROME1 DICOM")
API = "/api/v1/predict?heatmap="


def cases() -> dict[str, bytes]:
    """The four uploads of the issue, keyed by a short name."""
    made = full_size_cases(FULL_SIZE_SOURCE, default_images(1)[0])
    return {short: next(data for name, data in made.items() if name.startswith(short + " "))
            for short in CASES}


def record_stages(entries: list) -> None:
    """Keep each request's stage timings (the app hands them to the metrics; here also to us)."""
    original = monitoring.metrics.record_stages

    def keep(timings):
        entries.append(list(timings.entries))
        original(timings)
    monitoring.metrics.record_stages = keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--heatmap", nargs="+", default=["1"],
                        help="the ?heatmap= values to time, interleaved (1: PNG, jpeg: JPEG)")
    parser.add_argument("--profile", action="store_true", help="cProfile the requests of each case")
    args = parser.parse_args()
    folder = tempfile.mkdtemp()
    app = create_app({"TESTING": True, "MODEL_DIR": str(ROOT / "model"), "DATABASE_URL": f"sqlite:///{folder}/r.db"})
    model = app.extensions["fracture_model"]
    stages: list = []
    record_stages(stages)
    uploads = {f"{name} ?heatmap={value}": (data, value) for name, data in cases().items() for value in args.heatmap}
    profiles = {name: cProfile.Profile() if args.profile else None for name in uploads}
    client, times = app.test_client(), defaultdict(lambda: defaultdict(list))
    for round_ in range(args.rounds + 2):
        for name, (data, value) in uploads.items():
            row = time_one(client, model, data, value, profiles[name], stages)
            if round_ >= 2:  # after two warm-up rounds
                for column, seconds in row.items():
                    times[name][column].append(seconds)
    report(times, model.backend)
    for name, profile in profiles.items():
        if profile is not None:
            print(f"\n--- cProfile, {name} ---")
            pstats.Stats(profile).sort_stats("tottime").print_stats(18)


def time_one(client, model, data: bytes, heatmap: str, profile: cProfile.Profile | None, stages: list) -> dict:
    """Seconds of one plain decode, one request (and each of its stages) and one bare model call."""
    decode = plain_decode(data)
    started = time.perf_counter()
    decode()
    row = {"plain decode": time.perf_counter() - started}
    stages.clear()
    started = time.perf_counter()
    if profile:
        profile.enable()
    response = client.post(f"{API}{heatmap}", data=data, content_type="application/octet-stream")
    if profile:
        profile.disable()
    row["request"] = time.perf_counter() - started
    assert response.status_code == 200, response.get_data(as_text=True)[:200]
    blank = np.zeros((1, model.input_size, model.input_size, 1), np.float32)
    started = time.perf_counter()
    model.outputs(blank)
    row["bare call"] = time.perf_counter() - started
    return row | {stage: sum(seconds for kind, seconds in stages[0] if kind == stage) for stage in STAGES}


def report(times: dict, backend: str) -> None:
    """One line per case: p50 milliseconds of each measure, then the ratio."""
    columns = ("request", "plain decode", "bare call", *STAGES)
    print(f"p50 ms, in process; bare call on {backend}")
    print(f"{'case':<34}" + "".join(f"{column:>14}" for column in columns) + f"{'ratio':>8}")
    for name, row in times.items():
        p50 = {column: statistics.median(row[column]) * 1000 for column in columns}
        ratio = (p50["request"] - p50["plain decode"]) / p50["bare call"]
        print(f"{name:<34}" + "".join(f"{p50[column]:>14.1f}" for column in columns) + f"{ratio:>8.2f}")


if __name__ == "__main__":
    main()

"""Load test: the app under gunicorn with the shipped model, N concurrent clients for T seconds.

    python -m bench.loadtest --clients 16 --seconds 60 [--images data/samples/*.jpg] [--out load.json]
    python -m bench.loadtest --kill-worker-after 20      # fault: SIGKILL one worker mid-run

Starts gunicorn with gunicorn.conf.py on a free loopback port, waits for /healthz, then each
client posts real X-rays to /api/v1/predict in a loop. Reports requests, errors, latency
p50/p95/p99, throughput, worker restarts and the workers' resident memory before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from bench.loadgen import multipart, run_clients, summarise
from bench.local_server import running_gunicorn, worker_memory_mb, worker_pids

ROOT = Path(__file__).resolve().parent.parent


def kill_a_worker(master_pid: int, after: float) -> int:
    """SIGKILL the first worker after ``after`` seconds; returns its pid."""
    time.sleep(after)
    pid = worker_pids(master_pid)[0]
    os.kill(pid, signal.SIGKILL)
    return pid


def main(argv: list[str] | None = None) -> int:
    """Run the load test and print its report; 1 on errors, restarts or a worker not replaced."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--images", type=Path, nargs="+", default=sorted((ROOT / "data" / "samples").glob("*.jpg")))
    parser.add_argument("--out", type=Path, help="also write the report as JSON")
    parser.add_argument("--kill-worker-after", type=float, metavar="SECONDS",
                        help="kill one worker this long into the run; it must be replaced and serving go on")
    args = parser.parse_args(argv)
    bodies = [multipart(path.read_bytes(), path.name) for path in args.images]
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"loadtest-gunicorn-{os.getpid()}.log"
    with running_gunicorn(log=log_path) as server:
        master = server.process.pid
        memory_before = worker_memory_mb(master)
        during = (lambda: kill_a_worker(master, args.kill_worker_after)) if args.kill_worker_after else None
        results, killed = run_clients(server.port, bodies, args.clients, args.seconds, during=during)
        memory_after = worker_memory_mb(master)
    boots = log_path.read_text().count("Booting worker")
    expected_boots = len(memory_before) + (1 if killed else 0)
    report = {"clients": args.clients, "seconds": args.seconds, **summarise(results, args.seconds),
              "ready_after_s": server.ready_s, "killed_worker": killed,
              "worker_replaced": boots >= expected_boots if killed else None,
              "worker_restarts": boots - expected_boots,
              "worker_rss_mb_before": memory_before, "worker_rss_mb_after": memory_after}
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    if killed:  # requests in flight on the killed worker fail; the rest must succeed
        return 0 if report["worker_replaced"] and report["errors"] <= args.clients else 1
    return 0 if report["errors"] == 0 and report["worker_restarts"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

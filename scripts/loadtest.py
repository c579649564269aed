"""Load test: the app under gunicorn with the shipped model, N concurrent clients for T seconds.

    python scripts/loadtest.py --clients 16 --seconds 60 [--images data/samples/*.jpg] [--out load.json]
    python scripts/loadtest.py --kill-worker-after 20      # fault: SIGKILL one worker mid-run

Starts gunicorn with gunicorn.conf.py on a free loopback port, waits for /healthz, then each
client posts real X-rays to /api/v1/predict in a loop. Reports requests, errors, latency
p50/p95/p99, throughput, worker restarts and the workers' resident memory before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from http.client import HTTPConnection
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def multipart(data: bytes, name: str) -> tuple[bytes, str]:
    """A multipart/form-data body with one file in the field ``file``."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def client_loop(port: int, bodies: list[tuple[bytes, str]], stop_at: float, results: list, seed: int,
                path: str = "/api/v1/predict") -> None:
    """Post images to ``path`` until ``stop_at``; append (latency seconds, ok) per request."""
    rng = np.random.default_rng(seed)
    connection = HTTPConnection("127.0.0.1", port, timeout=60)
    while time.monotonic() < stop_at:
        body, content_type = bodies[rng.integers(len(bodies))]
        started = time.monotonic()
        try:
            connection.request("POST", path, body, {"Content-Type": content_type})
            response = connection.getresponse()
            ok = response.status == 200 and b'"label"' in response.read()
        except OSError:
            ok = False
            connection.close()
            connection = HTTPConnection("127.0.0.1", port, timeout=60)
        results.append((time.monotonic() - started, ok))


def run_clients(port: int, bodies: list[tuple[bytes, str]], clients: int, seconds: float,
                path: str = "/api/v1/predict", during: Callable[[], object] | None = None) -> tuple[list, object]:
    """``clients`` concurrent client loops for ``seconds``; returns their (latency, ok) results
    and what ``during`` (called once the clients are running) returned."""
    results: list[tuple[float, bool]] = []
    stop_at = time.monotonic() + seconds
    threads = [threading.Thread(target=client_loop, args=(port, bodies, stop_at, results, i, path))
               for i in range(clients)]
    for thread in threads:
        thread.start()
    outcome = during() if during else None
    for thread in threads:
        thread.join()
    return results, outcome


def summarise(results: list[tuple[float, bool]], seconds: float) -> dict:
    """Requests, errors, throughput and latency percentiles of one run."""
    latencies = np.array([r[0] for r in results]) * 1000
    return {"requests": len(results), "errors": sum(1 for r in results if not r[1]),
            "throughput_rps": len(results) / seconds,
            "latency_ms": {f"p{q}": float(np.percentile(latencies, q)) for q in (50, 95, 99)} if len(results) else {}}


def worker_memory_mb(master_pid: int) -> list[float]:
    """Resident memory of each gunicorn worker (children of the master), from /proc."""
    out = subprocess.run(["ps", "--ppid", str(master_pid), "-o", "rss="], capture_output=True, text=True)
    return [int(v) / 1024 for v in out.stdout.split()]


def kill_a_worker(master_pid: int, after: float) -> int:
    """SIGKILL the first worker after ``after`` seconds; returns its pid."""
    time.sleep(after)
    out = subprocess.run(["ps", "--ppid", str(master_pid), "-o", "pid="], capture_output=True, text=True)
    pid = int(out.stdout.split()[0])
    os.kill(pid, signal.SIGKILL)
    return pid


def start_server(port: int, log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """gunicorn with gunicorn.conf.py on ``port``; ``env`` adds settings (e.g. FRACTURE_BACKEND)."""
    env = os.environ | {"BIND": f"127.0.0.1:{port}", "TF_CPP_MIN_LOG_LEVEL": "2"} | (env or {})
    gunicorn = Path(sys.executable).parent / "gunicorn"
    return subprocess.Popen([str(gunicorn), "-c", "gunicorn.conf.py"], cwd=ROOT, env=env,
                            stdout=log_path.open("w"), stderr=subprocess.STDOUT)


def free_port() -> int:
    """A loopback port that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(port: int, timeout: float = 180) -> float:
    """Seconds until /healthz answers 200."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("the server did not become ready")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--images", type=Path, nargs="+", default=sorted((ROOT / "data" / "samples").glob("*.jpg")))
    parser.add_argument("--out", type=Path, help="also write the report as JSON")
    parser.add_argument("--kill-worker-after", type=float, metavar="SECONDS",
                        help="kill one worker this long into the run; it must be replaced and serving go on")
    args = parser.parse_args(argv)
    bodies = [multipart(path.read_bytes(), path.name) for path in args.images]
    port = free_port()
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"loadtest-gunicorn-{port}.log"
    server = start_server(port, log_path)
    try:
        ready_s = wait_ready(port)
        memory_before = worker_memory_mb(server.pid)
        during = (lambda: kill_a_worker(server.pid, args.kill_worker_after)) if args.kill_worker_after else None
        results, killed = run_clients(port, bodies, args.clients, args.seconds, during=during)
        memory_after = worker_memory_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
    boots = log_path.read_text().count("Booting worker")
    expected_boots = len(memory_before) + (1 if killed else 0)
    report = {"clients": args.clients, "seconds": args.seconds, **summarise(results, args.seconds),
              "ready_after_s": ready_s, "killed_worker": killed,
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

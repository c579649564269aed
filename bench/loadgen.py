"""HTTP load for the app's JSON API: multipart bodies, concurrent client loops and their summary.

Used by ``bench/loadtest.py`` and ``bench/benchmark.py`` against a server on loopback (see
:mod:`bench.local_server`). Standard library and numpy; no Flask.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from http.client import HTTPConnection
from pathlib import Path

import numpy as np

#: The JSON API's path, as the load test posts to it.
API_PATH = "/api/v1/predict"
Body = tuple[bytes, str]  # (multipart body, its Content-Type header)
Result = tuple[float, bool]  # (latency in seconds, answered 200 with a verdict)


def multipart(data: bytes, name: str) -> Body:
    """A multipart/form-data body with one file in the field ``file``, and its Content-Type."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post_file(port: int, path: Path, api: str = API_PATH, timeout: float = 60) -> tuple[int, bytes]:
    """POST one file to ``api`` on loopback ``port``; the status and the body of the answer."""
    body, content_type = multipart(path.read_bytes(), path.name)
    connection = HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", api, body, {"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def client_loop(port: int, bodies: list[Body], stop_at: float, results: list[Result], seed: int,
                path: str = API_PATH) -> None:
    """Post randomly chosen bodies to ``path`` until ``stop_at`` (``time.monotonic``); append
    (latency seconds, ok) per request to ``results``."""
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
    connection.close()


def run_clients(port: int, bodies: list[Body], clients: int, seconds: float, path: str = API_PATH,
                during: Callable[[], object] | None = None) -> tuple[list[Result], object]:
    """``clients`` concurrent client loops for ``seconds``; returns their (latency, ok) results
    and what ``during`` (called once the clients are running) returned."""
    results: list[Result] = []
    stop_at = time.monotonic() + seconds
    threads = [threading.Thread(target=client_loop, args=(port, bodies, stop_at, results, i, path))
               for i in range(clients)]
    for thread in threads:
        thread.start()
    outcome = during() if during else None
    for thread in threads:
        thread.join()
    return results, outcome


def summarise(results: list[Result], seconds: float) -> dict:
    """Requests, errors, throughput and latency percentiles (ms) of one run."""
    latencies = np.array([latency for latency, _ok in results]) * 1000
    return {"requests": len(results), "errors": sum(1 for _latency, ok in results if not ok),
            "throughput_rps": len(results) / seconds,
            "latency_ms": {f"p{q}": float(np.percentile(latencies, q)) for q in (50, 95, 99)} if len(results) else {}}

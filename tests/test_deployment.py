"""Hospital IT's story: gunicorn refuses to start without a usable model, in one clear line."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import local_server
from bench.loadgen import multipart, summarise
from helpers import ROOT, running_gunicorn


def start_gunicorn(model_dir: Path, **settings: str) -> subprocess.CompletedProcess:
    env = os.environ | {"FRACTURE_MODEL_DIR": str(model_dir), "BIND": "127.0.0.1:0", "WEB_CONCURRENCY": "1"} | settings
    return subprocess.run([str(Path(sys.executable).parent / "gunicorn"), "-c", "gunicorn.conf.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("damage", ["missing", "corrupt weights", "garbled metadata"])
def test_startup_fails_fast_with_one_clear_line_when_the_model_is_unusable(damage, tiny_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    if damage != "missing":
        shutil.copytree(tiny_model_dir, model_dir)
    if damage == "corrupt weights":  # the SavedModel and its .tflite exports alike
        for weights in [model_dir / "saved_model.pb", *model_dir.glob("*.tflite")]:
            weights.write_bytes(b"not a model")
    if damage == "garbled metadata":
        (model_dir / "metadata.json").write_text('{"model_version": 1}')
    done = start_gunicorn(model_dir)
    assert done.returncode != 0
    reasons = [line for line in done.stderr.splitlines() if "cannot start:" in line]
    assert reasons and str(model_dir) in reasons[0]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("name, value", [("FRACTURE_API_TOKEN", "false"), ("FRACTURE_MAX_CONTENT_LENGTH", "32 MB!")])
def test_startup_fails_fast_with_one_clear_line_when_a_setting_is_malformed(name, value, tiny_model_dir):
    done = start_gunicorn(tiny_model_dir, **{name: value})
    assert done.returncode != 0
    reasons = [line for line in done.stderr.splitlines() if "cannot start:" in line]
    assert reasons and name in reasons[0]
    assert "Traceback" not in done.stderr


def test_a_client_that_disconnects_mid_upload_leaves_the_server_healthy(tiny_model_dir):
    import json
    import socket
    import time
    import urllib.request

    with running_gunicorn(FRACTURE_MODEL_DIR=str(tiny_model_dir), GUNICORN_THREADS="2") as (url, port):
        for _ in range(4):  # more abandoned uploads than the worker has threads
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(b"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                             b"boundary=b\r\nContent-Length: 1000000\r\n\r\n--b\r\nContent-Disposition: form-data; "
                             b'name="file"; filename="a.jpg"\r\n\r\n' + b"\xff\xd8" * 1000)
        time.sleep(1)
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as response:
            assert response.status == 200
        body, boundary = SAMPLE_UPLOAD
        request = urllib.request.Request(f"{url}/api/v1/predict", data=body,
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["label"] in ("fractured", "not_fractured")
    with pytest.raises(OSError):  # the helper stopped the server it started
        urllib.request.urlopen(f"{url}/healthz", timeout=5)


def test_the_server_helper_says_at_once_when_the_server_dies_during_startup(tmp_path):
    import time

    started = time.monotonic()
    with pytest.raises(local_server.ServerStartError, match="exited"):
        with local_server.running_gunicorn({"FRACTURE_MODEL_DIR": str(tmp_path / "nowhere"),
                                            "WEB_CONCURRENCY": "1"}, timeout=120):
            pass
    assert time.monotonic() - started < 60  # not only when the timeout runs out


def test_the_load_generator_posts_what_the_api_accepts_and_counts_what_it_got(client, sample_bytes):
    body, content_type = multipart(sample_bytes, "x.jpg")
    response = client.post("/api/v1/predict", data=body, content_type=content_type)
    assert response.status_code == 200 and "label" in response.get_json()
    summary = summarise([(0.010, True), (0.020, True), (0.030, False), (0.040, True)], seconds=2)
    assert (summary["requests"], summary["errors"], summary["throughput_rps"]) == (4, 1, 2.0)
    assert summary["latency_ms"]["p50"] == pytest.approx(25.0)


def _sample_upload() -> tuple[bytes, str]:
    from helpers import SAMPLES

    boundary = "sampleboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jpg\"\r\n\r\n").encode()
    return body + SAMPLES[0].read_bytes() + f"\r\n--{boundary}--\r\n".encode(), boundary


SAMPLE_UPLOAD = _sample_upload()


def test_stalled_uploads_time_out_instead_of_blocking_the_server(tiny_model_dir):
    import socket
    import time
    import urllib.request

    stalled = []
    try:
        with running_gunicorn(FRACTURE_MODEL_DIR=str(tiny_model_dir), GUNICORN_THREADS="2",
                              FRACTURE_UPLOAD_TIMEOUT="2") as (url, port):
            for _ in range(4):  # twice as many stalled uploads as the worker has threads, left open
                sock = socket.create_connection(("127.0.0.1", port))
                sock.sendall(b"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                             b"boundary=b\r\nContent-Length: 1000000\r\n\r\n--b\r\n")
                stalled.append(sock)
            started = time.monotonic()
            with urllib.request.urlopen(f"{url}/healthz", timeout=30) as response:
                assert response.status == 200
            assert time.monotonic() - started < 15
            stalled[0].settimeout(10)
            assert b" 408 " in stalled[0].recv(200)  # the stalled client is told why
    finally:
        for sock in stalled:
            sock.close()


def test_a_worker_gives_back_the_memory_of_large_uploads_once_they_stop(tiny_model_dir):
    # A PACS script sends a run of 30 MB files; a while after the last one the worker is back to its
    # steady size (gunicorn.conf.py: one malloc arena, free memory handed back after the run).
    import time
    from http.client import HTTPConnection

    def post(port: int, body: bytes, times: int) -> None:
        connection = HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(times):  # refused as no image, but only after the whole body was read into memory
            connection.request("POST", "/api/v1/predict", body, {"Content-Type": "application/octet-stream"})
            assert connection.getresponse().read()
        connection.close()

    env = {"WEB_CONCURRENCY": "1", "FRACTURE_MODEL_DIR": str(tiny_model_dir), "MALLOC_TRIM_IDLE_S": "0.5"}
    with local_server.running_gunicorn(env, timeout=120) as server:
        post(server.port, b"x" * 1000, 5)
        steady = local_server.worker_memory_mb(server.process.pid)[0]
        post(server.port, bytes(30 << 20), 5)  # up to 60-90 MB more while they come
        time.sleep(2)
        settled = local_server.worker_memory_mb(server.process.pid)[0]
    # With a malloc arena per thread (MALLOC_ARENA_MAX=8) this worker kept 35-90 MB for good.
    assert settled < steady + 10, (steady, settled)

"""An attacker's story against the app under gunicorn, without nginx in front: slow uploads, slow
headers, broken chunked bodies, oversized bodies sent in chunks, and large bodies without the token."""
from __future__ import annotations

import select
import socket
import threading
import time
import urllib.request

import pytest

from helpers import running_gunicorn

TOKEN = "site-token-for-the-test-suite"
#: The whole-body deadline the server gets here (seconds); the default is 60.
DEADLINE = 3
LIMIT = 1 << 20  # MAX_CONTENT_LENGTH here


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    """gunicorn, one worker of two threads, a short upload deadline, an access token."""
    with running_gunicorn(FRACTURE_MODEL_DIR=str(tiny_model_dir), GUNICORN_THREADS="2",
                          FRACTURE_UPLOAD_TIMEOUT=str(DEADLINE), FRACTURE_UPLOAD_MIN_RATE="0",
                          FRACTURE_API_TOKEN=TOKEN, FRACTURE_MAX_CONTENT_LENGTH=str(LIMIT),
                          GUNICORN_HEADER_TIMEOUT=str(DEADLINE)) as (url, port):
        yield url, port


def head(length: int | None = 1000, token: bool = True) -> bytes:
    size = b"Transfer-Encoding: chunked\r\n" if length is None else b"Content-Length: %d\r\n" % length
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode() if token else b""
    return b"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n" + auth + size + b"\r\n"


def exchange(port: int, request: bytes, timeout: float = 15) -> bytes:
    """Send ``request`` and read one whole answer: its head, then as much body as it announces (the
    head and the body can arrive in separate packets), or until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer) < _announced_length(answer):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        return answer


def _announced_length(answer: bytes) -> int:
    """The length of the whole answer as its head announces it (head plus Content-Length)."""
    head, _, _ = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + 4 + int(value)
    return len(head) + 4


def trickle(port: int, first: bytes, answers: list, stop: threading.Event) -> None:
    """Send ``first``, then one byte every half second, keeping the server's answer, until the server
    closes the connection (or the test stops)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(first)
        answer = b""
        while not stop.is_set():
            try:
                if select.select([sock], [], [], 0.5)[0]:
                    data = sock.recv(65536)
                    if not data:
                        break
                    answer += data
                sock.sendall(b"x")
            except OSError:
                break
        answers.append(answer)


def tricklers(port: int, first: bytes, count: int = 4):
    """``count`` slow clients, twice as many as the worker has threads; returns (answers, stop, threads)."""
    answers, stop = [], threading.Event()
    threads = [threading.Thread(target=trickle, args=(port, first, answers, stop), daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return answers, stop, threads


def healthz_seconds(url: str) -> float:
    started = time.monotonic()
    with urllib.request.urlopen(f"{url}/healthz", timeout=30) as response:
        assert response.status == 200
    return time.monotonic() - started


def test_bodies_trickled_by_more_clients_than_threads_get_408_and_others_are_still_served(server):
    url, port = server
    answers, stop, threads = tricklers(port, head(10_000))  # one byte every 0.5 s: never a gap of 3 s
    time.sleep(0.5)
    try:
        # Each pair of tricklers holds both threads for one deadline at most.
        assert healthz_seconds(url) < 2 * DEADLINE + 5
        for thread in threads:
            thread.join(timeout=2 * DEADLINE + 5)
    finally:
        stop.set()
    assert len(answers) == 4 and all(b" 408 " in answer for answer in answers), answers


@pytest.mark.parametrize("first", [b"GET /healthz HTTP/1.1\r\nX-Slow: ",
                                   b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n"],
                         ids=["slow headers", "a slow body the app does not read"])
def test_slow_requests_by_more_clients_than_threads_do_not_hold_the_threads(server, first):
    url, port = server
    answers, stop, threads = tricklers(port, first)
    time.sleep(0.5)
    try:
        assert healthz_seconds(url) < 2 * DEADLINE + 5
    finally:
        stop.set()


def test_a_malformed_chunked_body_gets_400_not_500(server):
    answer = exchange(server[1], head(None) + b"ZZ\r\nab\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ") and b"could not be understood" in answer


def test_a_chunked_body_over_the_limit_gets_413_not_a_verdict_on_its_first_part(server, sample_bytes):
    body = sample_bytes * (LIMIT // len(sample_bytes) + 1)
    answer = exchange(server[1], head(None) + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413 ")
    fits = sample_bytes[:LIMIT]
    answer = exchange(server[1], head(None) + b"%x\r\n" % len(fits) + fits + b"\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_a_large_upload_without_the_token_is_refused_at_once_and_not_read(server):
    with socket.create_connection(("127.0.0.1", server[1]), timeout=15) as sock:
        sock.sendall(head(31 << 20, token=False) + bytes(16 << 10))  # announces 31 MB, sends 16 KB of it
        started = time.monotonic()
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 401 ")
        while sock.recv(65536):  # the server closes instead of waiting for the rest of the body
            pass                 # (gunicorn would wait 5 s for it, then 2 s more for the client to close)
        assert time.monotonic() - started < 4


def test_the_deadline_counts_the_whole_body_and_a_minimum_rate_after_a_grace_period():
    from fracture_web.web.uploads import Deadline

    client, server_side = socket.socketpair()
    with client, server_side:
        reader = Deadline(server_side, seconds=0.6)
        for _ in range(3):  # a byte every 0.15 s: each wait is short, but the whole body is not
            client.sendall(b"x")
            assert reader.recv(10) == b"x"
            time.sleep(0.15)
        time.sleep(0.3)
        with pytest.raises(TimeoutError):
            reader.recv(10)
        slow = Deadline(server_side, seconds=60, min_rate=1000, grace=0.2)
        client.sendall(b"y" * 100)
        assert slow.recv(1000) == b"y" * 100  # within the grace period
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            slow.recv(1000)  # 100 bytes in the first 0.2 s: under 1000 B/s once the grace period is over
        assert time.monotonic() - started < 1

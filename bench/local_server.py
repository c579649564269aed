"""The app under gunicorn on a free loopback port: start it, wait for ``/healthz``, read its
workers' memory, stop it.

The one implementation that the test suite, ``bench/loadtest.py``, ``bench/benchmark.py`` and
``scripts/offline_install_check.py`` use. No Flask: gunicorn imports the app in its own
processes, with ``gunicorn.conf.py`` from the checkout. Not part of the product (serving never imports it).

    python -m bench.local_server --post data/samples/hand_fractured_IMG0000019.jpg
        # start, wait until ready, post the image to /api/v1/predict, print the answer, stop
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.loadgen import post_file

#: The checkout: gunicorn runs from here, with its gunicorn.conf.py.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ServerStartError(RuntimeError):
    """The server exited, or did not answer ``/healthz`` with 200, before it was ready."""


@dataclass(frozen=True)
class Server:
    """A started server: its port, its process (gunicorn's master) and how long it took to be ready."""

    port: int
    process: subprocess.Popen
    ready_s: float

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:40123``."""
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    """A loopback port that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(port: int, env: Mapping[str, str] | None = None, log: Path | None = None,
                   app: str | None = None) -> subprocess.Popen:
    """gunicorn with the checkout's ``gunicorn.conf.py`` on ``127.0.0.1:port``, from this
    interpreter's environment; ``env`` adds settings (e.g. ``FRACTURE_BACKEND``), ``log`` takes
    its output (else it is discarded), ``app`` serves another WSGI app (``module:name``) than ours."""
    env = os.environ | {"BIND": f"127.0.0.1:{port}", "TF_CPP_MIN_LOG_LEVEL": "2"} | dict(env or {})
    gunicorn = Path(sys.executable).parent / "gunicorn"
    output = log.open("w") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen([str(gunicorn), "-c", "gunicorn.conf.py", *([app] if app else [])], cwd=PROJECT_ROOT,
                                env=env, stdout=output, stderr=subprocess.STDOUT)
    finally:
        if log:
            output.close()  # the server holds its own copy


def wait_ready(port: int, process: subprocess.Popen | None = None, timeout: float = 180) -> float:
    """Seconds until ``/healthz`` on ``port`` answers 200; ``ServerStartError`` if ``process``
    exits first or ``timeout`` passes."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process is not None and process.poll() is not None:
            raise ServerStartError(f"the server exited with code {process.returncode} during start-up")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except OSError:
            time.sleep(0.5)
    raise ServerStartError(f"the server on port {port} was not ready after {timeout:g} s")


def stop(process: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM, then wait for the process (gunicorn stops its workers first)."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running_process(command: list[str], log: Path, env: Mapping[str, str] | None = None,
                    timeout: float = 30) -> Iterator[subprocess.Popen]:
    """A child process run from the project root, logging to ``log``, stopped (SIGTERM, then SIGKILL
    after ``timeout`` seconds) on leaving: the servers the tests and the DICOM burst start."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=PROJECT_ROOT)
        try:
            yield process
        finally:
            stop(process, timeout)


@contextmanager
def running_gunicorn(env: Mapping[str, str] | None = None, log: Path | None = None,
                     timeout: float = 180) -> Iterator[Server]:
    """gunicorn on a free loopback port, yielded once ready and stopped afterwards."""
    port = free_port()
    process = start_gunicorn(port, env, log)
    try:
        yield Server(port, process, wait_ready(port, process, timeout))
    finally:
        stop(process)


def worker_pids(master_pid: int) -> list[int]:
    """The pids of a gunicorn master's workers (its child processes)."""
    return [int(pid) for pid in _ps("--ppid", str(master_pid), "-o", "pid=")]


def worker_memory_mb(master_pid: int) -> list[float]:
    """Resident memory of each gunicorn worker, in MB."""
    return [int(kb) / 1024 for kb in _ps("--ppid", str(master_pid), "-o", "rss=")]


def process_memory_mb(pid: int) -> list[float]:
    """Resident memory of one process, in MB (a list, like :func:`worker_memory_mb`)."""
    return [int(kb) / 1024 for kb in _ps("-p", str(pid), "-o", "rss=")]


def _ps(*args: str) -> list[str]:
    """The words ``ps`` prints for ``args`` (none when no process matches)."""
    return subprocess.run(["ps", *args], capture_output=True, text=True).stdout.split()


def main(argv: list[str] | None = None) -> int:
    """Serve, post one image, print the answer; 0 when it carries a label."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--post", type=Path, required=True, help="image to send to /api/v1/predict")
    parser.add_argument("--log", type=Path, help="file for gunicorn's output")
    parser.add_argument("--env", nargs="*", default=[], metavar="NAME=VALUE", help="settings for the server")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    try:
        with running_gunicorn(env, args.log) as server:
            status, body = post_file(server.port, args.post)
    except ServerStartError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(body.decode("utf-8", "replace"))
    return 0 if status == 200 and b'"label"' in body else 1


if __name__ == "__main__":
    sys.exit(main())

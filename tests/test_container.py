"""The container image as a site builds and runs it: the slim variant built from the Dockerfile with
buildah, its gunicorn answering ``/healthz`` and a verdict over HTTP, its own health check passing, and
the same image starting the DICOM node and a worker.

The build is what docs/operations.md (Docker) shows, ``buildah bud --format docker --build-arg
REQUIREMENTS=requirements-slim.txt -t fracture-web:slim .``, plus what only this machine needs
(:meth:`containers.Buildah.build_options`). Everything, the base image included, is made in a temporary
folder and removed afterwards; the build takes minutes.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from contextlib import suppress
from pathlib import Path

import pytest

from bench.loadgen import post_file
from bench.local_server import free_port, wait_ready
from containers import BASE_IMAGE, Buildah, missing_tools
from fracture_web.config import DEFAULT_TFLITE_FILE
from fracture_web.runtimes import served_file

from helpers import ROOT, SAMPLES

IMAGE = "fracture-web:slim"
#: The build as the docs give it (the context, ".", is the checkout).
USER_BUILD = ["bud", "--format", "docker", "--build-arg", "REQUIREMENTS=requirements-slim.txt", "-t", IMAGE]
#: The size the slim image must stay under (bytes, as buildah counts them, on the Debian stand-in base).
#: The aim is 600 MB; the pinned slim requirements alone (OpenCV, LiteRT, NumPy, with
#: their byte code) take most of that, so this guards against growth, not the aim.
SLIM_LIMIT = 900_000_000


@pytest.fixture(scope="module")
def buildah(tmp_path_factory):
    """buildah with the slim image built from the Dockerfile in a storage of its own, removed afterwards."""
    reason = missing_tools()
    if reason:
        pytest.skip(f"the container test needs buildah and mmdebstrap: {reason}")
    folder = tmp_path_factory.mktemp("buildah")
    tool = Buildah(folder)
    try:
        started = time.monotonic()
        tool.make_base_image()
        tool(*USER_BUILD, *tool.build_options(), str(ROOT), log=folder / "build.log")
        print(f"\nbase image and slim build: {time.monotonic() - started:.0f} s; base {tool.size(BASE_IMAGE) / 1e6:.0f} MB, "
              f"slim {tool.size(IMAGE) / 1e6:.0f} MB")
        yield tool
    finally:
        with suppress(subprocess.CalledProcessError):  # a failed clean-up must not hide the test's failure
            tool("rmi", "--all", "--force")
        if not mounted_under(folder):  # never delete through a mount left behind (the host's trust store)
            shutil.rmtree(folder, ignore_errors=True)


def mounted_under(folder: Path) -> bool:
    """Whether anything is still mounted inside ``folder``."""
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    return any(line.split()[1].startswith(f"{folder}/") for line in mounts)


def image_config(tool: Buildah) -> dict:
    """The built image's Docker configuration (command, user, health check)."""
    return json.loads(tool("inspect", "--type", "image", IMAGE))["Docker"]["config"]


def test_the_slim_image_is_small_runs_as_a_user_and_keeps_its_health_check(buildah):
    config = image_config(buildah)
    assert buildah.size(IMAGE) < SLIM_LIMIT
    assert config["User"] == "clinic"
    assert config["Healthcheck"]["Test"][0] == "CMD-SHELL"


def shipped_tflite_file() -> str:
    """The ``.tflite`` file LiteRT serves from the checkout's model folder by default."""
    version = json.loads((ROOT / "model" / "metadata.json").read_text())["model_version"]
    return served_file(ROOT / "model", "litert", DEFAULT_TFLITE_FILE, version)


def test_the_running_container_answers_healthz_and_gives_a_verdict(buildah, tmp_path):
    config, port = image_config(buildah), free_port()
    env = {"PORT": str(port), "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1"}
    with buildah.running(IMAGE, config["Cmd"], tmp_path / "gunicorn.log", env) as server:
        wait_ready(port, server)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            served = json.load(response)
        # The slim image serves the file the shipped model's parity report vouches for as the fastest.
        assert (served["backend"], served["model_file"]) == ("litert", shipped_tflite_file())
        status, body = post_file(port, SAMPLES[0])
        assert status == 200 and json.loads(body)["label"] in ("fractured", "not_fractured")
        # The image's own HEALTHCHECK, run inside it as Docker would.
        health = buildah.run_once(IMAGE, ["/bin/sh", "-c", config["Healthcheck"]["Test"][1]], env)
        assert health.returncode == 0, health.stderr


@pytest.mark.parametrize("module", ["fracture_web.dicom_node", "fracture_web.dicom_node.worker"])
def test_the_same_image_starts_the_dicom_node_and_a_worker(buildah, module):
    # Without a destination they stop at once, naming the settings to give: everything they import is installed.
    started = buildah.run_once(IMAGE, ["python", "-m", module], {})
    assert started.returncode == 2
    assert "cannot start: Set FRACTURE_DICOM_DEST_HOST" in started.stdout + started.stderr

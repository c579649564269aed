"""A hospital group's story: the node only receives and two workers read, with Redis between them.
A modality sends a burst of 30 radiographs (three studies of ten views); one worker is killed
(SIGKILL) while it analyses one, and every task it held runs on the other; Orthanc still ends up
with exactly one Secondary Capture per radiograph, none twice, and one report per study citing its
ten views. The archive re-read (scripts/reread.py) spreads over the same workers.

Real services on loopback (:mod:`servers`): Debian's redis-server (``make test`` installs it) and
Orthanc; the node and the workers run as ``python -m`` processes with the shipped model, as in production.
"""
from __future__ import annotations

import io
import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from bench.local_server import free_port, running_process

from dicom_files import PATIENT, cited, radiograph_study
from helpers import ROOT, SAMPLES, synthetic_xray
from servers import (ORTHANC, ORTHANC_AE, REDIS, c_store_all, node, node_env, orthanc, redis_server,
                     results_by_modality, wait_for)

pytestmark = [
    pytest.mark.skipif(ORTHANC is None, reason="Orthanc is not installed and could not be installed here (make test "
                       "installs the Debian package 'orthanc' when it runs as root with apt-get)"),
    pytest.mark.skipif(REDIS is None, reason="redis-server is not installed and could not be installed here (make "
                       "test installs the Debian package 'redis-server' when it runs as root with apt-get)")]
STUDIES, VIEWS = 3, 10
#: A task a dead worker held runs elsewhere after this long; it must outlast the settling time and a task.
VISIBILITY_SECONDS = 8


def burst() -> list:
    """Three studies of ten small radiographs each, every other one with a crack."""
    rng = np.random.default_rng(16)
    return [ds for _ in range(STUDIES)
            for ds in radiograph_study([synthetic_xray(rng, crack=i % 2 == 0, size=(320, 256)) for i in range(VIEWS)])]


def worker(tmp_path: Path, name: str, env: dict[str, str]):
    return running_process([sys.executable, "-m", "fracture_web.dicom_node.worker"], tmp_path / f"{name}.log", env)


def tasks(log: Path, state: str, name: str = r"\w+") -> set[str]:
    """The IDs of the tasks the worker's log says were received, or succeeded."""
    return set(re.findall(rf"Task fracture\.{name}\[([0-9a-f-]+)\] {state}", log.read_text()))


def kill_mid_task(process, log: Path) -> set[str]:
    """SIGKILL the worker at a moment it is analysing an image; the IDs of the tasks it had not finished."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        os.kill(process.pid, signal.SIGSTOP)  # frozen, its log says exactly where it is
        if tasks(log, "received", "analyse") - tasks(log, "succeeded"):
            os.kill(process.pid, signal.SIGKILL)
            return tasks(log, "received") - tasks(log, "succeeded")
        os.kill(process.pid, signal.SIGCONT)
        time.sleep(0.02)
    raise TimeoutError("the worker was never caught analysing")


def analysed(log: Path) -> int:
    return log.read_text().count("analysed a radiograph") if log.exists() else 0


def test_two_workers_read_a_burst_and_a_worker_killed_mid_task_loses_nothing(tmp_path):
    sources, node_port = burst(), free_port()
    with orthanc(tmp_path, node_port) as pacs, redis_server(tmp_path) as broker:
        settings = {"FRACTURE_BROKER_URL": broker, "FRACTURE_BROKER_VISIBILITY_TIMEOUT": str(VISIBILITY_SECONDS),
                    "FRACTURE_DICOM_SETTLE_SECONDS": "2", "FRACTURE_DICOM_RESEND_INTERVAL": "4",
                    "FRACTURE_DICOM_DEST_HOST": "127.0.0.1",
                    "FRACTURE_DICOM_DEST_PORT": str(pacs.dicom_port), "FRACTURE_DICOM_DEST_AE_TITLE": ORTHANC_AE,
                    "FRACTURE_THREADS": "1"}
        env = node_env(tmp_path, node_port, settings) | {"PYTHONUNBUFFERED": "1"}  # its log up to the kill
        with worker(tmp_path, "doomed", env) as doomed, worker(tmp_path, "survivor", env), \
                node(tmp_path, pacs, node_port, settings) as node_log:
            assert c_store_all(node_port, sources) == [0x0000] * len(sources)  # acknowledged before any is read
            wait_for(lambda: analysed(tmp_path / "doomed.log") >= 2, "the first worker to be busy")
            unfinished = kill_mid_task(doomed, tmp_path / "doomed.log")
            wait_for(lambda: unfinished <= tasks(tmp_path / "survivor.log", "succeeded"),
                     "the killed worker's tasks to run on the other", timeout=120)
            scs, reports = wait_for(lambda: complete(pacs), "30 results and 3 full reports", timeout=240)
            reread, rows = reread_by_workers(tmp_path, env)
            logs = "".join(path.read_text() for path in (node_log, tmp_path / "doomed.log", tmp_path / "survivor.log"))
    assert sorted(sc.SourceImageSequence[0].ReferencedSOPInstanceUID for sc in scs) == \
        sorted(source.SOPInstanceUID for source in sources)  # exactly one result per radiograph
    assert sorted(map(cited, reports)) == sorted(sorted(s.SOPInstanceUID for s in sources[i:i + VIEWS])
                                                 for i in range(0, len(sources), VIEWS))  # each its whole study
    assert analysed(tmp_path / "survivor.log") > 0 and "analysed a radiograph" not in node_log.read_text()
    assert not any(value in logs for value in PATIENT.values())
    assert reread.returncode == 0, reread.stderr
    assert sorted(row["file"] for row in rows) == sorted(path.name for path in SAMPLES[:3])
    assert all(row["model_version"] and not row["error"] for row in rows)
    assert len(re.findall(r"Task fracture\.read_file\[\S+\] succeeded",
                          (tmp_path / "survivor.log").read_text())) == 3  # read by the worker


def reread_by_workers(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """scripts/reread.py over three sample radiographs, with the broker in its environment."""
    folder, out = tmp_path / "archive", tmp_path / "reread.csv"
    folder.mkdir()
    for path in SAMPLES[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "reread.py"), "--folder", str(folder), "--out",
                           str(out), "--model", "/nonexistent"],  # the workers have the model, not this process
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    with out.open(newline="") as handle:
        return done, list(csv.DictReader(handle))


def complete(pacs) -> tuple[list, list] | None:
    """The Secondary Captures and reports in Orthanc once there is one per radiograph and one per study
    covering all its views (a report re-issued for a late view replaces the earlier one)."""
    found = results_by_modality(pacs)
    if len(found.get("OT", [])) != STUDIES * VIEWS or len(found.get("SR", [])) != STUDIES:
        return None
    reports = [dcmread(io.BytesIO(pacs.rest(f"/instances/{uid}/file"))) for uid in found["SR"]]
    if any(len(cited(sr)) != VIEWS for sr in reports):
        return None
    return [dcmread(io.BytesIO(pacs.rest(f"/instances/{uid}/file"))) for uid in found["OT"]], reports


"""A burst of radiographs sent to the DICOM node with a broker: how fast the node acknowledges them,
and how long one worker, then two, take to read them all and deliver their results.

    python -m bench.dicom_burst [--count 200] [--workers 1 2] [--model model/] [--out burst.json]

Starts everything on loopback and stops it afterwards: Debian's ``redis-server`` (a temporary
folder), a destination PACS (a pynetdicom Storage SCP in this process that counts the Secondary
Captures), the node (``python -m fracture_web.dicom_node``) and, for each number in ``--workers``,
that many workers (``python -m fracture_web.dicom_node.worker``, the host's cores split between
them). Each round sends ``--count`` new instances (the repository's sample radiographs as DX
DICOM, new UIDs) in one association and reports the C-STORE response times (p50, p95) and the time
from the first C-STORE to the last Secondary Capture delivered.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import cv2
import numpy as np
from pydicom import Dataset
from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, SecondaryCaptureImageStorage
from pynetdicom import AE, evt

from bench.dx_files import radiograph_dataset
from bench.local_server import free_port, running_process
from fracture_web.config import defaults
from fracture_web.runtimes import available_cores

ROOT = Path(__file__).resolve().parent.parent
NODE_AE = "FRACTURE_AI"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="instances per round")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="workers in each round")
    parser.add_argument("--model", type=Path, default=Path(defaults()["MODEL_DIR"]))
    parser.add_argument("--out", type=Path, help="also write the numbers as JSON")
    return parser.parse_args(argv)


def radiographs(count: int) -> list[Dataset]:
    """``count`` DX instances made from the sample radiographs, each with new UIDs, one study per 4."""
    images = [cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) for path in sorted((ROOT / "data" / "samples").glob("*.jpg"))]
    datasets = []
    for i in range(count):
        study = {"StudyInstanceUID": datasets[-1].StudyInstanceUID} if i % 4 else {}
        datasets.append(radiograph_dataset(np.ascontiguousarray(images[i % len(images)]), PatientID="BURST",
                                           PatientName="Burst^Test", **study))
    return datasets


@contextmanager
def destination(port: int):
    """A Storage SCP that notes when each Secondary Capture arrives."""
    arrivals: dict[str, float] = {}

    def store(event):
        if event.dataset.SOPClassUID == SecondaryCaptureImageStorage:
            arrivals[event.dataset.SOPInstanceUID] = time.perf_counter()
        return 0x0000

    ae = AE(ae_title="DEST")
    for sop_class in (SecondaryCaptureImageStorage, "1.2.840.10008.5.1.4.1.1.88.33"):
        ae.add_supported_context(sop_class, ExplicitVRLittleEndian)
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, store)])
    try:
        yield arrivals
    finally:
        server.shutdown()


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def echo(port: int) -> bool:
    ae = AE(ae_title="BURST")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
    answered = assoc.is_established
    if answered:
        assoc.release()
    return answered


def send(port: int, datasets: list[Dataset]) -> list[float]:
    """C-STORE every dataset in one association; each response time in seconds."""
    ae = AE(ae_title="BURST")
    ae.add_requested_context(DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
    times = []
    try:
        for ds in datasets:
            start = time.perf_counter()
            status = assoc.send_c_store(ds)
            times.append(time.perf_counter() - start)
            if getattr(status, "Status", None) != 0x0000:
                raise RuntimeError("the node refused an instance")
    finally:
        assoc.release()
    return times


def one_round(args: argparse.Namespace, env: dict[str, str], folder: Path, workers: int,
              arrivals: dict[str, float]) -> dict:
    """Start ``workers`` workers, send a burst, wait for its results; the round's numbers."""
    threads = max(1, available_cores() // workers)
    with ExitStack() as stack:
        for n in range(workers):
            stack.enter_context(running_process([sys.executable, "-m", "fracture_web.dicom_node.worker"],
                                        folder / f"worker-{workers}-{n}.log", env | {"FRACTURE_THREADS": str(threads)}))
        wait_until(lambda: sum("ready." in p.read_text() for p in folder.glob(f"worker-{workers}-*.log")) == workers,
                   300, "the workers to start")
        arrivals.clear()
        start = time.perf_counter()
        times = send(int(env["FRACTURE_DICOM_PORT"]), radiographs(args.count))
        wait_until(lambda: len(arrivals) >= args.count, 3600, "every result")
        finished = max(arrivals.values()) - start
        time.sleep(2)  # the studies' reports go out before these workers stop
    p50, p95 = np.percentile(times, [50, 95])
    return {"workers": workers, "instances": args.count, "c_store_p50_ms": round(1000 * p50, 1),
            "c_store_p95_ms": round(1000 * p95, 1), "seconds_to_finish": round(finished, 2)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    redis = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin")
    if redis is None:
        print("error: redis-server is not installed (make redis installs it)", file=sys.stderr)
        return 2
    node_port, dest_port, redis_port = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory() as temp, destination(dest_port) as arrivals:
        folder = Path(temp)
        env = os.environ | {"FRACTURE_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
                            "FRACTURE_MODEL_DIR": str(args.model), "FRACTURE_DICOM_SETTLE_SECONDS": "1",
                            "FRACTURE_DICOM_DEST_HOST": "127.0.0.1", "FRACTURE_DICOM_DEST_PORT": str(dest_port),
                            "FRACTURE_DICOM_DEST_AE_TITLE": "DEST", "FRACTURE_DICOM_BIND": "127.0.0.1",
                            "FRACTURE_DICOM_PORT": str(node_port), "FRACTURE_DICOM_QUEUE_DIR": str(folder / "queue"),
                            "FRACTURE_DICOM_ALLOWED_AE_TITLES": "BURST"}
        with running_process([redis, "--bind", "127.0.0.1", "--port", str(redis_port), "--dir", temp, "--save", "",
                      "--appendonly", "yes"], folder / "redis.log"), \
                running_process([sys.executable, "-m", "fracture_web.dicom_node"], folder / "node.log", env):
            try:
                wait_until(lambda: echo(node_port), 120, "the node to answer C-ECHO")
                rounds = [one_round(args, env, folder, workers, arrivals) for workers in args.workers]
            except (TimeoutError, RuntimeError) as err:
                for log in sorted(folder.glob("*.log")):  # what the services said, before the folder goes
                    print(f"--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-5:]), file=sys.stderr)
                print(f"error: {err}", file=sys.stderr)
                return 1
    for r in rounds:
        print(f"{r['workers']} worker(s): {r['instances']} instances acknowledged in p50 {r['c_store_p50_ms']} ms, "
              f"p95 {r['c_store_p95_ms']} ms each; all results delivered after {r['seconds_to_finish']} s")
    if len(rounds) > 1:
        print(f"speed-up from {rounds[0]['workers']} to {rounds[-1]['workers']} workers: "
              f"{rounds[0]['seconds_to_finish'] / rounds[-1]['seconds_to_finish']:.2f}x")
    if args.out:
        args.out.write_text(json.dumps({"rounds": rounds}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

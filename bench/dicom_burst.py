"""A burst of radiographs sent to the DICOM node with a broker: how fast the node acknowledges them,
and how long one worker, then two, take to read them all and deliver their results.

    python -m bench.dicom_burst [--count 200] [--workers 1 2] [--one-core-workers] [--model model/] [--out burst.json]

Starts everything on loopback and stops it afterwards: Debian's ``redis-server`` (a temporary
folder), a destination PACS (a pynetdicom Storage SCP in this process that counts the Secondary
Captures), the node (``python -m fracture_web.dicom_node``) and, for each number in ``--workers``,
that many workers (``python -m fracture_web.dicom_node.worker``, the host's cores split between
them). Each round sends ``--count`` new instances (the repository's sample radiographs as DX
DICOM, new UIDs, four to a study) in one association and reports the C-STORE response times (p50,
p95), the time from the first C-STORE to the last result delivered (every image's Secondary Capture
and every study's report over all its images; the last Secondary Capture's time too), and the CPU
time each part used meanwhile (the node, Redis, the workers, and this process: the modality and the
destination PACS).

``--one-core-workers`` stands in for one host per worker, so that the ratio of the rounds measures
the design and not the machine: each worker is pinned to a core of its own (CPU affinity) with
``FRACTURE_THREADS=1``. The node, Redis and this process (the modality and the PACS) are pinned to
the first core in every round, so that the rounds differ only in their workers: where the machine
has a core more than the largest round has workers, the workers get the others; where it has not
(two workers on two cores), the first worker shares the first core with them in every round, and
the ratio says what a second one-core host, with a worker only, adds to a first that also runs the
services (``--services-unpinned`` leaves them free instead, as earlier runs did: then they have the
second core to themselves while one worker runs). The CPU time each part used is in the report.

``--repeat N`` runs the rounds N times, interleaved (1, 2, 1, 2 ...), so that a slow moment of the
machine falls on both; the ratio is that of the median times.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from pydicom import Dataset
from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, SecondaryCaptureImageStorage
from pynetdicom import AE, evt

from bench.dx_files import radiograph_dataset
from bench.local_server import free_port, running_process
from fracture_web.config import Settings, defaults
from fracture_web.runtimes import available_cores, resolve_backend

ROOT = Path(__file__).resolve().parent.parent
NODE_AE = "FRACTURE_AI"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="instances per round")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="workers in each round")
    parser.add_argument("--one-core-workers", action="store_true",
                        help="pin each worker to a core of its own, one thread each (one host per worker)")
    parser.add_argument("--services-unpinned", action="store_true",
                        help="with --one-core-workers on a machine with no spare core: leave the node, Redis and "
                             "this process unpinned, as earlier runs did (they may then use a core the workers do not)")
    parser.add_argument("--repeat", type=int, default=1, help="run the rounds this many times, interleaved")
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


@dataclass
class Arrivals:
    """What the destination PACS received, and when: each Secondary Capture, and for each study the
    first report that covers all its images (the one that completes its results)."""

    images: dict[str, float] = field(default_factory=dict)
    final_reports: dict[str, float] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)  # images per study of the round

    def clear(self, expected: dict[str, int]) -> None:
        self.images.clear()
        self.final_reports.clear()
        self.expected = expected

    def complete(self) -> bool:
        return len(self.images) >= sum(self.expected.values()) and len(self.final_reports) >= len(self.expected)

    def last(self) -> float:
        return max([*self.images.values(), *self.final_reports.values()])


def covered(report: Dataset) -> int:
    """How many images a Measurement Report's evidence lists."""
    return sum(len(series.ReferencedSOPSequence)
               for study in report.get("CurrentRequestedProcedureEvidenceSequence", [])
               for series in study.ReferencedSeriesSequence)


@contextmanager
def destination(port: int):
    """A Storage SCP that notes when each Secondary Capture, and each study's complete report, arrives."""
    arrivals = Arrivals()

    def store(event):
        ds, now = event.dataset, time.perf_counter()
        if ds.SOPClassUID == SecondaryCaptureImageStorage:
            arrivals.images[ds.SOPInstanceUID] = now
        elif covered(ds) >= arrivals.expected.get(ds.StudyInstanceUID, 0) > 0:
            arrivals.final_reports.setdefault(ds.StudyInstanceUID, now)
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


@dataclass(frozen=True)
class Placement:
    """Where the processes run: the workers' cores (None: the host's cores split between them, as
    threads) and the core the node, Redis and this process are pinned to (None: unpinned); the
    first worker's core may be the services' too."""

    worker_cores: tuple[int, ...] | None = None
    services_core: int | None = None

    @classmethod
    def for_args(cls, args: argparse.Namespace) -> Placement:
        if not args.one_core_workers:
            return cls()
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < max(args.workers):
            raise SystemExit(f"error: {max(args.workers)} one-core workers need as many cores; {len(cores)} usable")
        if len(cores) > max(args.workers):
            return cls(tuple(cores[1:]), cores[0])
        if args.services_unpinned:
            return cls(tuple(cores))
        return cls(tuple(cores), cores[0])  # the first worker shares the services' core, in every round

    def describe(self) -> dict:
        return {"one_core_workers": self.worker_cores is not None, "worker_cores": self.worker_cores,
                "services_core": self.services_core}


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds a process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_workers(stack: ExitStack, env: dict[str, str], folder: Path, workers: int, placement: Placement) -> dict:
    """Start the round's workers (pinned where ``placement`` says); their pids by name."""
    threads = 1 if placement.worker_cores else max(1, available_cores() // workers)
    pids = {}
    for n in range(workers):
        process = stack.enter_context(running_process(
            [sys.executable, "-m", "fracture_web.dicom_node.worker"], folder / f"worker-{workers}-{n}.log",
            env | {"FRACTURE_THREADS": str(threads)}))
        if placement.worker_cores:  # before the interpreter has started any thread: all of them inherit it
            os.sched_setaffinity(process.pid, {placement.worker_cores[n]})
        pids[f"worker_{n}"] = process.pid
    return pids


def one_round(args: argparse.Namespace, env: dict[str, str], folder: Path, workers: int,
              arrivals: Arrivals, services: dict[str, int], placement: Placement) -> dict:
    """Start ``workers`` workers, send a burst, wait for its results (every image's and every study's
    complete report); the round's numbers."""
    with ExitStack() as stack:
        pids = services | start_workers(stack, env, folder, workers, placement)
        wait_until(lambda: sum("ready." in p.read_text() for p in folder.glob(f"worker-{workers}-*.log")) == workers,
                   300, "the workers to start")
        burst = radiographs(args.count)
        arrivals.clear(Counter(str(ds.StudyInstanceUID) for ds in burst))
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        start = time.perf_counter()
        times = send(int(env["FRACTURE_DICOM_PORT"]), burst)
        wait_until(arrivals.complete, 3600, "every result")
        images_done, finished = max(arrivals.images.values()) - start, arrivals.last() - start
        cpu = {name: round(cpu_seconds(pid) - cpu_before[name], 2) for name, pid in pids.items()}
    p50, p95 = np.percentile(times, [50, 95])
    return {"workers": workers, "instances": args.count, "c_store_p50_ms": round(1000 * p50, 1),
            "c_store_p95_ms": round(1000 * p95, 1), "seconds_to_last_image_result": round(images_done, 2),
            "seconds_to_finish": round(finished, 2), "cpu_seconds": cpu}


def median_time(rounds: list[dict], workers: int) -> float:
    """The median seconds to finish of the rounds with ``workers`` workers."""
    return float(np.median([r["seconds_to_finish"] for r in rounds if r["workers"] == workers]))


def machine(args: argparse.Namespace) -> dict:
    """What the numbers were measured on: the machine, its cores, the images and the runtime."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or platform.machine())
    metadata = json.loads((args.model / "metadata.json").read_text())
    sizes = sorted({radiograph.pixel_array.shape for radiograph in radiographs(min(args.count, 8))})
    settings = Settings.from_environ()  # what the workers read: they run in this environment
    backend = resolve_backend(settings["BACKEND"], args.model, settings["TFLITE_FILE"], metadata["model_version"])
    return {"host": platform.node(), "cpu": cpu, "cpus": os.cpu_count(), "cores_usable": available_cores(),
            "load_avg_start": os.getloadavg(), "image_sizes": [list(size) for size in sizes],
            "model_input": metadata["input_size"], "model_version": metadata["model_version"], "runtime": backend}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    redis = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin")
    if redis is None:
        print("error: redis-server is not installed (make redis installs it)", file=sys.stderr)
        return 2
    placement = Placement.for_args(args)
    report = {"machine": machine(args), "placement": placement.describe()}  # before this process is pinned
    if placement.services_core is not None:  # this process and everything it starts, until re-pinned
        os.sched_setaffinity(0, {placement.services_core})
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
                      "--appendonly", "yes"], folder / "redis.log") as redis_process, \
                running_process([sys.executable, "-m", "fracture_web.dicom_node"], folder / "node.log", env) as node:
            services = {"node": node.pid, "redis": redis_process.pid, "modality_and_pacs": os.getpid()}
            try:
                wait_until(lambda: echo(node_port), 120, "the node to answer C-ECHO")
                rounds = [one_round(args, env, folder, workers, arrivals, services, placement)
                          for _ in range(args.repeat) for workers in args.workers]
            except (TimeoutError, RuntimeError) as err:
                for log in sorted(folder.glob("*.log")):  # what the services said, before the folder goes
                    print(f"--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-5:]), file=sys.stderr)
                print(f"error: {err}", file=sys.stderr)
                return 1
    report["rounds"] = rounds
    for r in rounds:
        print(f"{r['workers']} worker(s): {r['instances']} instances acknowledged in p50 {r['c_store_p50_ms']} ms, "
              f"p95 {r['c_store_p95_ms']} ms each; every image's result after {r['seconds_to_last_image_result']} s, "
              f"every result with the studies' reports after {r['seconds_to_finish']} s; "
              f"CPU seconds {r['cpu_seconds']}")
    fewest, most = min(args.workers), max(args.workers)
    if fewest != most:
        report["time_ratio"] = round(median_time(rounds, most) / median_time(rounds, fewest), 3)
        print(f"{most} workers took {report['time_ratio']:.2f} of the time of {fewest} (speed-up "
              f"{1 / report['time_ratio']:.2f}x; medians of {args.repeat} interleaved round(s) each)")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

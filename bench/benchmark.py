"""Benchmark on this machine: the model, the app under gunicorn (TensorFlow and LiteRT backends)
and the naive baseline, side by side in one run. Prints a table and writes JSON.

    python -m bench.benchmark [--out benchmark.json] [--seconds 10] [--runs 50] [--images F.jpg ...]
    python -m bench.benchmark --full-size-only --out benchmarks/run5.json   # only the full-size part

Measures:
  * model-only latency of one image with its heatmap (batch 1): the bare call of each runtime
    (the shipped ``.tflite`` through LiteRT, the SavedModel's ``serving_default`` through
    TensorFlow: the file and its runtime, none of the app's code), and the app's runtimes
    (TensorFlow, LiteRT float32/float16);
  * where the time of one request goes inside the app (decode ... PNG), in-process;
  * for each server: cold start (process start -> /healthz 200), end-to-end HTTP latency of one
    upload at a time with the heatmap (p50/p95), throughput at 1, 4 and 16 concurrent clients,
    resident memory per worker. Servers: the app under gunicorn with gunicorn.conf.py (the
    recommended settings) on each backend, and bench/naive_app.py (Flask dev server, Keras
    ``model.predict()`` per request) on the same weights and images;
  * ratios: ours over the naive baseline; the app's overhead: e2e p50 over the p50 of the bare call
    of the runtime the server serves (the backend its ``/healthz`` names: the reference, named in
    every figure), each HTTP request followed on the same image by that call and then by the other
    runtime's (reported beside it), so a busy machine slows all alike;
  * the floor: multiply-adds per image counted from the .tflite graph, and the time they would take
    at this CPU's peak FMA rate;
  * installed size of the full (requirements.txt) and slim (requirements-slim.txt) sets;
  * full-size uploads (when ../shared/data/fracatlas-fullres is present), made at run time from one
    FracAtlas original (2304x2880): the original baseline JPEG, the same re-encoded progressive, as a
    16-bit PNG, as an uncompressed 12-in-16-bit MONOCHROME1 DICOM, resized to 3000x2500 as a JPEG 2000
    DICOM and to 4000x4000 as a 16-bit DICOM (32 MB), with a typical 454x373 JPEG beside them. For
    each: the request's steps in-process, the end-to-end latency through HTTP with the heatmap (app on
    gunicorn, its default backend; as a multipart form and as the raw request body) paired with the
    bare calls (the served runtime's the reference), one plain library decode of the same file
    (OpenCV, or pydicom's ``pixel_array``), the transport floor (the same uploads to
    bench/bare_upload.py, an app that only receives them, under the same gunicorn settings), the
    ratio (e2e p50 - plain decode p50 - floor p50) / bare call p50 of the served runtime, and the
    peak memory Python allocates for one ``analyse()`` of it and for
    one whole API request (tracemalloc, the app in-process; the model's own buffers do not depend
    on the image). Then the workers' resident
    memory before, and right after and a while after each of three rounds of ten 32 MB uploads.

Default images: the first 16 typical (454x373 or 373x454) JPEGs of the FracAtlas validation split in
../shared/data/fracatlas, else data/samples. Takes about 3 minutes with the defaults, plus about 2
for the full-size part (about 2 alone with --full-size-only); run it on an otherwise idle machine
(the load average is recorded with the results).
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import runpy
import subprocess
import sys
import time
import tracemalloc
import urllib.request
from collections.abc import Callable
from http.client import HTTPConnection
from importlib import metadata as importlib_metadata
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.uid import JPEG2000Lossless

from bench import local_server
from bench.dx_files import dicom_file
from bench.flops import multiply_adds
from bench.loadgen import multipart, run_clients, summarise
from fracture_web import create_app, overlay
from fracture_web.analysis import analyse
from fracture_web.config import DEFAULT_TFLITE_FILE, defaults
from fracture_web.datasets import read_records
from fracture_web.imaging import decode_image, is_dicom, preprocess, to_model_input
from fracture_web.inference import FractureModel, read_metadata
from fracture_web.runtimes import FLOAT_TFLITE_FILE, SIGNATURE, available_cores, load_onnx, served_file

ROOT = Path(__file__).resolve().parent.parent
FRACATLAS = ROOT.parent / "shared" / "data" / "fracatlas"
#: The FracAtlas original the full-size cases are made from: 2304x2880, a baseline JPEG as released.
FULL_SIZE_SOURCE = ROOT.parent / "shared" / "data" / "fracatlas-fullres" / "images" / "IMG0000036.jpg"
#: What the web app asks ``analyse`` for: the display image's longest side.
DISPLAY_MAX_SIDE = defaults()["DISPLAY_MAX_SIDE"]
#: The full-size case whose memory the issue bounds (a worker may hold about 3x its 32 MB).
BIG_DICOM = "16-bit DICOM 4000x4000"
API = "/api/v1/predict?heatmap=1"
#: Peak single-precision FLOPs per cycle and core assumed for the floor: two 256-bit FMA pipes
#: (8 lanes x 2 FLOPs x 2 pipes), what AVX2 x86 cores (and AMD's AVX-512) sustain.
FLOPS_PER_CYCLE = 32


def default_images(count: int = 16) -> list[Path]:
    """Typical FracAtlas validation JPEGs (454x373 either way), else the shipped samples."""
    if (FRACATLAS / "labels.csv").is_file():
        paths = read_records(FRACATLAS).in_split("val").paths
        typical = [path for path in paths if path.suffix == ".jpg" and _shape(path) in ((454, 373), (373, 454))]
        if typical:
            return typical[:count]
    return sorted((ROOT / "data" / "samples").glob("*.jpg"))


def _shape(path: Path) -> tuple[int, int]:
    from PIL import Image
    with Image.open(path) as image:
        return image.size


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50 and p95 in milliseconds."""
    ms = np.asarray(seconds) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95))}


def time_calls(call: Callable[[object], object], inputs: list, runs: int, warm: int = 3) -> list[float]:
    """Seconds per call, cycling through ``inputs``, after ``warm`` untimed calls."""
    for i in range(warm):
        call(inputs[i % len(inputs)])
    times = []
    for i in range(runs):
        started = time.perf_counter()
        call(inputs[i % len(inputs)])
        times.append(time.perf_counter() - started)
    return times


def direct_signature(model_dir: Path) -> Callable[[np.ndarray], object]:
    """The shipped SavedModel's ``serving_default`` on one (S, S, 1) input, called the plain way
    (TensorFlow's own thread defaults, none of the app's code)."""
    import tensorflow as tf

    serve = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    return lambda x: serve(image=tf.constant(x[np.newaxis]))


def direct_litert(path: Path) -> Callable[[np.ndarray], object]:
    """The shipped ``.tflite``'s ``serving_default`` through LiteRT on one (S, S, 1) input, on as many
    cores as the app gives it, none of the app's code."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path), num_threads=available_cores()).get_signature_runner(SIGNATURE)
    return lambda x: runner(image=x[np.newaxis])


def direct_onnx(path: Path) -> Callable[[np.ndarray], object]:
    """An ``.onnx`` file through ONNX Runtime on one (S, S, 1) input, its session as the app opens it
    (as many cores as the app gives it); the output names are all the app's code it shares."""
    run = load_onnx(path, available_cores())
    return lambda x: run(x[np.newaxis])


def bare_calls(model_dir: Path) -> dict[str, Callable[[np.ndarray], object]]:
    """The bare model call of each runtime the app can serve, by the backend name ``/healthz`` gives
    (``litert``: the ``.tflite`` file that backend serves, and the float32 file's beside it where
    that is another, ``litert_float32``); ONNX Runtime's where the model folder has an ONNX export
    (``onnx``: the file that backend serves), and the int8 file's beside it where there is one (``onnx_int8``)."""
    version = str(read_metadata(model_dir)["model_version"])
    tflite = served_file(model_dir, "litert", DEFAULT_TFLITE_FILE, version)
    calls = {"litert": direct_litert(model_dir / tflite), "tensorflow": direct_signature(model_dir)}
    if tflite != FLOAT_TFLITE_FILE:
        calls["litert_float32"] = direct_litert(model_dir / FLOAT_TFLITE_FILE)
    served = model_dir / served_file(model_dir, "onnx", DEFAULT_TFLITE_FILE, version)
    if served.is_file():
        calls["onnx"] = direct_onnx(served)
    if (model_dir / "model_int8.onnx").is_file() and served.name != "model_int8.onnx":
        calls["onnx_int8"] = direct_onnx(model_dir / "model_int8.onnx")
    return calls


def served_runtime(port: int) -> str:
    """The runtime the server on ``port`` serves, as its ``/healthz`` names it; the naive baseline's
    plain "ok" means Keras, which runs on TensorFlow."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
        body = response.read()
    return json.loads(body)["backend"] if body.startswith(b"{") else "tensorflow"


def model_only(model_dir: Path, bare: dict[str, Callable], inputs: list[np.ndarray], runs: int) -> dict:
    """Batch-1 latency with the heatmap: each runtime's bare call, then each of the app's runtimes."""
    results = {f"bare_{name}": percentiles(time_calls(call, inputs, runs)) for name, call in bare.items()}
    runtimes = {"app_tensorflow": {"backend": "tensorflow"}, "app_litert": {"backend": "litert"},
                "app_litert_float32": {"backend": "litert", "tflite_file": FLOAT_TFLITE_FILE},
                "app_litert_float16": {"backend": "litert", "tflite_file": "model_float16.tflite"}}
    if "onnx" in bare:
        runtimes["app_onnx"] = {"backend": "onnx"}
    for name, options in runtimes.items():
        model = FractureModel(model_dir, **options)
        results[name] = percentiles(time_calls(lambda x: model.outputs(x[np.newaxis]), inputs, runs))
    return results


def paired_latency(port: int, bodies: list, bare: dict[str, Callable], inputs: list[np.ndarray], runs: int) -> dict:
    """One upload at a time over HTTP, each followed on the same image by the bare call of the runtime
    the server serves (the reference), then by the other runtimes', so all are timed under the same
    machine load; e2e p50 over the reference's p50 is the app's overhead."""
    reference = served_runtime(port)
    order = [reference, *(name for name in bare if name != reference)]
    connection = HTTPConnection("127.0.0.1", port, timeout=60)
    http, calls = [], {name: [] for name in order}
    for i in range(-3, runs):  # three untimed rounds first
        body, content_type = bodies[i % len(bodies)]
        started = time.perf_counter()
        connection.request("POST", API, body, {"Content-Type": content_type})
        response = connection.getresponse()
        ok = response.status == 200 and b'"heatmap_png"' in response.read()
        http.append(time.perf_counter() - started)
        for name in order:
            started = time.perf_counter()
            bare[name](inputs[i % len(inputs)])
            calls[name].append(time.perf_counter() - started)
        if not ok and i >= 0:
            raise RuntimeError(f"the server answered {response.status} on port {port}")
    connection.close()
    e2e, bare_ms = percentiles(http[3:]), {name: percentiles(times[3:]) for name, times in calls.items()}
    return {"e2e_ms": e2e, "reference": reference, "bare_call_ms": bare_ms,
            "overhead_ratio": e2e["p50"] / bare_ms[reference]["p50"]}


def stage_breakdown(model: FractureModel, data: bytes, runs: int) -> dict[str, float]:
    """Median milliseconds of each step of one API request inside the app (heatmap on), each
    called as ``analyse`` calls it for the API (the decode at the size the model and the page
    need, the overlay on the model's view)."""
    long_side = max(model.input_size, DISPLAY_MAX_SIDE)
    decoded = decode_image(data, long_side)
    model_input = to_model_input(decoded.pixels, model.input_size)
    prediction = model.predict(model_input, image_shape=decoded.size)
    shown = overlay.model_view(model_input, decoded.pixels.shape[:2])
    heat = overlay.heatmap_on_image(prediction.heatmap, shown.shape[:2], model.input_size)
    blended = overlay.blend(shown, heat)
    png = overlay.encode_png(blended)
    steps = {"decode + checks": lambda: decode_image(data, long_side), "letterbox to model input":
             lambda: to_model_input(decoded.pixels, model.input_size), "model (with heatmap)":
             lambda: model.predict(model_input, image_shape=decoded.size),
             "display image (the model's view)": lambda: overlay.model_view(model_input, decoded.pixels.shape[:2]),
             "heatmap onto image": lambda: overlay.heatmap_on_image(prediction.heatmap, shown.shape[:2],
                                                                      model.input_size),
             "blend": lambda: overlay.blend(shown, heat), "PNG encode": lambda: overlay.encode_png(blended),
             "base64": lambda: base64.b64encode(png)}
    return {name: percentiles(time_calls(lambda _: step(), [None], runs))["p50"] for name, step in steps.items()}


def full_size_cases(source: Path, small: Path) -> dict[str, bytes]:
    """Each full-size upload (named width x height), made now from one original: nothing large is
    stored. A small JPEG comes first, for comparison. The DICOMs hold 12 bits in 16, as most
    detectors store them, except the 4000x4000 one (16 bits, 32 MB)."""
    gray = cv2.imread(str(source), cv2.IMREAD_GRAYSCALE)
    size = f"{gray.shape[1]}x{gray.shape[0]}"
    progressive = [cv2.IMWRITE_JPEG_QUALITY, 92, cv2.IMWRITE_JPEG_PROGRESSIVE, 1]
    wide = cv2.resize(gray, (3000, 2500), interpolation=cv2.INTER_CUBIC).astype(np.uint16) * 16
    big = cv2.resize(gray, (4000, 4000), interpolation=cv2.INTER_CUBIC).astype(np.uint16) * 257
    width, height = _shape(small)
    return {f"JPEG {width}x{height}": small.read_bytes(),
            f"baseline JPEG {size}": source.read_bytes(),
            f"progressive JPEG {size}": cv2.imencode(".jpg", gray, progressive)[1].tobytes(),
            f"16-bit PNG {size}": cv2.imencode(".png", gray.astype(np.uint16) * 257)[1].tobytes(),
            f"MONOCHROME1 DICOM {size}": dicom_file(4095 - gray.astype(np.uint16) * 16, "MONOCHROME1", 12,
                                                    PresentationLUTShape="INVERSE", WindowCenter=2048,
                                                    WindowWidth=4096),
            "JPEG 2000 DICOM 3000x2500": dicom_file(wide, "MONOCHROME2", 12, JPEG2000Lossless),
            BIG_DICOM: dicom_file(big, "MONOCHROME2", 16)}


def plain_decode(data: bytes) -> Callable[[], np.ndarray]:
    """One plain library decode of the file at full size: pydicom's ``pixel_array`` for DICOM,
    OpenCV's ``imdecode`` for the rest."""
    if is_dicom(data):
        return lambda: pydicom.dcmread(io.BytesIO(data)).pixel_array
    return lambda: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def traced_peak_mb(call: Callable[[], object]) -> float:
    """The most memory Python's allocators (numpy's included) held at once during ``call``, in MB."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def request_peak_mb(client, data: bytes, name: str) -> dict[str, float]:
    """The most memory Python allocated at once for one whole API request with the heatmap (the
    app in this process, through Flask's test client: body, form parsing, analysis, JSON), as a
    multipart upload and as the raw body."""
    body, content_type = multipart(data, name)
    return {"multipart": traced_peak_mb(lambda: client.post(API, data=body, content_type=content_type)),
            "raw_body": traced_peak_mb(lambda: client.post(API, data=data, content_type="application/octet-stream"))}


def upload_floor_ms(port: int, bodies: dict[str, tuple[bytes, str]], runs: int) -> dict[str, float]:
    """p50 ms of posting each body to the bare upload app (bench/bare_upload.py) on ``port``:
    the transport alone, which no work of the app can save."""
    connection = HTTPConnection("127.0.0.1", port, timeout=60)
    floors = {}
    for kind, (body, content_type) in bodies.items():
        def post(_):
            connection.request("POST", "/", body, {"Content-Type": content_type})
            response = connection.getresponse()
            if response.read() != str(len(body)).encode():
                raise RuntimeError(f"the bare upload app answered {response.status} on port {port}")
        floors[kind] = percentiles(time_calls(post, [None], runs))["p50"]
    connection.close()
    return floors


def overhead_ratio(paired: dict, plain_decode_ms: float, floor_ms: float) -> float:
    """What the app adds around the model, in model calls: (e2e p50 - plain decode p50 - transport
    floor p50) / the p50 of the served runtime's bare call (``paired_latency``'s reference)."""
    return (paired["e2e_ms"]["p50"] - plain_decode_ms - floor_ms) / paired["bare_call_ms"][paired["reference"]]["p50"]


def full_size_case(name: str, data: bytes, model: FractureModel, bare: dict[str, Callable], port: int, runs: int,
                   client, floor_port: int) -> dict:
    """One full-size upload: its steps, its e2e latency paired with the bare calls, a plain decode
    of it, the transport floor (the same bodies posted to the bare upload app), the overhead ratio
    and the peak memory of one analysis and of one whole request."""
    decoded = decode_image(data, max(model.input_size, DISPLAY_MAX_SIDE))
    plain = plain_decode(data)
    decoded_mb = plain().nbytes / 1e6
    plain_ms = percentiles(time_calls(lambda _: plain(), [None], runs, warm=1))["p50"]
    model_input = [to_model_input(decoded.pixels, model.input_size)]
    bodies = {"multipart": multipart(data, name), "raw_body": (data, "application/octet-stream")}
    floor = upload_floor_ms(floor_port, bodies, runs)
    paired = paired_latency(port, [bodies["multipart"]], bare, model_input, runs)
    raw = paired_latency(port, [bodies["raw_body"]], bare, model_input, runs)
    peak = traced_peak_mb(lambda: analyse(data, model))
    return {"file_mb": len(data) / 1e6, "size": list(decoded.size), "decoded_at": list(decoded.pixels.shape),
            "steps_ms": stage_breakdown(model, data, runs), "plain_decode_ms": plain_ms, **paired,
            "ratio": overhead_ratio(paired, plain_ms, floor["multipart"]),
            "raw_body": raw | {"ratio": overhead_ratio(raw, plain_ms, floor["raw_body"])},
            "upload_floor_ms": floor, "analyse_peak_mb": peak, "plain_decoded_mb": decoded_mb,
            "peak_over_decoded": peak / decoded_mb, "request_peak_mb": request_peak_mb(client, data, name)}


def worker_memory_after_big_uploads(port: int, master_pid: int, big: bytes, small: bytes, count: int = 10,
                                    settle_s: float = 10, rounds: int = 3) -> dict:
    """The workers' resident memory (MB each) in steady state, then for each of ``rounds`` rounds:
    right after ``count`` big uploads and ``settle_s`` later (after a few small requests). Does a
    32 MB upload leave memory behind, and does it pile up from round to round?"""
    bodies = {"small": multipart(small, "small.jpg"), "big": multipart(big, "big.dcm")}

    def post(kind: str, times: int) -> None:
        connection = HTTPConnection("127.0.0.1", port, timeout=120)
        for _ in range(times):
            body, content_type = bodies[kind]
            connection.request("POST", API, body, {"Content-Type": content_type})
            connection.getresponse().read()
        connection.close()

    post("small", 10)
    report = {"big_uploads": count, "big_upload_mb": len(big) / 1e6,
              "steady_mb": local_server.worker_memory_mb(master_pid), "rounds": []}
    for _ in range(rounds):
        post("big", count)
        after = local_server.worker_memory_mb(master_pid)
        time.sleep(settle_s)
        post("small", 10)
        report["rounds"].append({"after_big_mb": after, "settled_mb": local_server.worker_memory_mb(master_pid)})
    return report


def full_size_report(model_dir: Path, small: Path, runs: int, source: Path = FULL_SIZE_SOURCE) -> dict:
    """The full-size cases on the app under gunicorn with its default backend (``auto``), one server for all."""
    cases = full_size_cases(source, small)
    model, bare = FractureModel(model_dir), bare_calls(model_dir)
    client = create_app({"MODEL_DIR": str(model_dir), "METRICS": "off", "AUDIT_LOG": os.devnull}).test_client()
    port, floor_port = local_server.free_port(), local_server.free_port()
    server = gunicorn_server("auto")(port)
    floor = local_server.start_gunicorn(floor_port, app="bench.bare_upload:app")
    try:
        local_server.wait_ready(port, server)
        local_server.wait_ready(floor_port, floor)  # the bare app answers any path, /healthz too
        report = {"source": str(source), "runs": runs, "backend": f"auto ({served_runtime(port)})", "cases": {
            name: full_size_case(name, data, model, bare, port, runs, client, floor_port)
            for name, data in cases.items()}}
        big, small_jpeg = cases[BIG_DICOM], next(iter(cases.values()))
        report["worker_memory"] = worker_memory_after_big_uploads(port, server.pid, big, small_jpeg)
    finally:
        local_server.stop(server)
        local_server.stop(floor)
    return report


def cpu_peak_gflops(cores: int) -> tuple[float, float]:
    """(GHz, peak GFLOP/s on ``cores``) from /proc/cpuinfo's current clock; an estimate."""
    mhz = [float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
           if line.startswith("cpu MHz")]
    ghz = max(mhz) / 1000 if mhz else 2.5
    return ghz, ghz * FLOPS_PER_CYCLE * cores


def serve_and_measure(start: Callable[[int], subprocess.Popen], memory: Callable[[int], list[float]],
                      bodies: list, paired: Callable[[int], dict], clients: list[int], seconds: float) -> dict:
    """Start a server, time its cold start and one-at-a-time latency, drive it at each
    concurrency, read its memory, stop it."""
    port = local_server.free_port()
    started = time.monotonic()
    server = start(port)
    try:
        local_server.wait_ready(port, server)
        report = {"cold_start_s": time.monotonic() - started, **paired(port), "throughput": {}}
        for count in clients:
            results, _ = run_clients(port, bodies, count, seconds, path=API)
            report["throughput"][count] = summarise(results, seconds)
        report["rss_mb_per_process"] = memory(server.pid)
    finally:
        local_server.stop(server)
    return report


def gunicorn_server(backend: str) -> Callable[[int], subprocess.Popen]:
    """Starts the app under gunicorn (gunicorn.conf.py) on ``backend``, logging to a temp file."""
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"benchmark-gunicorn-{backend}.log"
    return lambda port: local_server.start_gunicorn(port, {"FRACTURE_BACKEND": backend}, log)


def naive_server(port: int) -> subprocess.Popen:
    """Starts bench/naive_app.py, the baseline, on ``port``."""
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    return subprocess.Popen([sys.executable, "-m", "bench.naive_app", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def install_size_mb(requirements: Path) -> dict:
    """Installed size of the pinned distributions of a requirements file, read from this environment."""
    total, missing = 0, []
    for line in requirements.read_text().splitlines():
        name = line.split("#")[0].split("==")[0].strip()
        if not name or name.startswith("-"):
            continue
        try:
            dist = importlib_metadata.distribution(name)
        except importlib_metadata.PackageNotFoundError:
            missing.append(name)
            continue
        total += sum(Path(dist.locate_file(f)).stat().st_size for f in dist.files or []
                     if Path(dist.locate_file(f)).is_file())
    return {"mb": total / 1e6, "not_installed_here": missing}


def gunicorn_settings() -> dict:
    """The server settings a run used; a worker class given as a class (gunicorn.conf.py's) by its name."""
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    worker_class = conf["worker_class"]
    return {"workers": conf["workers"], "threads": conf["threads"],
            "worker_class": getattr(worker_class, "__name__", worker_class)}


def build_report(args: argparse.Namespace) -> dict:
    data = [path.read_bytes() for path in args.images]
    report = {"machine": machine(),
              "images": {"count": len(data), "first": str(args.images[0]),
                         "sizes": sorted({_shape(p) for p in args.images})},
              "gunicorn": gunicorn_settings()}
    size = read_metadata(args.model)["input_size"]
    inputs = [preprocess(blob, size) for blob in data]
    bare = bare_calls(args.model)
    report["model_only_ms"] = model_only(args.model, bare, inputs, args.runs)
    report["request_steps_ms"] = stage_breakdown(FractureModel(args.model), data[0], args.runs)
    macs = multiply_adds(args.model / FLOAT_TFLITE_FILE)
    ghz, peak = cpu_peak_gflops(len(os.sched_getaffinity(0)))
    report["floor"] = {"multiply_adds": macs, "gflops_per_image": 2 * macs / 1e9, "cpu_ghz": ghz,
                       "peak_gflops_assumed": peak, "floor_ms_at_peak": 2 * macs / 1e9 / peak * 1000}
    bodies = [multipart(blob, path.name) for blob, path in zip(data, args.images)]
    servers = {"app_tensorflow": (gunicorn_server("tensorflow"), local_server.worker_memory_mb),
               "app_litert": (gunicorn_server("litert"), local_server.worker_memory_mb),
               **({"app_onnx": (gunicorn_server("onnx"), local_server.worker_memory_mb)} if "onnx" in bare else {}),
               "naive_baseline": (naive_server, local_server.process_memory_mb)}
    paired = lambda port: paired_latency(port, bodies, bare, inputs, args.runs)  # noqa: E731
    report["servers"] = {name: serve_and_measure(start, memory, bodies, paired, args.clients, args.seconds)
                         for name, (start, memory) in servers.items()}
    report["install_mb"] = {"full": install_size_mb(ROOT / "requirements.txt"),
                            "slim": install_size_mb(ROOT / "requirements-slim.txt")}
    report["ratios"] = ratios(report)
    report["full_size"] = full_size_section(args)
    report["machine"]["load_avg_end"] = os.getloadavg()
    return report


def machine() -> dict:
    """Cores, CPU and the load average when the run starts."""
    return {"cpus": os.cpu_count(), "cores_usable": len(os.sched_getaffinity(0)),
            "cpu": platform.processor() or platform.machine(), "load_avg_start": os.getloadavg()}


def full_size_section(args: argparse.Namespace) -> dict:
    """The full-size part, or why it was left out."""
    if not args.full_size_source.is_file():
        return {"skipped": f"{args.full_size_source} is not on this machine"}
    return full_size_report(args.model, args.images[0], args.full_size_runs, args.full_size_source)


def build_full_size_only(args: argparse.Namespace) -> dict:
    """The report of ``--full-size-only``: the machine and the full-size part."""
    report = {"machine": machine(), "gunicorn": gunicorn_settings(), "full_size": full_size_section(args)}
    report["machine"]["load_avg_end"] = os.getloadavg()
    return report


def ratios(report: dict) -> dict:
    """Ours against the naive baseline, and the app's overhead over the bare call of the runtime it serves."""
    servers = report["servers"]
    naive = servers["naive_baseline"]
    out = {}
    for name in (name for name in servers if name.startswith("app_")):
        ours = servers[name]
        out[name] = {"reference": ours["reference"], "overhead_e2e_p50_over_bare_call_p50": ours["overhead_ratio"],
                     "naive_e2e_p50_over_ours": naive["e2e_ms"]["p50"] / ours["e2e_ms"]["p50"],
                     "throughput_over_naive": {c: ours["throughput"][c]["throughput_rps"]
                                               / max(naive["throughput"][c]["throughput_rps"], 1e-9)
                                               for c in ours["throughput"]}}
    return out


def full_size_table(section: dict) -> list[str]:
    """The full-size part as plain-text lines."""
    if "skipped" in section:
        return [f"full-size cases skipped: {section['skipped']}"]
    lines = [f"full-size uploads (from {Path(section['source']).name}; {section['runs']} runs each; backend "
             f"{section.get('backend', 'tensorflow')}), ms p50:",
             f"case                          decoded at   plain decode  e2e p50  e2e p95  {'bare call p50 (others)':>29s}  ratio  "
             "raw body: e2e p50  ratio  floor (raw)  peak MB (x decoded)"]
    for name, c in section["cases"].items():
        raw = c["raw_body"]
        lines.append(f"{name:30s}{'x'.join(map(str, c['decoded_at'][::-1])):>10s}  {c['plain_decode_ms']:12.1f}  "
                     f"{c['e2e_ms']['p50']:7.1f}  {c['e2e_ms']['p95']:7.1f}  {bare_calls_cell(c):>29s}  "
                     f"{c['ratio']:5.2f}  {raw['e2e_ms']['p50']:17.1f}  {raw['ratio']:5.2f}  "
                     f"{c['upload_floor_ms']['multipart']:5.1f} ({c['upload_floor_ms']['raw_body']:4.1f})  "
                     f"{c['analyse_peak_mb']:6.1f} ({c['peak_over_decoded']:.2f})")
    lines.append("  ratio = (e2e p50 - plain decode p50 - floor p50) / bare call p50 of the runtime the app serves "
                 "(the first named); e2e is a multipart upload, raw body the file as the request body; floor = the "
                 "same upload to an app that only receives it (bench/bare_upload.py); peak = one analyse(); whole "
                 "request, MB (x decoded):")
    for name, c in section["cases"].items():
        whole = c["request_peak_mb"]
        lines.append(f"  {name}: multipart {whole['multipart']:.1f} ({whole['multipart'] / c['plain_decoded_mb']:.2f}), "
                     f"raw body {whole['raw_body']:.1f} ({whole['raw_body'] / c['plain_decoded_mb']:.2f})")
    lines.append("  steps (ms):")
    for name, c in section["cases"].items():
        lines.append(f"  {name}: " + ", ".join(f"{step} {ms:.1f}" for step, ms in c["steps_ms"].items()))
    memory = section["worker_memory"]
    rounded = lambda values: [round(mb) for mb in values]  # noqa: E731
    rounds = "; ".join(f"right after {rounded(r['after_big_mb'])}, settled {rounded(r['settled_mb'])}"
                       for r in memory["rounds"])
    lines.append(f"worker RSS MB (each worker), steady {rounded(memory['steady_mb'])}, then in each round of "
                 f"{memory['big_uploads']} uploads of {memory['big_upload_mb']:.0f} MB: {rounds}")
    return lines


def bare_calls_cell(paired: dict) -> str:
    """The paired bare calls' p50s, the served runtime's first, each named: "litert 21.0 (tensorflow 48.2)"."""
    reference, calls = paired["reference"], paired["bare_call_ms"]
    others = ", ".join(f"{name} {ms['p50']:.1f}" for name, ms in calls.items() if name != reference)
    return f"{reference} {calls[reference]['p50']:.1f}" + (f" ({others})" if others else "")


def table(report: dict) -> str:
    """The report as a plain-text table."""
    if "servers" not in report:  # --full-size-only
        return "\n".join(full_size_table(report["full_size"]))
    lines = [f"machine: {report['machine']['cores_usable']} cores, load {report['machine']['load_avg_start']}"
             f" -> {report['machine']['load_avg_end']}; images: {report['images']['count']} "
             f"{report['images']['sizes']}; gunicorn {report['gunicorn']}", "",
             "model only, batch 1 with heatmap (ms)      p50      p95"]
    lines += [f"  {name:38s} {v['p50']:7.1f}  {v['p95']:7.1f}" for name, v in report["model_only_ms"].items()]
    lines += ["", "one API request inside the app, median ms"]
    lines += [f"  {name:38s} {ms:7.2f}" for name, ms in report["request_steps_ms"].items()]
    floor = report["floor"]
    lines += ["", f"floor: {floor['gflops_per_image']:.2f} GFLOP per image; at the assumed peak "
                  f"{floor['peak_gflops_assumed']:.0f} GFLOP/s ({report['machine']['cores_usable']} cores x "
                  f"{floor['cpu_ghz']:.2f} GHz x {FLOPS_PER_CYCLE} FLOP/cycle) that is "
                  f"{floor['floor_ms_at_peak']:.1f} ms", ""]
    clients = list(next(iter(report["servers"].values()))["throughput"])
    lines.append("server           cold start  e2e p50  e2e p95  paired bare call p50 (others)  "
                 + "  ".join(f"{c:>2} cl rps" for c in clients) + "  RSS MB/proc")
    for name, s in report["servers"].items():
        rps = "  ".join(f"{s['throughput'][c]['throughput_rps']:8.2f}" for c in clients)
        rss = ",".join(f"{m:.0f}" for m in s["rss_mb_per_process"])
        lines.append(f"{name:16s} {s['cold_start_s']:9.1f}s {s['e2e_ms']['p50']:7.1f}  {s['e2e_ms']['p95']:7.1f}  "
                     f"{bare_calls_cell(s):>29s}  {rps}  {rss}")
    lines.append("")
    for name, r in report["ratios"].items():
        tput = ", ".join(f"{c} cl {v:.2f}x" for c, v in r["throughput_over_naive"].items())
        lines.append(f"{name}: overhead {r['overhead_e2e_p50_over_bare_call_p50']:.2f} "
                     f"(e2e p50 / paired bare {r['reference']} call p50); "
                     f"naive p50 / ours {r['naive_e2e_p50_over_ours']:.2f}x; "
                     f"throughput vs naive {tput}")
    install = report["install_mb"]
    lines.append(f"installed size: full {install['full']['mb']:.0f} MB, slim {install['slim']['mb']:.0f} MB")
    return "\n".join(lines + [""] + full_size_table(report["full_size"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, nargs="+", default=None)
    parser.add_argument("--model", type=Path, default=ROOT / "model")
    parser.add_argument("--runs", type=int, default=50, help="timed calls per in-process measurement")
    parser.add_argument("--seconds", type=float, default=10, help="length of each throughput run")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--out", type=Path, default=Path("benchmark.json"))
    parser.add_argument("--full-size-only", action="store_true", help="run only the full-size uploads")
    parser.add_argument("--full-size-runs", type=int, default=20, help="timed calls per full-size measurement")
    parser.add_argument("--full-size-source", type=Path, default=FULL_SIZE_SOURCE,
                        help="the 8-bit original the full-size uploads are made from")
    args = parser.parse_args(argv)
    args.images = args.images or default_images()
    if 1 not in args.clients:
        parser.error("--clients must include 1 (the one-at-a-time latency)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    report = build_full_size_only(args) if args.full_size_only else build_report(args)
    print(table(report))
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

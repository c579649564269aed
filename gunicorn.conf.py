"""gunicorn settings for a clinic intranet: `gunicorn -c gunicorn.conf.py`.

Each worker loads and warms up its own copy of the model (about 0.8 GB resident on TensorFlow,
0.15 GB with FRACTURE_BACKEND=litert; scripts/benchmark.py reports it).
Environment: MALLOC_MMAP_THRESHOLD (bytes, 1048576; see post_fork), PORT (5000), BIND (0.0.0.0:$PORT), WEB_CONCURRENCY (workers, 2),
GUNICORN_THREADS (threads per worker, 4), GUNICORN_TIMEOUT (seconds, 60),
PROMETHEUS_MULTIPROC_DIR (where the workers share their metrics; see on_starting).
"""
import ctypes
import ctypes.util
import os
import shutil
import tempfile
from pathlib import Path

# Keep TensorFlow's C++ start-up chatter out of the log (workers inherit this).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

wsgi_app = "fracture_web.wsgi:app"
bind = os.environ.get("BIND", f"0.0.0.0:{os.environ.get('PORT', '5000')}")
# Two workers: one can die or restart while the other serves. Latency first: one request uses
# every core (FRACTURE_THREADS), so more workers than cores only add memory; throughput at 1, 4
# and 16 clients is in README.md (Speed), measured by scripts/benchmark.py with these settings.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# A prediction takes well under a second; the timeout covers model loading at start.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
# Never preload: TensorFlow started before fork can hang the workers.
preload_app = False
# Recycle workers now and then as a guard against slow memory growth.
max_requests = 2000
max_requests_jitter = 200
# Access log to stdout; it holds paths and status codes, never uploads or filenames.
accesslog = "-"
errorlog = "-"
loglevel = "info"

#: glibc's mallopt parameter number for the mmap threshold (malloc.h: M_MMAP_THRESHOLD).
M_MMAP_THRESHOLD = -3


def post_fork(server, worker):
    """Give buffers over 1 MB (a full-size upload, its decoded pixels) back to the system when freed.

    glibc raises its mmap threshold after the first large free, after which such buffers come
    from the heap and a worker keeps the peak of its largest uploads (about +170 MB after ten
    16-bit 4000x4000 DICOMs in scripts/benchmark.py). A fixed threshold keeps them mmap'ed, so a
    worker returns to its steady size. A no-op where the C library is not glibc.
    """
    libc_name = ctypes.util.find_library("c")
    threshold = int(os.environ.get("MALLOC_MMAP_THRESHOLD", str(1 << 20)))
    try:
        libc = ctypes.CDLL(libc_name)
        ok = libc.mallopt(M_MMAP_THRESHOLD, threshold)
    except (OSError, AttributeError, TypeError):
        ok = 0
    server.log.info("worker %s: malloc mmap threshold %s", worker.pid, threshold if ok else "unchanged")


#: The metrics folder on_starting made for this server (removed on exit), or None for the operator's own.
_private_metrics_dir = None


def on_starting(server):
    """Give the workers an empty folder to share their metrics in (prometheus_client's multiprocess mode),
    before any of them forks, so /metrics sums every worker's counts whichever worker answers it.

    PROMETHEUS_MULTIPROC_DIR set: that folder, emptied of the last run's files (*.db only). Unset:
    a private temporary folder, removed when the server stops. prometheus_client reads the variable
    when it is first imported, so nothing in this file imports it before this point.
    """
    global _private_metrics_dir
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        for stale in Path(folder).glob("*.db"):
            stale.unlink()
    else:
        folder = _private_metrics_dir = tempfile.mkdtemp(prefix="fracture-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    server.log.info("metrics shared by the workers in %s", folder)


def child_exit(server, worker):
    """Drop a dead worker's live gauges (its counters still count towards the totals)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the private metrics folder on_starting made."""
    if _private_metrics_dir:
        shutil.rmtree(_private_metrics_dir, ignore_errors=True)

"""gunicorn settings for a clinic intranet: `gunicorn -c gunicorn.conf.py`.

Each worker loads and warms up its own copy of the model (its resident memory, on LiteRT, the
default backend's choice for the shipped model, and on TensorFlow, is in docs/performance.md;
bench/benchmark.py and bench/compare_backends.py measure it).
Environment: MALLOC_TRIM_ABOVE (bytes, 16777216) and MALLOC_TRIM_IDLE_S (2; see post_request), MALLOC_ARENA_MAX (glibc's; 1 unless set, see post_fork), PORT (5000), BIND (0.0.0.0:$PORT), WEB_CONCURRENCY (workers, 2),
GUNICORN_THREADS (threads per worker, 4), GUNICORN_TIMEOUT (seconds, 60), GUNICORN_HEADER_TIMEOUT (seconds a
client has to send a request's line and headers, 10; see HeadDeadlineWorker),
PROMETHEUS_MULTIPROC_DIR (where the workers share their metrics; see on_starting).
"""
import ctypes
import ctypes.util
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from gunicorn.http.errors import NoMoreData
from gunicorn.workers.gthread import ThreadWorker

# Keep TensorFlow's C++ start-up chatter out of the log (workers inherit this).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

wsgi_app = "fracture_web.wsgi:app"
# Without nginx in front, gunicorn's threads are held by slow clients: the app bounds the time for
# a request's body (FRACTURE_UPLOAD_TIMEOUT), HeadDeadlineWorker the time for its head. This limits
# what one slow client can do, not what many can: on an untrusted network run behind nginx.
bind = os.environ.get("BIND", f"0.0.0.0:{os.environ.get('PORT', '5000')}")
# Two workers: one can die or restart while the other serves. Latency first: one request uses
# every core (FRACTURE_THREADS), so more workers than cores only add memory; throughput at 1, 4
# and 16 clients is in docs/performance.md, measured by bench/benchmark.py with these settings.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
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

#: Seconds a client has to send a request's line and headers once it has started (see HeadDeadlineWorker).
_header_timeout = float(os.environ.get("GUNICORN_HEADER_TIMEOUT", "10"))


class _HeadDeadline:
    """A client's socket whose reads end at ``deadline`` (a ``time.monotonic()``; None: no limit)."""

    def __init__(self, sock):
        self._sock, self.deadline = sock, None

    def recv(self, size, *flags):
        if self.deadline is None:
            return self._sock.recv(size, *flags)
        left = self.deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            self._sock.settimeout(left)
            return self._sock.recv(size, *flags)
        except TimeoutError:
            raise NoMoreData(b"") from None  # gunicorn closes the connection quietly

    def __getattr__(self, name):
        return getattr(self._sock, name)


class HeadDeadlineWorker(ThreadWorker):
    """gunicorn's gthread worker, with a deadline for each request's line and headers.

    gthread reads them in a worker thread with no time limit: clients sending their headers a
    byte at a time held every thread (tests/test_hostile_clients.py). Here a client has
    GUNICORN_HEADER_TIMEOUT seconds from the moment a thread takes up its connection; a slower one
    is disconnected. The body's own limit is the app's (FRACTURE_UPLOAD_TIMEOUT). Not for TLS
    served by gunicorn itself (its socket is wrapped later); TLS belongs to nginx here anyway.
    """

    def handle(self, conn):
        if conn.parser is None and not self.cfg.is_ssl and not isinstance(conn.sock, _HeadDeadline):
            conn.sock = _HeadDeadline(conn.sock)
        if isinstance(conn.sock, _HeadDeadline):
            conn.sock.deadline = time.monotonic() + _header_timeout
        return super().handle(conn)

    def handle_request(self, req, conn):
        if isinstance(conn.sock, _HeadDeadline):  # the head is in: the app bounds the body
            conn.sock.deadline = None
            conn.sock.settimeout(None)
        return super().handle_request(req, conn)


worker_class = HeadDeadlineWorker


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (malloc.h, glibc 2.33+): ``fordblks`` is the free memory malloc holds."""
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


def _glibc():
    """The C library, for mallopt, mallinfo2 and malloc_trim; None where it is not glibc 2.33+."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallinfo2.restype = _MallInfo2
        return libc
    except (OSError, AttributeError, TypeError):
        return None


_libc = _glibc()
#: Free memory (bytes) a worker's malloc may keep after a request before it is handed back to the system.
_trim_above = int(os.environ.get("MALLOC_TRIM_ABOVE", str(16 << 20)))


#: glibc's mallopt parameter for the most malloc arenas a process may have (malloc.h).
_M_ARENA_MAX = -8


def post_fork(server, worker):
    """One malloc arena for all of a worker's threads, unless MALLOC_ARENA_MAX says otherwise.

    glibc gives each thread that allocates its own arena, and memory freed in those arenas stays
    with the process even after malloc_trim: a worker whose threads had served large uploads
    stayed above its steady size for good. With one arena it returns to it
    (bench/benchmark.py, worker memory). The worker's threads start after this hook.
    """
    if _libc is not None and "MALLOC_ARENA_MAX" not in os.environ:
        _libc.mallopt(_M_ARENA_MAX, 1)


#: Seconds without a large request after which a worker hands its free memory back.
_trim_after_s = float(os.environ.get("MALLOC_TRIM_IDLE_S", "2"))
#: The pending hand-back, restarted by each large request (one per worker process).
_trim_timer = None


def post_request(worker, req, environ, resp):
    """After a request that left much free memory inside malloc (a full-size upload, its decoded
    pixels), hand it back to the system once no other such request has come for a while, so a
    worker returns to its steady size.

    glibc keeps freed memory for reuse, so after a series of large DICOMs a worker held more than
    its steady size for good. Handing it back after every large buffer instead (a fixed mmap
    threshold) made each big request fault in fresh pages for every copy of its body, which made
    a large DICOM's request much slower; handing it back after every large request still cost the
    next one fresh pages. So a run of large uploads (a PACS sending a study) keeps the memory
    it reuses, and it goes back MALLOC_TRIM_IDLE_S seconds after the last of them
    (bench/benchmark.py, worker memory). Small requests cost nothing here.
    """
    global _trim_timer
    if _libc is None or _libc.mallinfo2().fordblks <= _trim_above:
        return
    if _trim_timer is not None:
        _trim_timer.cancel()
    _trim_timer = threading.Timer(_trim_after_s, _libc.malloc_trim, args=(0,))
    _trim_timer.daemon = True
    _trim_timer.start()


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

"""Real services the tests start on loopback and clean up: Orthanc (a PACS, the Debian package
``orthanc``, with ``orthanc-dicomweb`` for its DICOMweb plugin), redis-server (Debian's, the broker of
the node's workers), PostgreSQL (Debian's ``postgresql``, where the reads are kept on several hosts),
and the node and its workers as ``python -m`` processes, as in production."""
from __future__ import annotations

import base64
import io
import json
import os
import pwd
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError
from pydicom import Dataset, dcmread
from pydicom.uid import ComprehensiveSRStorage, ExplicitVRLittleEndian, SecondaryCaptureImageStorage
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification
from redis import Redis, RedisError

from bench.dx_files import to_bytes
from bench.local_server import free_port, running_process

from helpers import ROOT

ORTHANC = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin:/usr/local/sbin")
REDIS = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin:/usr/local/sbin")
#: Orthanc's DICOMweb plugin, where the Debian package 'orthanc-dicomweb' puts it.
DICOMWEB_PLUGIN = next((path for path in (Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"),
                                          *sorted(Path("/usr/lib/orthanc").glob("libOrthancDicomWeb.so*")))
                        if path.exists()), None)
#: Debian's PostgreSQL server binaries (the newest installed version), or None.
POSTGRES_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), reverse=True)), None)
NODE_AE, ORTHANC_AE = "FRACTURE_AI", "ORTHANC"
SHIPPED_MODEL = ROOT / "model"
#: The account the node signs in with to Orthanc's DICOMweb.
USER, PASSWORD = "fracture-node", "s3cret-for-tests"


@dataclass(frozen=True)
class Orthanc:
    """A running Orthanc: its REST URL, its DICOM port and the Authorization header it wants, if any."""

    url: str
    dicom_port: int
    authorization: str | None = None

    def rest(self, path: str, data: bytes | dict | None = None) -> dict | list | bytes:
        """Call Orthanc's REST API; JSON answers are parsed."""
        body = json.dumps(data).encode() if isinstance(data, dict) else data
        request = urllib.request.Request(self.url + path, data=body, method="GET" if body is None else "POST")
        if self.authorization:
            request.add_header("Authorization", self.authorization)
        with urllib.request.urlopen(request, timeout=60) as response:
            content = response.read()
            return json.loads(content) if response.headers.get_content_type() == "application/json" else content


def wait_for(check, what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.5)


@contextmanager
def storage_scp(port: int, refuse: frozenset[str] = frozenset(), ae_title: str = "DEST", associations: list | None = None,
                abort_on: frozenset[str] = frozenset()):
    """A destination PACS on loopback that stores what it receives in a list, except the SOP Instance
    UIDs in ``refuse``, which it answers 0xA700 for ever (as Orthanc does a result with an over-long
    Study UID), and those in ``abort_on``, on which it aborts the association mid-C-STORE for ever (as
    a PACS or DICOM firewall may on an object it cannot parse); each association it accepts is
    appended to ``associations`` when given."""
    received = []
    accepted = [] if associations is None else associations

    def store(event):
        if event.dataset.SOPInstanceUID in abort_on:
            event.assoc.abort()
            return 0xA700  # never reaches the sender: the association is gone
        if event.dataset.SOPInstanceUID in refuse:
            return 0xA700
        received.append(event.dataset)
        return 0x0000

    ae = AE(ae_title=ae_title)
    for sop_class in (SecondaryCaptureImageStorage, ComprehensiveSRStorage):
        ae.add_supported_context(sop_class, [ExplicitVRLittleEndian])
    server = ae.start_server(("127.0.0.1", port), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, store), (evt.EVT_ACCEPTED, lambda e: accepted.append(e.assoc))])
    try:
        yield received
    finally:
        server.shutdown()


@contextmanager
def orthanc(tmp_path: Path, node_port: int, dicomweb: bool = False):
    """Orthanc on free loopback ports with the node registered as a modality; with ``dicomweb``, its
    DICOMweb plugin on and a user account required for the REST and DICOMweb APIs."""
    http_port, dicom_port = free_port(), free_port()
    config = {"Name": "fracture-test", "StorageDirectory": str(tmp_path / "storage"),
              "IndexDirectory": str(tmp_path / "storage"), "HttpPort": http_port, "DicomPort": dicom_port,
              "DicomAet": ORTHANC_AE, "RemoteAccessAllowed": False, "AuthenticationEnabled": dicomweb,
              "Plugins": [str(DICOMWEB_PLUGIN)] if dicomweb else [], "DicomAlwaysAllowStore": True, "StableAge": 1,
              "OverwriteInstances": True,  # a re-issued report (same SOP Instance UID) replaces the earlier one
              "DicomModalities": {"fracture": [NODE_AE, "127.0.0.1", node_port]}}
    authorization = None
    if dicomweb:
        config |= {"DicomWeb": {"Enable": True, "Root": "/dicom-web/"}, "RegisteredUsers": {USER: PASSWORD}}
        authorization = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    path = tmp_path / "orthanc.json"
    path.write_text(json.dumps(config))
    server = Orthanc(f"http://127.0.0.1:{http_port}", dicom_port, authorization)
    with running_process([ORTHANC, str(path)], tmp_path / "orthanc.log") as process:
        wait_for(lambda: process.poll() is None and server.rest("/system"), "Orthanc to start")
        yield server


@contextmanager
def node(tmp_path: Path, pacs: Orthanc, node_port: int, settings: dict[str, str]):
    """The DICOM node on ``node_port`` with these settings (where results go, ...) and the shipped
    model; yields its log file once it answers Orthanc's "test connection" (C-ECHO)."""
    log = tmp_path / "node.log"
    with running_process([sys.executable, "-m", "fracture_web.dicom_node"], log, node_env(tmp_path, node_port, settings)) \
            as process:
        wait_for(lambda: process.poll() is None and pacs.rest("/modalities/fracture/echo", {}) is not None,
                 "the node to answer C-ECHO")
        yield log




def node_env(tmp_path: Path, node_port: int, settings: dict[str, str]) -> dict[str, str]:
    """The environment of a node or worker process: the shipped model, loopback, a queue folder, ``settings``."""
    return os.environ | {"FRACTURE_MODEL_DIR": str(SHIPPED_MODEL), "FRACTURE_DICOM_AE_TITLE": NODE_AE,
                         "FRACTURE_DICOM_BIND": "127.0.0.1", "FRACTURE_DICOM_PORT": str(node_port),
                         "FRACTURE_DICOM_QUEUE_DIR": str(tmp_path / "queue"),
                         "FRACTURE_DICOM_ALLOWED_AE_TITLES": f"{ORTHANC_AE},MODALITY"} | settings


@contextmanager
def redis_server(folder: Path, processes: list | None = None):
    """Debian's redis-server on a free loopback port, its append-only file in ``folder`` (every write
    on disk before it answers); yields its URL (database 0). Its process is added to ``processes``
    (for a test that freezes it)."""
    port = free_port()
    command = [REDIS, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder), "--save", "",
               "--appendonly", "yes", "--appendfsync", "always"]
    with running_process(command, folder / "redis.log") as process:
        client = Redis(port=port)
        if processes is not None:
            processes.append(process)

        def answers() -> bool:
            try:
                return process.poll() is None and client.ping()
            except RedisError:
                return False

        wait_for(answers, "redis-server to start", timeout=30)
        yield f"redis://127.0.0.1:{port}/0"


def c_store_all(port: int, datasets: list[Dataset]) -> list[int]:
    """Send the datasets to the node in one association, as a modality sends a burst; their statuses."""
    ae = AE(ae_title="MODALITY")
    for sop_class in {ds.SOPClassUID for ds in datasets}:
        ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
    assert assoc.is_established
    try:
        return [assoc.send_c_store(ds).Status for ds in datasets]
    finally:
        assoc.release()


def c_store(port: int, ds: Dataset) -> int:
    """Send one dataset to the node as a modality would; its status."""
    return c_store_all(port, [ds])[0]


def results_by_modality(pacs: Orthanc) -> dict[str, list[str]]:
    """Orthanc's instance IDs by series modality (DX, OT for Secondary Captures, SR)."""
    found: dict[str, list[str]] = {}
    for series in pacs.rest("/series?expand"):
        found.setdefault(series["MainDicomTags"].get("Modality", ""), []).extend(series["Instances"])
    return found


@contextmanager
def postgres_server():
    """A throwaway PostgreSQL cluster (Debian's binaries) on a free loopback port, trusting local
    connections; yields its URL (database ``postgres``, user ``postgres``). PostgreSQL refuses to run as
    root, so under root it runs as the ``postgres`` user the Debian package creates, in a folder it owns."""
    folder = Path(tempfile.mkdtemp(prefix="fracture-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(folder, account.pw_uid, account.pw_gid)
        as_user = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups"]
    data, port, bin_dir = folder / "data", free_port(), POSTGRES_BIN.parent
    try:
        subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                        "--no-sync"], check=True, capture_output=True, cwd=folder)
        command = [*as_user, str(POSTGRES_BIN), "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", "",
                   "-c", "fsync=off"]
        with running_process(command, Path(tempfile.mkdtemp()) / "postgres.log") as process:
            url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
            wait_for(lambda: process.poll() is None and _accepts(port), "PostgreSQL to start", timeout=60)
            yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _accepts(port: int) -> bool:
    import psycopg

    try:
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=2).close()
        return True
    except psycopg.OperationalError:
        return False


#: The OHIF viewer the browser test serves: npm's ``@ohif/app`` ships it built (``dist/``).
OHIF_PACKAGE = "@ohif/app@3.13.2"
NPM = shutil.which("npm")


def ohif_dist(cache: Path) -> Path:
    """OHIF's built viewer (``dist/``), fetched once with npm into ``cache`` (the package alone: its
    dependencies are bundled in ``dist/``); raises ``OSError`` saying why when npm cannot fetch it."""
    dist = cache / "package" / "dist"
    if (dist / "index.html").exists():
        return dist
    if NPM is None:
        raise OSError("npm is not installed")
    cache.mkdir(parents=True, exist_ok=True)
    packed = subprocess.run([NPM, "pack", OHIF_PACKAGE, "--silent", "--pack-destination", str(cache)],
                            capture_output=True, text=True, timeout=600)
    if packed.returncode != 0:
        raise OSError(f"npm pack {OHIF_PACKAGE} failed: {packed.stderr.strip()[-500:]}")
    with tarfile.open(cache / packed.stdout.split()[-1]) as archive:
        archive.extractall(cache, filter="data")
    return dist


def ohif_config(friendly_name: str = "Orthanc") -> str:
    """OHIF's ``app-config.js``: one DICOMweb source at ``/dicom-web`` on the viewer's own origin."""
    source = {"namespace": "@ohif/extension-default.dataSourcesModule.dicomweb", "sourceName": "orthanc",
              "configuration": {"friendlyName": friendly_name, "name": "orthanc", "qidoRoot": "/dicom-web",
                                "wadoRoot": "/dicom-web", "wadoUriRoot": "/wado", "qidoSupportsIncludeField": False,
                                "imageRendering": "wadors", "thumbnailRendering": "wadors",
                                "enableStudyLazyLoad": True, "supportsFuzzyMatching": False,
                                "supportsWildcard": True, "omitQuotationForMultipartRequest": True,
                                "bulkDataURI": {"enabled": True}}}
    config = {"routerBasename": "/", "extensions": [], "modes": [], "showStudyList": True,
              "investigationalUseDialog": {"option": "never"}, "showWarningMessageForCrossOrigin": False,
              "showCPUFallbackMessage": False, "defaultDataSourceName": "orthanc", "dataSources": [source]}
    return f"window.config = {json.dumps(config)};\n"


class _ViewerHandler(SimpleHTTPRequestHandler):
    """OHIF's files (any other path is the single-page app's route: ``index.html``), its configuration,
    and ``/dicom-web/`` passed on to Orthanc, signed in: one origin, as a site's reverse proxy gives."""

    pacs: Orthanc

    def do_GET(self) -> None:
        if self.path.startswith("/dicom-web/"):
            return self._forward()
        if self.path.split("?")[0] == "/app-config.js":
            return self._answer(200, "text/javascript", ohif_config().encode())
        if not Path(self.translate_path(self.path)).is_file():
            self.path = "/index.html"
        return super().do_GET()

    def _forward(self) -> None:
        request = urllib.request.Request(self.pacs.url + self.path, headers={"Accept": self.headers.get("Accept", "*/*")})
        if self.pacs.authorization:
            request.add_header("Authorization", self.pacs.authorization)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                self._answer(response.status, response.headers.get("Content-Type", ""), response.read())
        except urllib.error.HTTPError as err:
            self._answer(err.code, err.headers.get("Content-Type", "text/plain"), err.read())

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's signature
        """Quiet: the test reads the page, not the request log."""


@contextmanager
def ohif_viewer(dist: Path, pacs: Orthanc):
    """OHIF served from ``dist`` on a free loopback port, reading ``pacs`` by DICOMweb; yields its URL."""
    handler = type("ViewerHandler", (_ViewerHandler,), {"pacs": pacs})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), partial(handler, directory=str(dist)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class FhirServer:
    """A FHIR server's base URL and what it was sent: each request's path and headers, and its body
    when every resource in it was valid (an invalid one is answered 400, as a FHIR server would)."""

    url: str
    received: list[dict]
    paths: list[str]
    headers: list[dict]


def _fhir_problems(bundle_text: bytes) -> str | None:
    """Why a FHIR server would reject the bundle: every resource in it is validated by its own
    ``fhir.resources`` R4B model; None when all are valid."""
    try:
        bundle = Bundle.model_validate_json(bundle_text)
        for entry in bundle.entry:
            type(entry.resource).model_validate(entry.resource.model_dump())
    except ValidationError as err:
        return str(err)
    return None


@contextmanager
def fhir_server(down_for: int = 0, refuse_studies: frozenset[str] = frozenset()):
    """A FHIR server on a free loopback port (``<url>`` is its base, as ``/fhir``) that validates
    every Bundle posted to it: the first ``down_for`` requests get 503, a report citing a Study
    Instance UID in ``refuse_studies`` gets 422, the rest are kept and answered as a transaction."""
    got = FhirServer("", [], [], [])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.paths.append(self.path)
            got.headers.append(dict(self.headers))
            problems = _fhir_problems(body)
            if len(got.paths) <= down_for:
                return self._answer(503, {"resourceType": "OperationOutcome", "issue": []})
            if problems or any(f'"urn:oid:{uid}"' in body.decode() for uid in refuse_studies):
                return self._answer(400 if problems else 422, {"resourceType": "OperationOutcome", "issue": [
                    {"severity": "error", "code": "invalid", "diagnostics": (problems or "refused")[:500]}]})
            got.received.append(json.loads(body))
            self._answer(200, {"resourceType": "Bundle", "type": "transaction-response", "entry": []})

        def _answer(self, status: int, answer: dict) -> None:
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    with serving(Handler) as server:
        got.url = f"http://127.0.0.1:{server.server_port}/fhir"
        yield got


def node_answers(port: int) -> bool:
    """Whether a DICOM node on ``port`` answers a C-ECHO (it has started, or is back up)."""
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="FRACTURE_AI")
    if not assoc.is_established:
        return False
    assoc.release()
    return True


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]):
    """``handler`` answering HTTP on a free loopback port, in a thread, for the block (the server)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class ReportedStudy:
    """A radiograph's study in Orthanc with the node's results, and OHIF serving it: the viewer's URL,
    the study's UID, the series UIDs of the source, its Secondary Capture and its report, and the report."""

    viewer: str
    study: str
    source_series: str
    sc_series: str
    sr_series: str
    report: Dataset

    def url(self, series: str) -> str:
        """The viewer opened on the study with ``series`` in its viewport."""
        return f"{self.viewer}/viewer?StudyInstanceUIDs={self.study}&initialSeriesInstanceUID={series}"


@contextmanager
def reported_study_in_ohif(folder: Path, dist: Path, source: Dataset):
    """Orthanc (DICOMweb on, signed in), the node reporting to it by STOW-RS, ``source`` sent through
    Orthanc to the node, and OHIF from ``dist`` on Orthanc once the SC and the SR are back."""
    node_port = free_port()
    with orthanc(folder, node_port, dicomweb=True) as pacs:
        settings = {"FRACTURE_DICOMWEB_URL": f"{pacs.url}/dicom-web", "FRACTURE_DICOMWEB_USER": USER,
                    "FRACTURE_DICOMWEB_PASSWORD": PASSWORD, "FRACTURE_DICOM_SETTLE_SECONDS": "1"}
        with node(folder, pacs, node_port, settings):
            study = pacs.rest("/instances", to_bytes(source))["ParentStudy"]
            pacs.rest("/modalities/fracture/store", {"Resources": [study], "Synchronous": True})
            series = wait_for(lambda: _series_once_reported(pacs, study), "the node's SC and SR in Orthanc")
        report = dcmread(io.BytesIO(pacs.rest(f"/instances/{series['SR']['Instances'][0]}/file")))
        uids = {modality: s["MainDicomTags"]["SeriesInstanceUID"] for modality, s in series.items()}
        with ohif_viewer(dist, pacs) as viewer:
            yield ReportedStudy(viewer, source.StudyInstanceUID, uids["DX"], uids["OT"], uids["SR"], report)


def _series_once_reported(pacs: Orthanc, study: str) -> dict[str, dict] | None:
    """The study's series (Orthanc's) by modality once it holds a Secondary Capture and a report."""
    series = {s["MainDicomTags"]["Modality"]: s for s in pacs.rest(f"/studies/{study}/series")}
    return series if {"OT", "SR"} <= set(series) else None

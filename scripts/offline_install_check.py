"""Prove that the wheelhouse installs and serves with no network: `make wheelhouse-check`.

    python scripts/offline_install_check.py [--wheelhouse wheelhouse] [--variant slim|full]

In a fresh temporary folder: unpack the app and model from the wheelhouse, make a virtual
environment, ``pip install --no-index --find-links`` the variant's requirements and the app, start
gunicorn (the slim variant on the LiteRT backend) and post a real X-ray, both with the unpacked
checkout's ``python -m bench.local_server`` (the helper the tests and the load test start gunicorn
with; it needs nothing beyond the run install). Every step runs inside a network namespace with only
a loopback interface (``unshare --net``, needs root and iproute2), so any download would fail; pip's
machine-wide settings are ignored (``PIP_CONFIG_FILE=/dev/null``) so no local mirror helps either.
Exits 0 when the X-ray gets a verdict, 1 otherwise.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = "data/samples/hand_fractured_IMG0000019.jpg"


def offline(command: str) -> list[str]:
    """``command`` (shell) in a new network namespace whose only interface is loopback."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        sys.exit("this check needs root, unshare and ip (iproute2) to cut the network")
    return ["unshare", "--net", "sh", "-c", f"ip link set lo up\n{command}"]


def steps(work: Path, wheelhouse: Path, variant: str) -> str:
    """The shell script that installs and serves from the wheelhouse, offline."""
    venv, source = work / "venv", work / "fracture-web"
    requirements = wheelhouse / ("requirements-slim.txt" if variant == "slim" else "requirements.txt")
    pip = f"{venv}/bin/pip install -q --no-index --find-links {shlex.quote(str(wheelhouse))}"
    backend = "litert" if variant == "slim" else "tensorflow"
    no_tensorflow = ("if {0}/bin/python -c 'import tensorflow' 2>/dev/null; then echo 'TensorFlow got in'; exit 1; fi\n"
                     "echo 'no TensorFlow in the slim install'".format(venv) if variant == "slim" else "")
    return f"""set -e
{sys.executable} -m venv {venv}
{pip} -r {requirements}
{pip} --no-deps -e {source}
{no_tensorflow}
cd {source}
{venv}/bin/python -m bench.local_server --post {SAMPLE} --log {work}/gunicorn.log \\
    --env WEB_CONCURRENCY=1 FRACTURE_BACKEND={backend}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheelhouse", type=Path, default=ROOT / "wheelhouse")
    parser.add_argument("--variant", choices=("slim", "full"), default="slim")
    args = parser.parse_args(argv)
    wheelhouse = args.wheelhouse.resolve()
    with tempfile.TemporaryDirectory(prefix="offline-install-") as tmp:
        work = Path(tmp)
        with tarfile.open(wheelhouse / "fracture-web.tar.gz") as archive:
            archive.extractall(work, filter="data")
        env = {key: value for key, value in os.environ.items() if not key.startswith(("PIP_", "VIRTUAL_ENV"))}
        env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        done = subprocess.run(offline(steps(work, wheelhouse, args.variant)), env=env,
                              capture_output=True, text=True, timeout=1200)
        print(done.stdout + done.stderr)
        if done.returncode != 0 or '"label"' not in done.stdout:
            log = work / "gunicorn.log"
            print(log.read_text()[-3000:] if log.exists() else "gunicorn did not start", file=sys.stderr)
            print(f"FAILED: the {args.variant} install from {wheelhouse} did not serve offline", file=sys.stderr)
            return 1
    print(f"OK: the {args.variant} install from {wheelhouse} served an X-ray with the network cut")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Container images built and run without a daemon or a registry: Debian's ``buildah`` (chroot isolation,
vfs storage in a folder of the test's own) and ``mmdebstrap``, which makes the stand-in for
``python:3.11-slim``: Debian 12's Python 3.11 with ``/usr/local`` made a virtual environment, so ``pip``
and ``python`` are where the official image has them."""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.local_server import running_process

#: The name the stand-in base image gets in the test's storage; the Dockerfile's FROM is replaced by it.
BASE_IMAGE = "localhost/python-stand-in:3.11-slim"
#: Debian 12 (bookworm) packages of the stand-in: Python 3.11 with venv, and what the official image also has.
BASE_PACKAGES = "python3,python3-venv,ca-certificates,netbase"
#: The trust store of the host, lent to the build so that pip reaches the package index through the
#: certificate authorities this host trusts (users elsewhere build without it).
#: The decimal units of the sizes buildah shows.
SIZE_UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
HOST_TRUST_STORE = Path("/etc/ssl/certs/ca-certificates.crt")


def missing_tools() -> str | None:
    """Install buildah and mmdebstrap with apt where they are missing and we may; why not, or None."""
    needed = [tool for tool in ("buildah", "mmdebstrap") if shutil.which(tool) is None]
    if not needed:
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{' and '.join(needed)} not installed, and apt-get cannot install them here (not root or no apt)"
    install = ["apt-get", "install", "-y", "-q", *needed]
    if subprocess.run(install, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True)
        if subprocess.run(install, capture_output=True).returncode != 0:
            return f"installing {' and '.join(needed)} with apt-get failed"
    return None


class Buildah:
    """buildah with its images and containers in ``folder`` (vfs: no overlay mounts needed), run as root."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.command = ["buildah", "--root", str(folder / "storage"), "--runroot", str(folder / "run"),
                        "--storage-driver", "vfs"]

    def __call__(self, *args: str, log: Path | None = None) -> str:
        """Run ``buildah args``; its standard output, stripped (``log`` takes all output instead)."""
        if log is None:
            return subprocess.run([*self.command, *args], check=True, capture_output=True, text=True).stdout.strip()
        with log.open("w") as out:
            subprocess.run([*self.command, *args], check=True, stdout=out, stderr=subprocess.STDOUT)
        return ""

    def make_base_image(self) -> str:
        """The stand-in for ``python:3.11-slim`` (:data:`BASE_IMAGE`), from a Debian 12 root filesystem."""
        rootfs = self.folder / "rootfs.tar"
        subprocess.run(["mmdebstrap", "--variant=minbase", f"--include={BASE_PACKAGES}",
                        "--aptopt=APT::Install-Recommends \"false\"",
                        "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
                        "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright",
                        "--customize-hook=chroot \"$1\" python3 -m venv /usr/local", "bookworm", str(rootfs)],
                       check=True, capture_output=True)
        container = self("from", "scratch")
        self("add", container, str(rootfs), "/")
        rootfs.unlink()
        self("config", "--env", "LANG=C.UTF-8", "--cmd", "python3", container)
        self("commit", "--rm", "--format", "docker", container, BASE_IMAGE)
        # Every stage of the Dockerfile names python:3.11-slim; with no registry, that name is the stand-in.
        self("tag", BASE_IMAGE, "docker.io/library/python:3.11-slim")
        return BASE_IMAGE

    def build_options(self) -> list[str]:
        """What only this machine's build needs: no daemon (chroot), no registry (the stand-in base image
        is tagged as the one the Dockerfile names), and the host's trust store with a pip configuration naming it."""
        options = ["--isolation", "chroot", "--pull=never"]
        if HOST_TRUST_STORE.exists():
            pip_conf = self.folder / "pip.conf"
            pip_conf.write_text(f"[global]\ncert = {HOST_TRUST_STORE}\n")
            options += ["-v", f"{HOST_TRUST_STORE.parent}:{HOST_TRUST_STORE.parent}:ro",
                        "-v", f"{pip_conf}:/etc/pip.conf:ro"]
        return options

    def size(self, image: str) -> float:
        """The image's size in bytes, as ``buildah images`` shows it (its layers unpacked; three digits)."""
        lines = self("images", "--format", "{{.Size}}", "--noheading", image).splitlines()
        number, unit = lines[0].split()  # one line per name of the image, all the same size
        return float(number) * SIZE_UNITS[unit]

    @contextmanager
    def running(self, image: str, command: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
        """A container of ``image`` running ``command`` in the host's network, with ``env`` added to the
        image's own; stopped (SIGTERM) and removed on leaving."""
        container = self("from", "--pull=never", image)
        settings = [arg for name, value in env.items() for arg in ("--env", f"{name}={value}")]
        try:
            with running_process([*self.command, "run", "--isolation", "chroot", "--network", "host", *settings,
                                  container, "--", *command], log) as process:
                yield process
        finally:
            self("rm", container)

    def run_once(self, image: str, command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
        """Run ``command`` in a fresh container of ``image`` to its end; its exit status and output."""
        container = self("from", "--pull=never", image)
        settings = [arg for name, value in env.items() for arg in ("--env", f"{name}={value}")]
        try:
            return subprocess.run([*self.command, "run", "--isolation", "chroot", "--network", "host", *settings,
                                   container, "--", *command], capture_output=True, text=True, timeout=300)
        finally:
            self("rm", container)

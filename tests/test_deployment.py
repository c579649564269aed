"""Hospital IT's story: gunicorn refuses to start without a usable model, in one clear line."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT


def start_gunicorn(model_dir: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"FRACTURE_MODEL_DIR": str(model_dir), "BIND": "127.0.0.1:0", "WEB_CONCURRENCY": "1"}
    return subprocess.run([str(Path(sys.executable).parent / "gunicorn"), "-c", "gunicorn.conf.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("damage", ["missing", "corrupt weights", "garbled metadata"])
def test_startup_fails_fast_with_one_clear_line_when_the_model_is_unusable(damage, tiny_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    if damage != "missing":
        shutil.copytree(tiny_model_dir, model_dir)
    if damage == "corrupt weights":
        (model_dir / "saved_model.pb").write_bytes(b"not a protobuf")
    if damage == "garbled metadata":
        (model_dir / "metadata.json").write_text('{"model_version": 1}')
    done = start_gunicorn(model_dir)
    assert done.returncode != 0
    reasons = [line for line in done.stderr.splitlines() if "cannot start:" in line]
    assert reasons and str(model_dir) in reasons[0]
    assert "Traceback" not in done.stderr

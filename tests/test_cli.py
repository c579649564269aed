"""The ML engineer's command line: scripts/predict.py."""
from __future__ import annotations

import json

from helpers import SAMPLES, run_script


def test_predict_prints_one_line_per_file(tiny_model_dir):
    done = run_script("predict.py", "--model", str(tiny_model_dir), "--image", str(SAMPLES[0]), str(SAMPLES[1]))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2
    assert all(("FRACTURE SUSPECTED" in line or "no fracture detected" in line) and "probability" in line
               for line in lines)


def test_predict_json(tiny_model_dir):
    done = run_script("predict.py", "--model", str(tiny_model_dir), "--image", str(SAMPLES[0]), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["label"] in ("fractured", "not_fractured") and 0 <= result["probability"] <= 1


def test_predict_fails_clearly_on_a_bad_file(tiny_model_dir, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an x-ray")
    done = run_script("predict.py", "--model", str(tiny_model_dir), "--image", str(SAMPLES[0]), str(bad))
    assert done.returncode == 1
    assert "not an image" in done.stderr and str(bad) in done.stderr
    assert len(done.stdout.strip().splitlines()) == 1  # the good file still gets its verdict


def test_predict_fails_clearly_on_a_missing_file(tiny_model_dir, tmp_path):
    done = run_script("predict.py", "--model", str(tiny_model_dir), "--image", str(tmp_path / "absent.png"))
    assert done.returncode == 1 and "No such file" in done.stderr

"""The ML engineer's command line: scripts/predict.py."""
from __future__ import annotations

import io
import json
import os
import shutil

import cv2
import pytest
from PIL import Image

from fracture_web import create_app
from helpers import SAMPLES, run_script, same_answer
from dicom_files import radiograph_dataset, to_bytes


def test_predict_prints_one_line_per_file(tiny_model_dir):
    done = run_script("predict.py", "--model", str(tiny_model_dir), "--image", str(SAMPLES[0]), str(SAMPLES[1]))
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.strip().splitlines() if not line.startswith("  warning: ")]
    assert len(lines) == 2
    assert all(("FRACTURE SUSPECTED" in line or "no fracture detected" in line) and "probability" in line
               for line in lines)


def test_predict_json(tiny_model_dir):
    done = run_script("predict.py", "--model", str(tiny_model_dir), "--image", str(SAMPLES[0]), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["label"] in ("fractured", "not_fractured") and 0 <= result["probability"] <= 1
    assert isinstance(result["findings"], list)
    assert all(set(f) == {"box", "score", "level"} and len(f["box"]) == 4 for f in result["findings"])
    if result["label"] == "fractured":
        assert result["findings"]


def test_the_command_line_and_the_api_report_the_same_fields_and_values(tiny_model_dir, tmp_path, reads_url):
    dicom = tmp_path / "hand.dcm"
    dicom.write_bytes(to_bytes(radiograph_dataset(cv2.imread(str(SAMPLES[0]), cv2.IMREAD_GRAYSCALE))))
    client = create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir), "DATABASE_URL": reads_url}).test_client()
    for path in (SAMPLES[0], dicom):
        done = run_script("predict.py", "--model", str(tiny_model_dir), "--image", str(path), "--json")
        assert done.returncode == 0, done.stderr
        cli = json.loads(done.stdout)
        answer = client.post("/api/v1/predict", data={"file": (io.BytesIO(path.read_bytes()), "x")}).get_json()
        api = same_answer(answer)  # the id a read is sent with, and whether it was stored, are the web's own
        assert cli.pop("probability") == pytest.approx(api.pop("probability"), abs=1e-6)
        assert cli == {"file": str(path), **api}
    assert api["dicom"] == {"modality": "DX", "body_part": "HAND", "view_position": "PA", "laterality": "L"}


def test_predict_fails_clearly_on_a_bad_file(tiny_model_dir, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an x-ray")
    done = run_script("predict.py", "--model", str(tiny_model_dir), "--image", str(SAMPLES[0]), str(bad))
    assert done.returncode == 1
    assert "not an image" in done.stderr and str(bad) in done.stderr
    verdicts = [line for line in done.stdout.strip().splitlines() if not line.startswith("  warning: ")]
    assert len(verdicts) == 1  # the good file still gets its verdict


def test_predict_fails_clearly_on_a_missing_file(tiny_model_dir, tmp_path):
    done = run_script("predict.py", "--model", str(tiny_model_dir), "--image", str(tmp_path / "absent.png"))
    assert done.returncode == 1 and "No such file" in done.stderr


def test_predict_prints_each_warning_under_the_verdict_as_json_carries_it(tiny_model_dir, tmp_path):
    # A clinician reading the text output sees the same cautions as --json (here: several frames).
    gray = Image.open(SAMPLES[0]).convert("L")
    tiff = tmp_path / "three_frames.tif"
    gray.save(tiff, save_all=True, append_images=[gray, gray])
    text = run_script("predict.py", "--model", str(tiny_model_dir), "--image", str(tiff))
    carried = json.loads(run_script("predict.py", "--model", str(tiny_model_dir), "--image", str(tiff), "--json")
                         .stdout)["warnings"]
    assert text.returncode == 0 and carried, text.stderr
    lines = text.stdout.strip().splitlines()
    assert str(tiff) in lines[0] and "probability" in lines[0]
    assert lines[1:] == [f"  warning: {warning}" for warning in carried]


def test_predict_survives_a_file_name_that_is_not_utf8_and_goes_on(tiny_model_dir, tmp_path):
    odd = tmp_path / os.fsdecode(b"bad\xff.jpg")
    odd.write_bytes(SAMPLES[0].read_bytes())
    done = run_script("predict.py", "--model", str(tiny_model_dir), "--image", str(odd), str(SAMPLES[1]))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    verdicts = [line for line in done.stdout.splitlines() if not line.startswith(" ")]
    assert len(verdicts) == 2 and "bad\\xff.jpg" in verdicts[0] and str(SAMPLES[1]) in verdicts[1]
    as_json = run_script("predict.py", "--model", str(tiny_model_dir), "--image", str(odd), "--json")
    assert json.loads(as_json.stdout)["file"].endswith("bad\\xff.jpg")


def test_a_wrong_model_folder_gets_one_sentence_from_each_export_and_predict(tiny_model_dir, tmp_path):
    # An engineer mistypes the model folder, or hand-edits metadata.json: a sentence and exit 2, no traceback.
    for script, flag in (("export_tflite.py", "--model"), ("export_onnx.py", "--model-dir"), ("predict.py", "--model")):
        extra = ("--image", str(SAMPLES[0])) if script == "predict.py" else ()
        done = run_script(script, flag, str(tmp_path / "nope"), *extra)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert f"{tmp_path / 'nope'} is not a model folder: it does not exist" in done.stderr
    broken = tmp_path / "model"
    shutil.copytree(tiny_model_dir, broken)
    metadata = json.loads((broken / "metadata.json").read_text())
    (broken / "metadata.json").write_text(json.dumps(metadata | {"input_size": 0}))
    for script in ("predict.py", "export_tflite.py"):
        extra = ("--image", str(SAMPLES[0])) if script == "predict.py" else ()
        done = run_script(script, "--model", str(broken), *extra)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert "input_size must be the model's input side in pixels" in done.stderr and "not 0" in done.stderr


def test_predict_refuses_a_folder_and_a_thread_count_below_one_as_usage_errors(tiny_model_dir, tmp_path):
    folder = run_script("predict.py", "--model", str(tiny_model_dir), "--image", str(SAMPLES[0]), str(tmp_path))
    assert folder.returncode == 2 and "a folder; give image files here" in folder.stderr
    assert "fracture-reread" in folder.stderr and "fracture-evaluate" in folder.stderr
    threads = run_script("predict.py", "--model", str(tiny_model_dir), "--image", str(SAMPLES[0]), "--threads", "-3")
    assert threads.returncode == 2 and "--threads must be at least 1, not -3" in threads.stderr
    assert "cannot be loaded" not in threads.stderr  # a usage error, not a model failure

"""A remote site's story: the model exported to TensorFlow Lite and served through LiteRT,
giving the same answers as the SavedModel, without TensorFlow installed; and one image using
the cores the server really has."""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from fracture_web import create_app
from fracture_web.config import PROJECT_ROOT
from fracture_web.inference import FractureModel, ModelLoadError

from helpers import ROOT, SAMPLES, outputs_on_samples, run_bench, run_script, running_gunicorn
from test_deployment import SAMPLE_UPLOAD


@pytest.fixture(scope="session")
def lite_model_dir(tiny_model_dir: Path, tiny_dataset: Path, tmp_path_factory) -> Path:
    """The tiny test model with its .tflite files, written (and parity-checked) by scripts/export_tflite.py."""
    model_dir = tmp_path_factory.mktemp("lite") / "model"
    shutil.copytree(tiny_model_dir, model_dir, ignore=shutil.ignore_patterns("*.tflite", "tflite_parity.json"))
    done = run_script("export_tflite.py", "--model", str(model_dir), "--data-dir", str(tiny_dataset))
    assert done.returncode == 0, done.stdout + done.stderr
    return model_dir


def test_export_writes_each_variant_and_reports_its_parity_on_the_models_validation_images(lite_model_dir,
                                                                                            tiny_dataset):
    from fracture_web.datasets import read_records
    from fracture_web.training.splits import split_train_val

    report = json.loads((lite_model_dir / "tflite_parity.json").read_text())
    assert report["images"] == len(split_train_val(read_records(tiny_dataset))[1].labels)
    assert set(report["variants"]) == {"float32", "float16", "int8"}
    assert report["variants"]["float32"]["file"] == "model_float32.tflite"
    assert report["variants"]["float32"]["sha256"] == hashlib.sha256(
        (lite_model_dir / "model_float32.tflite").read_bytes()).hexdigest()
    assert report["variants"]["float32"]["max_probability_diff"] <= 1e-3
    assert report["variants"]["float32"]["auc"] == pytest.approx(report["savedmodel_auc"], abs=1e-3)
    float16 = (lite_model_dir / "model_float16.tflite").stat().st_size
    assert float16 < 0.6 * (lite_model_dir / "model_float32.tflite").stat().st_size
    assert set(report["call_ms"]) == {"model_float32.tflite", "model_float16.tflite"}  # the files kept, timed


def test_an_int8_file_whose_findings_cannot_be_checked_is_not_kept(lite_model_dir):
    # The tiny dataset has no outlines, so what the int8 file's findings would show is unknown: refused.
    int8 = json.loads((lite_model_dir / "tflite_parity.json").read_text())["variants"]["int8"]
    assert int8["quantised"] and not int8["accepted"] and "outlines" in int8["problem"]
    assert set(int8["operating_points"]) == {"balanced", "high_sensitivity"}
    assert not (lite_model_dir / "model_int8.tflite").exists()
    assert FractureModel(lite_model_dir).served_file == "model_float32.tflite"


def test_the_int8_file_is_smaller_and_answers_every_output(tiny_model_dir, tiny_dataset, tmp_path):
    from fracture_web.datasets import load_split, read_records
    from fracture_web.runtimes import load_litert
    from fracture_web.training.tflite import convert

    images = load_split(read_records(tiny_dataset), 64).images
    int8 = tmp_path / "model_int8.tflite"
    int8.write_bytes(convert(tiny_model_dir, "int8", images[::6]))
    # int8 weights in the network; the in-scope check's statistics stay float32
    assert int8.stat().st_size < 0.6 * len(convert(tiny_model_dir, "float32"))
    lite = load_litert(int8, 1)(images[:4])
    savedmodel = FractureModel(tiny_model_dir, backend="tensorflow").outputs(images[:4])
    assert set(lite) == set(savedmodel)
    for name, expected in savedmodel.items():
        assert lite[name].shape == expected.shape and np.all(np.isfinite(lite[name]))
    assert np.all((lite["heatmap"] >= 0) & (lite["heatmap"] <= 1))  # the map's scaling stayed float32


# float16 halves the file; on the tiny network (barely trained, so its map's cells sit on the steep part of
# the sigmoid) a few of the map's cells move by up to 0.1, its probability far less.
@pytest.mark.parametrize("variant, tolerance, map_tolerance", [("float32", 1e-3, 1e-3), ("float16", 0.05, 0.1)])
def test_both_backends_give_the_same_outputs_on_the_same_images(lite_model_dir, variant, tolerance, map_tolerance):
    savedmodel = outputs_on_samples(FractureModel(lite_model_dir, backend="tensorflow"))
    lite = outputs_on_samples(FractureModel(lite_model_dir, backend="litert",
                                            tflite_file=f"model_{variant}.tflite"))
    assert set(lite) == {"probability", "heatmap", "cam", "atypicality", "fracture_map"}
    for name in ("probability", "atypicality"):
        np.testing.assert_allclose(lite[name], savedmodel[name], atol=tolerance, rtol=tolerance)
    np.testing.assert_allclose(lite["fracture_map"], savedmodel["fracture_map"], atol=map_tolerance, rtol=0)
    assert lite["heatmap"].shape == savedmodel["heatmap"].shape
    assert np.all((lite["heatmap"] >= 0) & (lite["heatmap"] <= 1))


def test_the_api_answers_the_same_on_either_backend(lite_model_dir, sample_bytes):
    answers = {}
    for backend in ("tensorflow", "litert"):
        client = create_app({"TESTING": True, "MODEL_DIR": str(lite_model_dir), "BACKEND": backend}).test_client()
        response = client.post("/api/v1/predict?heatmap=1", data={"file": (io.BytesIO(sample_bytes), "x.jpg")})
        assert response.status_code == 200
        answers[backend] = response.get_json()
    assert answers["litert"]["label"] == answers["tensorflow"]["label"]
    assert answers["litert"]["probability"] == pytest.approx(answers["tensorflow"]["probability"], abs=1e-3)
    assert answers["litert"]["heatmap_png"]


def test_the_command_line_answers_the_same_on_either_backend(lite_model_dir):
    lines = {}
    for backend in ("tensorflow", "litert"):
        done = run_script("predict.py", "--model", str(lite_model_dir), "--backend", backend, "--json",
                          "--image", str(SAMPLES[0]))
        assert done.returncode == 0, done.stderr
        lines[backend] = json.loads(done.stdout)
    assert lines["litert"]["label"] == lines["tensorflow"]["label"]
    assert lines["litert"]["probability"] == pytest.approx(lines["tensorflow"]["probability"], abs=1e-3)


def test_the_litert_backend_runs_without_tensorflow(lite_model_dir):
    # A slim install has no TensorFlow: make importing it fail and serve a real X-ray all the same.
    script = textwrap.dedent(f"""
        import sys
        sys.modules["tensorflow"] = None  # any 'import tensorflow' now raises ImportError
        from fracture_web.analysis import analyse
        from fracture_web.inference import FractureModel
        model = FractureModel({str(lite_model_dir)!r}, backend="litert")
        result = analyse(open({str(SAMPLES[0])!r}, "rb").read(), model)
        from fracture_web import create_app
        import fracture_web.dicom_node.server  # the DICOM node needs no TensorFlow either
        app = create_app({{"MODEL_DIR": {str(lite_model_dir)!r}, "BACKEND": "litert"}})
        print(result.prediction.label, len(result.overlay_png) > 0, app.test_client().get("/healthz").status_code)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[1:] == ["True", "200"]


def test_gunicorn_serves_the_tflite_file_when_configured(lite_model_dir):
    with running_gunicorn(FRACTURE_MODEL_DIR=str(lite_model_dir), FRACTURE_BACKEND="litert") as (url, _port):
        body, boundary = SAMPLE_UPLOAD
        request = urllib.request.Request(f"{url}/api/v1/predict", data=body,
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["label"] in ("fractured", "not_fractured")


def test_an_unknown_backend_or_a_missing_tflite_file_stops_startup(tiny_model_dir, tmp_path):
    with pytest.raises(ModelLoadError, match="Unknown backend"):
        FractureModel(tiny_model_dir, backend="torch")
    bare = tmp_path / "model"
    shutil.copytree(tiny_model_dir, bare, ignore=shutil.ignore_patterns("*.tflite"))
    with pytest.raises(ModelLoadError, match="export_tflite.py"):
        FractureModel(bare, backend="litert")
    assert FractureModel(bare).backend == "tensorflow"  # auto: nothing to stand in for the SavedModel


def test_auto_serves_the_tflite_file_only_while_its_parity_report_vouches_for_it(lite_model_dir, tmp_path):
    # Training's export (and export_tflite.py) checked the file against this SavedModel: auto serves it.
    assert FractureModel(lite_model_dir).backend == "litert"
    model_dir = tmp_path / "model"
    shutil.copytree(lite_model_dir, model_dir)
    parity_file = model_dir / "tflite_parity.json"
    parity = json.loads(parity_file.read_text())

    def backend_with(report: dict | None) -> str:
        parity_file.unlink(missing_ok=True)
        if report is not None:
            parity_file.write_text(json.dumps(report))
        return FractureModel(model_dir).backend

    other_model = parity | {"model_version": "an-older-model"}
    too_far = json.loads(json.dumps(parity))
    too_far["variants"]["float32"]["max_probability_diff"] = 0.01
    assert [backend_with(report) for report in (None, other_model, too_far)] == ["tensorflow"] * 3
    assert backend_with(parity) == "litert"
    with (model_dir / "model_float32.tflite").open("ab") as changed:  # replaced after its check
        changed.write(b"\0")
    assert backend_with(parity) == "tensorflow"


def test_auto_serves_the_fastest_tflite_file_its_report_vouches_for(lite_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(lite_model_dir, model_dir)
    shutil.copy(model_dir / "model_float16.tflite", model_dir / "model_int8.tflite")  # stands in for a quantised file
    parity_file = model_dir / "tflite_parity.json"
    report = json.loads(parity_file.read_text())
    report["savedmodel_findings"] = {"finding_hit_rate": 0.6, "top_finding_hit_rate": 0.5}
    report["variants"]["int8"] |= {
        "sha256": hashlib.sha256((model_dir / "model_int8.tflite").read_bytes()).hexdigest(),
        "auc": report["savedmodel_auc"], "operating_points": report["savedmodel_operating_points"],
        "in_scope_agreement": 1.0, "findings": report["savedmodel_findings"]}

    def served(int8_ms: float, **int8_figures) -> tuple[str, str]:
        variants = report["variants"] | {"int8": report["variants"]["int8"] | int8_figures}
        call_ms = {"model_float32.tflite": 30.0, "model_int8.tflite": int8_ms}
        parity_file.write_text(json.dumps(report | {"variants": variants, "call_ms": call_ms}))
        model = FractureModel(model_dir)
        return model.backend, model.served_file

    assert served(15.0) == ("litert", "model_int8.tflite")
    assert served(45.0) == ("litert", "model_float32.tflite")  # vouched for, but slower
    balanced = report["savedmodel_operating_points"]["balanced"]
    missed = {"balanced": balanced | {"sensitivity": balanced["sensitivity"] - 0.05}}
    assert served(15.0, operating_points=report["savedmodel_operating_points"] | missed)[1] == "model_float32.tflite"
    assert served(15.0, in_scope_agreement=0.9)[1] == "model_float32.tflite"
    served(15.0)
    named = FractureModel(model_dir, backend="litert", tflite_file="model_float32.tflite")
    assert named.served_file == "model_float32.tflite"  # a file named in the settings is served as named
    client = create_app({"TESTING": True, "MODEL_DIR": str(model_dir)}).test_client()
    assert client.get("/healthz").get_json()["model_file"] == "model_int8.tflite"


def test_the_shipped_tflite_files_were_exported_from_the_shipped_model():
    model_dir = PROJECT_ROOT / "model"
    parity = json.loads((model_dir / "tflite_parity.json").read_text())
    savedmodel = FractureModel(model_dir, backend="tensorflow")
    assert parity["model_version"] == savedmodel.version and parity["images"] > 400
    served = FractureModel(model_dir)  # what the app serves by default
    assert served.backend == "litert" and served.served_file in {v["file"] for v in parity["variants"].values()}
    assert parity["variants"]["float32"]["max_probability_diff"] <= 1e-3
    expected = outputs_on_samples(savedmodel)["probability"]
    lite = outputs_on_samples(FractureModel(model_dir, backend="litert", tflite_file="model_float32.tflite"))
    np.testing.assert_allclose(lite["probability"], expected, atol=1e-3)


#: What requirements.txt holds only for TensorFlow and ONNX Runtime: all the slim install (LiteRT only) leaves out.
LEFT_OUT_OF_SLIM = {"onnxruntime", "absl-py", "astunparse", "gast", "google-pasta", "grpcio", "h5py", "keras", "libclang",
                    "markdown-it-py", "mdurl", "namex", "opt-einsum", "optree", "pygments", "rich", "six",
                    "tensorflow-cpu", "termcolor", "wrapt"}


def test_the_slim_requirements_are_the_full_set_without_tensorflow_plus_litert():
    pins = {}
    for name in ("requirements.txt", "requirements-slim.txt", "requirements-dev.txt"):
        lines = (ROOT / name).read_text().splitlines()
        pins[name] = {key.lower().replace("_", "-"): version
                      for key, version in (line.split("==") for line in lines if "==" in line)}
    slim, full = pins["requirements-slim.txt"], pins["requirements.txt"]
    assert not any("tensorflow" in name or name == "keras" for name in slim)
    assert "ai-edge-litert" in slim
    # Every package the app needs besides its other runtimes (Flask-WTF, pydicom, ...) is in the slim set too,
    # at the same version as in the full and the development sets.
    assert set(full) - set(slim) == LEFT_OUT_OF_SLIM
    dev = full | pins["requirements-dev.txt"]
    assert all(dev.get(name, version) == version for name, version in slim.items())


@pytest.mark.parametrize("cpu_max, expected", [("max 100000", 2), ("100000 100000", 1), ("50000 100000", 1)])
def test_one_image_uses_the_containers_cpu_share_not_the_hosts_core_count(cpu_max, expected, tmp_path, monkeypatch):
    from fracture_web import runtimes

    monkeypatch.setattr(runtimes.os, "sched_getaffinity", lambda _pid: {0, 1})  # a 2-core machine
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    assert runtimes.available_cores(tmp_path / "cpu.max") == expected
    assert runtimes.available_cores(tmp_path / "absent") == 2


def test_two_models_calls_are_timed_in_one_run_with_their_multiply_adds(lite_model_dir, tiny_model_dir, tmp_path):
    out, bare = tmp_path / "calls.json", tmp_path / "bare"
    shutil.copytree(tiny_model_dir, bare, ignore=shutil.ignore_patterns("*.tflite"))
    done = run_bench("compare_models", "--models", str(bare), str(lite_model_dir), "--runtime", "savedmodel",
                     "--images", str(SAMPLES[0]), "--rounds", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    first, second = report["models"][str(bare)], report["models"][str(lite_model_dir)]
    assert report["runtime"] == "savedmodel" and first["calls"] == second["calls"] == 2
    assert first["p50_ratio_to_first"] == 1.0
    assert first["multiply_adds"] is None and second["multiply_adds"] > 0  # only the second has a .tflite
    assert f"{second['p50_ratio_to_first']:.3f}x the first" in done.stdout
    # By default each folder's .tflite is called through LiteRT, as the app serves it.
    served = run_bench("compare_models", "--models", str(tiny_model_dir), str(lite_model_dir),
                       "--images", str(SAMPLES[0]), "--rounds", "1", "--out", str(out))
    assert served.returncode == 0, served.stderr
    assert json.loads(out.read_text())["runtime"] == "litert"


def test_a_quantised_files_own_calibration_finds_as_many_fractures_as_the_savedmodel():
    from fracture_web.evaluation.diagnostic_accuracy import confusion_rates
    from fracture_web.evaluation.parity import fit_file_calibration
    from fracture_web.runtimes import calibrated

    rng = np.random.default_rng(0)
    labels = np.repeat([1, 0], [80, 320])
    probability = 1 / (1 + np.exp(-(rng.normal(0, 1, 400) + 2.0 * labels - 1.5)))
    outputs = {"probability": probability.astype(np.float32), "atypicality": rng.gamma(4, 0.1, 400).astype(np.float32)}
    calibration = fit_file_calibration(outputs, labels, {"balanced": 0.80, "high_sensitivity": 0.95})
    served = calibrated({name: value.copy() for name, value in outputs.items()}, calibration)
    for name, sensitivity in {"balanced": 0.80, "high_sensitivity": 0.95}.items():
        threshold = calibration["thresholds"][name]
        assert confusion_rates(labels, served["probability"], threshold)["sensitivity"] >= sensitivity
        # the highest such threshold: a hair above it finds fewer
        assert confusion_rates(labels, served["probability"], np.nextafter(threshold, 1))["sensitivity"] < sensitivity
    assert np.mean(served["atypicality"] > 1.0) == pytest.approx(0.01, abs=0.0026)  # flags 1 in 100, as the SavedModel
    assert calibration["ece"] < 0.1

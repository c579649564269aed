"""A site that asked for ONNX: the model exported to ONNX with the SavedModel's outputs, checked on
the validation images, served through ONNX Runtime with the same answers, and chosen by ``auto``
only while its parity report vouches for the very file and times it fastest."""
from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fracture_web import create_app
from fracture_web.inference import FractureModel
from fracture_web.runtimes import parity_problem

from helpers import outputs_on_samples, run_script


@pytest.fixture(scope="session")
def onnx_model_dir(tiny_model_dir: Path, tiny_dataset: Path, tmp_path_factory) -> Path:
    """The tiny test model with its ONNX export, written (and parity-checked) by scripts/export_onnx.py."""
    pytest.importorskip("tf2onnx", reason="the ONNX converter (requirements-train.txt) is not installed")
    model_dir = tmp_path_factory.mktemp("onnx") / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    done = run_script("export_onnx.py", "--model-dir", str(model_dir), "--data-dir", str(tiny_dataset))
    assert done.returncode == 0, done.stdout + done.stderr
    return model_dir


def test_the_export_answers_as_the_savedmodel_and_says_so_in_its_report(onnx_model_dir):
    report = json.loads((onnx_model_dir / "onnx_parity.json").read_text())
    float32 = report["variants"]["float32"]
    assert report["images"] == 48 and float32["file"] == "model.onnx"
    assert float32["sha256"] == hashlib.sha256((onnx_model_dir / "model.onnx").read_bytes()).hexdigest()
    assert float32["max_probability_diff"] <= 1e-3
    assert float32["auc"] == pytest.approx(report["savedmodel_auc"], abs=1e-3)
    assert {"savedmodel", "model.onnx", "model_float32.tflite"} <= set(report["call_ms"])


def test_int8_is_not_kept_where_its_findings_cannot_be_checked(onnx_model_dir):
    # The tiny dataset has no outlines, so the int8 file's findings' hit rate is unknown: refused.
    int8 = json.loads((onnx_model_dir / "onnx_parity.json").read_text())["variants"]["int8"]
    assert int8["quantised"] and not int8["accepted"] and "outlines" in int8["problem"]
    assert not (onnx_model_dir / "model_int8.onnx").exists()


def test_the_onnx_backend_gives_the_savedmodels_outputs(onnx_model_dir):
    savedmodel = outputs_on_samples(FractureModel(onnx_model_dir, backend="tensorflow"))
    onnx = outputs_on_samples(FractureModel(onnx_model_dir, backend="onnx"))
    assert set(onnx) == set(savedmodel) == {"probability", "heatmap", "cam", "atypicality", "fracture_map"}
    for name, expected in savedmodel.items():
        assert onnx[name].shape == expected.shape
        np.testing.assert_allclose(onnx[name], expected, atol=1e-3, rtol=0)


def test_the_api_answers_the_same_through_onnx_runtime_and_names_it(onnx_model_dir, sample_bytes):
    answers = {}
    for backend in ("tensorflow", "onnx"):
        client = create_app({"TESTING": True, "MODEL_DIR": str(onnx_model_dir), "BACKEND": backend}).test_client()
        assert client.get("/healthz").get_json()["backend"] == backend
        response = client.post("/api/v1/predict?heatmap=1", data={"file": (io.BytesIO(sample_bytes), "x.jpg")})
        assert response.status_code == 200
        answers[backend] = response.get_json()
    assert answers["onnx"]["label"] == answers["tensorflow"]["label"]
    assert answers["onnx"]["probability"] == pytest.approx(answers["tensorflow"]["probability"], abs=1e-3)
    assert answers["onnx"]["heatmap_png"]


def test_auto_serves_the_fastest_vouched_runtime_and_refuses_a_changed_onnx_file(onnx_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(onnx_model_dir, model_dir)
    parity_file = model_dir / "onnx_parity.json"
    report = json.loads(parity_file.read_text())

    def auto_with(**call_ms: float) -> str:
        keys = {"savedmodel": "savedmodel", "onnx": "model.onnx", "litert": "model_float32.tflite"}
        parity_file.write_text(json.dumps(report | {"call_ms": {keys[k]: v for k, v in call_ms.items()}}))
        return FractureModel(model_dir).backend

    assert auto_with(savedmodel=40, onnx=20, litert=30) == "onnx"
    assert auto_with(savedmodel=40, onnx=30, litert=20) == "litert"
    assert auto_with(savedmodel=10, onnx=30, litert=20) == "litert"  # a vouched export over the SavedModel
    with (model_dir / "model.onnx").open("ab") as changed:  # replaced after its check
        changed.write(b"\0")
    assert auto_with(savedmodel=40, onnx=20, litert=30) == "litert"


POINTS = {"balanced": {"sensitivity": 0.80, "specificity": 0.90}, "high_sensitivity": {"sensitivity": 0.95, "specificity": 0.60}}
REPORT = {"savedmodel_auc": 0.900, "savedmodel_operating_points": POINTS,
          "savedmodel_findings": {"finding_hit_rate": 0.60, "top_finding_hit_rate": 0.55}}
CLOSE = {"auc": 0.896, "operating_points": {"balanced": {"sensitivity": 0.79, "specificity": 0.91},
                                            "high_sensitivity": POINTS["high_sensitivity"]},
         "in_scope_agreement": 0.995, "findings": {"finding_hit_rate": 0.595, "top_finding_hit_rate": 0.55}}


@pytest.mark.parametrize("change, passes", [
    ({}, True),
    ({"auc": 0.910}, True),  # better than the SavedModel is no reason to refuse
    ({"auc": 0.894}, False),
    ({"operating_points": POINTS | {"balanced": {"sensitivity": 0.77, "specificity": 0.90}}}, False),
    ({"operating_points": POINTS | {"high_sensitivity": {"sensitivity": 0.95, "specificity": 0.57}}}, False),
    ({"in_scope_agreement": 0.98}, False),
    ({"findings": {"finding_hit_rate": 0.585, "top_finding_hit_rate": 0.55}}, False),
    ({"findings": {"finding_hit_rate": 0.60, "top_finding_hit_rate": 0.53}}, False),
    ({"findings": None}, False),
])
def test_an_int8_file_stands_in_only_while_what_a_reader_sees_stays_within_tolerance(change, passes):
    int8 = {"file": "model_int8.onnx", "quantised": True, "max_probability_diff": 0.05, **CLOSE, **change}
    assert (parity_problem(int8, REPORT) is None) == passes
    assert parity_problem(int8 | {"quantised": False}, REPORT) is not None  # as a float file: too far


def test_a_resize_to_a_fixed_size_keeps_every_pixel_in_onnx(tmp_path):
    # An ensemble member of 320 px under a 384-px input: tf2onnx writes the resize as the float scale
    # 0.8333333, which ONNX reads as 319 pixels, so the member's layers no longer fit together.
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    from fracture_web.onnx_export import whole_pixel_resizes

    scales = numpy_helper.from_array(np.array([1, 1, 320 / 384, 320 / 384], np.float32), "scales")
    graph = helper.make_graph(
        [helper.make_node("Resize", ["image", "", "scales"], ["resized"], name="member_resize", mode="linear",
                          coordinate_transformation_mode="half_pixel")], "member",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 384, 384])],
        [helper.make_tensor_value_info("resized", TensorProto.FLOAT, None)], initializer=[scales])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)

    def inferred_side(proto) -> int:
        return onnx.shape_inference.infer_shapes(proto).graph.output[0].type.tensor_type.shape.dim[3].dim_value

    assert inferred_side(model) == 319
    fixed = whole_pixel_resizes(model)
    assert inferred_side(fixed) == 320
    assert [tensor.name for tensor in fixed.graph.initializer] == ["member_resize_whole_pixel_scales"]
    (tmp_path / "member.onnx").write_bytes(fixed.SerializeToString())
    session = onnxruntime.InferenceSession(str(tmp_path / "member.onnx"), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(0).random((2, 1, 384, 384), dtype=np.float32)
    assert session.run(None, {"image": image})[0].shape == (2, 1, 320, 320)

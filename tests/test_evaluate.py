"""Evaluation on a labelled folder: scripts/evaluate.py and fracture_web.evaluation."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve as sklearn_roc_curve

from helpers import ROOT, run_script, synthetic_xray
from fracture_web.evaluation.diagnostic_accuracy import calibration_bins, expected_calibration_error, roc_auc, roc_curve
from fracture_web.evaluation.model_card import render_folder
from fracture_web.evaluation.report import evaluate
from fracture_web.evaluation.scoring import EvaluationError, score_folder
from fracture_web.imaging import preprocess
from fracture_web.inference import FractureModel

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RATE_KEYS = {"sensitivity", "specificity", "ppv", "npv", "threshold"}


def write_labels(root: Path, rows: list[tuple[str, int, str]]) -> None:
    with (root / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "body_part"])
        writer.writerows(rows)


@pytest.fixture()
def labelled_folder(tmp_path: Path) -> Path:
    """8 synthetic radiographs (4 with a crack, sizes varying) and one text file named .png."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(8):
        label = i % 2
        size = (160 + 40 * i, 128 + 16 * i)  # the CLI must take any size
        cv2.imwrite(str(tmp_path / f"img{i}.png"), synthetic_xray(rng, crack=bool(label), size=size))
        rows.append((f"img{i}.png", label, "hand" if i < 4 else "leg"))
    (tmp_path / "broken.png").write_text("this is not an image")
    rows.insert(3, ("broken.png", 1, "hand"))
    write_labels(tmp_path, rows)
    return tmp_path


def test_cli_scores_folder_like_the_app(tiny_model_dir, labelled_folder, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("evaluate_out")
    done = run_script("evaluate.py", "--data-dir", str(labelled_folder), "--model", str(tiny_model_dir),
                      "--out", str(out_dir / "metrics.json"), "--plots", str(out_dir / "plots"),
                      "--batch-size", "16")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((out_dir / "metrics.json").read_text())
    assert result["n"] == 8 and result["positives"] == 4
    assert result["unreadable"] == 1 and result["unreadable_files"] == ["broken.png"]
    assert "broken.png" in done.stderr  # logged as a warning too

    model = FractureModel(tiny_model_dir)
    paths = [labelled_folder / f"img{i}.png" for i in range(8)]
    probs, _ = model.infer(np.stack([preprocess(p.read_bytes(), model.input_size) for p in paths]))
    assert result["auc"] == pytest.approx(roc_auc_score([i % 2 for i in range(8)], probs), abs=1e-6)
    assert result["model_version"] == model.version and result["data_dir"] == str(labelled_folder)

    assert set(result["operating_points"]) == set(model.thresholds)
    for name, point in result["operating_points"].items():
        assert RATE_KEYS <= set(point)
        assert point["threshold"] == pytest.approx(model.thresholds[name])
    assert set(result["by_body_part"]) == {"hand", "leg"}
    for png in ("roc.png", "reliability.png"):
        assert (out_dir / "plots" / png).read_bytes()[:8] == PNG_SIGNATURE

    assert f"AUC {result['auc']:.3f}" in done.stdout and "Unreadable: 1 (broken.png)" in done.stdout
    assert all(name in done.stdout for name in model.thresholds)


class FakeModel:
    """Stands in for FractureModel: the probability is the mean of the model input.

    The thing under test is the scoring and metrics logic, so the probabilities are made
    known in advance: each test image is black with its top rows white, their share chosen.
    """

    input_size = 64
    version = "fake-1"

    def __init__(self, thresholds: dict[str, float]) -> None:
        self.thresholds = thresholds
        self.batch_sizes: list[int] = []

    def outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        assert batch.shape[1:] == (64, 64, 1) and batch.dtype == np.float32
        self.batch_sizes.append(len(batch))
        return {"probability": batch.mean(axis=(1, 2, 3)), "heatmap": np.zeros((len(batch), 8, 8), np.float32)}


def bar_image(share: float, side: int = 128) -> np.ndarray:
    """A square image whose preprocessed mean is ``share`` (top rows white, rest black)."""
    image = np.zeros((side, side), np.uint8)
    image[:round(share * side)] = 255
    return image


# Shares are multiples of 1/16, exact after the 128 -> 64 px downsample.
SEPARABLE = {1: (0.625, 0.75, 0.875, 0.9375), 0: (0.125, 0.25, 0.375, 0.5)}
ONE_SWAP = {1: (0.3125, 0.75, 0.875, 0.9375), 0: (0.125, 0.25, 0.375, 0.5)}  # one positive below two negatives


def make_folder(root: Path, shares: dict[int, tuple[float, ...]], unreadable: str | None = "notes.png") -> Path:
    """labels.csv + one bar image per share (positives first), and optionally a text file named .png."""
    rows = []
    for label in (1, 0):
        for share in shares.get(label, ()):
            name = f"{label}_{share}.png"
            cv2.imwrite(str(root / name), bar_image(share))
            rows.append((name, label, "arm"))
    if unreadable:
        (root / unreadable).write_text("not an image")
        rows.insert(2, (unreadable, 0, "arm"))
    write_labels(root, rows)
    return root


def test_score_folder_returns_readable_records_in_order(tmp_path):
    model = FakeModel({"balanced": 0.5})
    records, probs, unreadable, _warnings = score_folder(make_folder(tmp_path, SEPARABLE), model, batch_size=3)
    assert [p.name for p in unreadable] == ["notes.png"]
    assert len(records) == len(probs) == 8 and "notes.png" not in [p.name for p in records.paths]
    assert probs == pytest.approx([*SEPARABLE[1], *SEPARABLE[0]], abs=1e-6)
    assert records.labels.tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert records.columns["body_part"] == ["arm"] * 8
    assert model.batch_sizes == [3, 3, 2]  # batches of readable images only, none bigger than asked


def test_known_answers_for_metrics(tmp_path):
    thresholds = {"balanced": 0.55, "strict": 0.8, "lenient": 0.3}
    result = evaluate(make_folder(tmp_path, SEPARABLE), FakeModel(thresholds), batch_size=4).report
    assert result["auc"] == 1.0 and result["auc_ci95"] == [1.0, 1.0]
    assert result["n"] == 8 and result["positives"] == 4
    assert result["unreadable"] == 1 and result["unreadable_files"] == ["notes.png"]
    assert result["model_version"] == "fake-1" and result["by_body_part"]["arm"]["auc"] == 1.0
    points = result["operating_points"]
    counts = {name: (p["tp"], p["fn"], p["tn"], p["fp"]) for name, p in points.items()}
    assert counts == {"balanced": (4, 0, 4, 0), "strict": (2, 2, 4, 0), "lenient": (4, 0, 2, 2)}
    assert (points["strict"]["sensitivity"], points["strict"]["specificity"]) == (0.5, 1.0)
    assert (points["strict"]["ppv"], points["strict"]["npv"]) == (1.0, pytest.approx(4 / 6))
    assert (points["lenient"]["ppv"], points["lenient"]["threshold"]) == (4 / 6, 0.3)


def test_auc_counts_misordered_pairs(tmp_path):
    result = evaluate(make_folder(tmp_path, ONE_SWAP), FakeModel({"balanced": 0.55})).report
    assert result["auc"] == pytest.approx(14 / 16)  # 0.3125 ranks below the negatives 0.375 and 0.5
    assert result["operating_points"]["balanced"]["fn"] == 1


def test_calibration_bins_are_mean_prediction_and_observed_fraction():
    labels = np.array([0, 0, 1, 1, 1])
    probs = np.array([0.05, 0.15, 0.12, 0.95, 0.91])
    mean_pred, observed, counts = calibration_bins(labels, probs, bins=10)
    assert counts.tolist() == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]
    assert mean_pred[1] == pytest.approx(0.135) and observed[1] == 0.5 and observed[9] == 1.0
    assert np.isnan(mean_pred[2]) and np.isnan(observed[5])
    # The ECE weighs the same bins: (1 x 0.05 + 2 x |0.5 - 0.135| + 2 x |1 - 0.93|) / 5
    assert expected_calibration_error(labels, probs, bins=10) == pytest.approx((0.05 + 0.73 + 0.14) / 5)


def random_scores_with_ties(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels of both classes and float32 scores, every other draw rounded to a few levels (many ties)."""
    labels = (rng.random(n) < rng.uniform(0.1, 0.6)).astype(np.int32)
    labels[:2] = (0, 1)
    scores = rng.random(n).astype(np.float32)
    if rng.random() < 0.5:
        scores = np.round(scores * rng.integers(2, 12)) / 10
    return labels, scores


def test_numpy_auc_and_roc_curve_equal_scikit_learns_exactly():
    rng = np.random.default_rng(7)
    for _ in range(300):
        labels, scores = random_scores_with_ties(rng, int(rng.integers(2, 400)))
        assert roc_auc(labels, scores) == roc_auc_score(labels, scores)  # the same float, not approximately
        for ours, theirs in zip(roc_curve(labels, scores), sklearn_roc_curve(labels, scores)):
            np.testing.assert_array_equal(ours, theirs)


def test_auc_counts_ties_as_half():
    labels = np.array([1, 0, 1, 0])
    assert roc_auc(labels, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert roc_auc(labels, np.array([0.9, 0.2, 0.4, 0.4])) == 0.875  # one tie of four pairs


def test_model_card_template_renders_the_committed_card():
    model_dir = ROOT / "model"
    assert render_folder(model_dir) == (model_dir / "MODEL_CARD.md").read_text()


def test_only_one_readable_class_is_refused(tmp_path):
    shares = {1: (0.75,), 0: (0.25, 0.5)}
    folder = make_folder(tmp_path, shares, unreadable=None)
    (folder / "1_0.75.png").write_text("corrupted")  # the only positive becomes unreadable
    with pytest.raises(EvaluationError, match="Only not fractured images .* could be read"):
        evaluate(folder, FakeModel({"balanced": 0.5}))


def test_nothing_readable_is_refused(tmp_path):
    write_labels(tmp_path, [("a.png", 1, "arm"), ("b.png", 0, "arm")])
    with pytest.raises(EvaluationError, match="None of the 2 images"):
        evaluate(tmp_path, FakeModel({"balanced": 0.5}))


@pytest.mark.parametrize("layout", ["empty", "one_class_csv", "one_class_folders", "none_readable"])
def test_cli_exits_2_on_unusable_folder(layout, tiny_model_dir, tmp_path):
    if layout == "one_class_csv":
        make_folder(tmp_path, {1: (0.5, 0.75)}, unreadable=None)
    elif layout == "one_class_folders":
        (tmp_path / "Fractured").mkdir()
        cv2.imwrite(str(tmp_path / "Fractured" / "a.png"), bar_image(0.5))
    elif layout == "none_readable":
        write_labels(tmp_path, [("a.png", 1, "arm"), ("b.png", 0, "arm")])
    done = run_script("evaluate.py", "--data-dir", str(tmp_path), "--model", str(tiny_model_dir))
    assert done.returncode == 2, done.stdout + done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and str(tmp_path) in message
    assert ("No labelled images" in message or "only one class" in message
            or "None of the 2 images" in message), message
    assert "Traceback" not in done.stderr and done.stdout == ""


#: What the runtime install (requirements.txt) leaves out, and the training code evaluation must not need.
NOT_IN_THE_RUNTIME = ["sklearn", "matplotlib", "keras", "fracture_web.training"]


def run_evaluate_without_dev_packages(*args: str) -> subprocess.CompletedProcess:
    """scripts/evaluate.py with scikit-learn, matplotlib, Keras and fracture_web.training unimportable."""
    code = textwrap.dedent(f"""
        import runpy, sys
        sys.modules.update(dict.fromkeys({NOT_IN_THE_RUNTIME!r}))  # any import of them raises ImportError
        sys.argv = ["evaluate.py", *{list(args)!r}]
        runpy.run_path({str(ROOT / "scripts" / "evaluate.py")!r}, run_name="__main__")
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_cli_evaluates_from_the_runtime_install_alone(tiny_model_dir, tiny_dataset, tmp_path):
    done = run_evaluate_without_dev_packages("--data-dir", str(tiny_dataset), "--model", str(tiny_model_dir),
                                             "--out", str(tmp_path / "metrics.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "metrics.json").read_text())
    assert result["n"] == 48 and result["positives"] == 24
    assert f"AUC {result['auc']:.3f} (95% CI" in done.stdout
    records, probs, _, _ = score_folder(tiny_dataset, FractureModel(tiny_model_dir))
    assert result["auc"] == roc_auc_score(records.labels, probs)


def test_cli_plots_without_matplotlib_fail_with_one_clear_line(tiny_model_dir, tiny_dataset, tmp_path):
    done = run_evaluate_without_dev_packages("--data-dir", str(tiny_dataset), "--model", str(tiny_model_dir),
                                             "--plots", str(tmp_path / "plots"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and "matplotlib" in message
    assert "pip install -r requirements-dev.txt" in message
    assert not (tmp_path / "plots").exists()


def test_the_robustness_table_rescores_every_image_under_every_shift(tmp_path):
    from fracture_web.datasets import read_records
    from fracture_web.evaluation.robustness import format_robustness, robustness_table
    from fracture_web.shifts import SHIFTS

    model = FakeModel({"balanced": 0.55})
    records = read_records(make_folder(tmp_path, SEPARABLE, unreadable=None))
    table = robustness_table(records, model, batch_size=4)
    assert table["n"] == 8 and table["reference"]["auc"] == 1.0
    assert list(table["shifts"]) == [shift.name for shift in SHIFTS]
    # The fake model's probability is the mean brightness: inverting swaps the classes' order.
    inverted = table["shifts"]["inverted"]
    assert inverted["auc"] == 0.0 and inverted["auc_drop"] == 1.0 and not inverted["scanner"]
    assert not inverted["meets_target"]
    # A gamma above 1 darkens every bar image: the same order, so the same AUC, fewer called positive.
    darker = table["shifts"]["gamma_1.4"]
    assert darker["auc"] == 1.0 and darker["meets_target"]
    assert sum(model.batch_sizes) == 8 * (1 + len(SHIFTS))
    rows = {line.split()[0]: line for line in format_robustness(table).splitlines()[3:]}
    assert rows["inverted"].endswith("n/a (an error, not a scanner)") and rows["gamma_1.4"].endswith("met")


def test_a_map_hits_when_its_peak_is_on_or_near_an_outline():
    from fracture_web.evaluation.localisation import score_map

    mask = np.zeros((100, 200), bool)
    mask[40:50, 100:120] = True
    on = np.zeros((100, 200), np.float32)
    on[45, 110] = 1.0
    near = np.zeros((100, 200), np.float32)
    near[45, 128] = 1.0  # 9 px right of the outline: within 10% of the short side (10 px)
    far = np.zeros((100, 200), np.float32)
    far[10, 10] = 1.0
    assert score_map(on, mask) == (True, 1.0)
    assert score_map(near, mask) == (True, 0.0)
    assert score_map(far, mask) == (False, 0.0)
    half = np.zeros((100, 200), np.float32)
    half[45, 110], half[90, 10] = 1.0, 1.0
    assert score_map(half, mask)[1] == pytest.approx(0.5)


def test_a_finding_hits_by_overlap_or_by_its_centre_inside_the_outlines_box():
    from fracture_web.evaluation.localisation import hits

    outline = [(100.0, 100.0, 120.0, 130.0)]
    assert hits((95, 95, 125, 135), outline)  # overlaps with IoU 0.63
    assert hits((105, 60, 115, 200), outline)  # IoU 0.14, but its centre (110, 130) lies in the box
    assert not hits((0, 0, 50, 50), outline)
    assert not hits((121, 131, 200, 200), outline)


def test_finding_levels_are_chosen_on_normal_images_and_scored_against_outlines():
    from fracture_web.evaluation.localisation import Located, choose_levels, findings_table, froc_points

    outline = (100.0, 100.0, 130.0, 130.0)
    # Two fractured images: one whose strongest box is on the outline, one whose box is elsewhere.
    fractured = [Located(1, 0.9, [(0.8, (98, 98, 128, 128)), (0.4, (0, 0, 20, 20))], [outline]),
                 Located(1, 0.6, [(0.5, (300, 300, 330, 330))], [outline])]
    # Ten normal images, each with one box: scores 0.05, 0.15, ..., 0.95; probabilities above and below.
    normals = [Located(0, 0.5 if i % 2 else 0.05, [(0.05 + 0.1 * i, (0, 0, 10, 10))]) for i in range(10)]
    levels = choose_levels(fractured + normals, threshold=0.3, min_probability=0.1)
    # Only normals flagged at the operating point (probability 0.5) can carry a definite box: scores
    # 0.15, 0.35, 0.55, 0.75, 0.95. At most 1 in 10 definite means a threshold above 0.75.
    assert 0.75 < levels.definite <= 0.95
    assert levels.possible <= levels.definite
    table = findings_table(fractured + normals, levels, threshold=0.3)
    assert table["fractured_images"] == 2 and table["normal_images"] == 10
    assert table["finding_hit_rate"] == 0.5 and table["top_finding_hit_rate"] == 0.5
    assert table["definite_per_normal_image"] <= 0.1
    assert table["definite_per_normal_image"] + table["possible_per_normal_image"] <= 0.5
    low, high = froc_points(fractured + normals, scores=(0.0, 0.9))
    assert low["sensitivity"] == 0.5 and low["false_per_image"] == (2 + 10) / 12  # every box but the hit
    assert high["sensitivity"] == 0.0 and high["false_per_image"] == 1 / 12  # the normal scored 0.95


def test_the_box_scale_brings_the_top_boxes_that_hit_to_the_outlines_size():
    from fracture_web.evaluation.localisation import Located, fit_box_scale

    outline = (100.0, 100.0, 130.0, 120.0)  # 30 x 20
    located = [Located(1, 0.9, [(0.8, (90, 90, 150, 130))], [outline]),  # 60 x 40 on it: half each side
               Located(1, 0.8, [(0.7, (95, 80, 135, 160)), (0.2, (0, 0, 5, 5))], [outline]),  # 40 x 80, centre inside
               Located(1, 0.7, [(0.9, (300, 300, 400, 400))], [outline]),  # a miss: not a size to learn from
               Located(0, 0.2, [(0.9, (0, 0, 400, 400))])]  # a normal image: no outline
    width, height = fit_box_scale(located)
    assert width == pytest.approx(np.sqrt(0.5 * 30 / 40)) and height == pytest.approx(np.sqrt(0.5 * 20 / 80))
    assert fit_box_scale(located[2:]) == (1.0, 1.0)


def outlined_copy(tiny_dataset: Path, folder: Path) -> Path:
    """The tiny dataset with a radiologist's box round each synthetic crack (annotations.json)."""
    import shutil

    shutil.copytree(tiny_dataset, folder)
    fractured = sorted((folder / "Fractured").glob("*.png"))
    # The synthetic crack runs from (50, 60) to (76, 100): the radiologist's box around it.
    coco = {"images": [{"id": i, "file_name": f"Fractured/{p.name}", "height": 160, "width": 128}
                       for i, p in enumerate(fractured)],
            "annotations": [{"id": i, "image_id": i, "bbox": [50, 60, 26, 40], "segmentation": []}
                            for i in range(len(fractured))]}
    (folder / "annotations.json").write_text(json.dumps(coco))
    return folder


def test_scoring_again_fits_the_box_scale_on_the_training_outlines_and_serves_it(tiny_model_dir, tiny_dataset,
                                                                              tmp_path):
    import shutil

    from fracture_web.training.workflow import report_again

    folder = outlined_copy(tiny_dataset, tmp_path / "outlined")
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    metrics = report_again(model_dir, folder)
    findings = json.loads((model_dir / "metadata.json").read_text())["findings"]
    width, height = findings["box_scale"]
    assert 0 < width <= 10 and 0 < height <= 10 and "training split" in findings["box_scale_rule"]
    assert metrics["findings"]["decoding"]["box_scale"] == [width, height]
    assert FractureModel(model_dir).box_scale == (width, height)


def test_cli_reports_where_the_findings_land_when_the_folder_has_outlines(tiny_model_dir, tiny_dataset, tmp_path):
    folder = outlined_copy(tiny_dataset, tmp_path / "outlined")
    fractured = sorted((folder / "Fractured").glob("*.png"))
    done = run_script("evaluate.py", "--data-dir", str(folder), "--model", str(tiny_model_dir),
                      "--out", str(tmp_path / "metrics.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    findings = json.loads((tmp_path / "metrics.json").read_text())["findings"]
    assert findings["fractured_images"] == len(fractured) and findings["normal_images"] == 24
    assert 0 <= findings["top_finding_hit_rate"] <= findings["finding_hit_rate"] <= 1
    assert len(findings["froc"]) == 6
    assert "Findings (definite >=" in done.stdout and "FROC" in done.stdout


def test_a_class_folder_export_from_pacs_is_scored_whole_and_what_is_left_out_is_said(tiny_model_dir, tmp_path):
    # A clinic copies its PACS export into Fractured/ + Non_fractured/: DICOM files named IM0000 (no
    # extension), JPEGs saved as .jfif, and the Finder's .DS_Store. Every image counts; the rest is said.
    from dicom_files import radiograph_dataset, to_bytes
    rng = np.random.default_rng(3)
    for label, folder in ((1, "Fractured"), (0, "Non_fractured")):
        (tmp_path / folder).mkdir()
        for i in range(2):
            image = synthetic_xray(rng, crack=bool(label))
            (tmp_path / folder / f"IM000{i}").write_bytes(to_bytes(radiograph_dataset(image)))
            cv2.imwrite(str(tmp_path / folder / f"photo{i}.jpg"), synthetic_xray(rng, crack=bool(label)))
            (tmp_path / folder / f"photo{i}.jpg").rename(tmp_path / folder / f"photo{i}.jfif")
        (tmp_path / folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / "Fractured" / "README").write_text("exported 2025-11-02")
    out = tmp_path / "metrics.json"
    done = run_script("evaluate.py", "--data-dir", str(tmp_path), "--model", str(tiny_model_dir), "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["n"] == 8 and result["positives"] == 4  # the DICOMs without an extension and the .jfif files
    assert result["unreadable_files"] == ["Fractured/README"]  # tried, and refused as no image
    assert "2 path(s) left out (hidden): Fractured/.DS_Store, Non_fractured/.DS_Store" in done.stderr


def test_an_out_that_cannot_be_written_is_refused_before_the_scoring(tiny_model_dir, labelled_folder, tmp_path):
    # The metrics were lost after a long --robustness run when --out was a folder or under a file.
    afile = tmp_path / "afile"
    afile.write_text("")
    for argument, value, says in (("--out", tmp_path, "is a folder"), ("--out", afile / "m.json", "cannot be written"),
                                  ("--plots", afile, "is a file")):
        done = run_script("evaluate.py", "--data-dir", str(labelled_folder), "--model", str(tiny_model_dir),
                          argument, str(value))
        assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert "Images scored" not in done.stdout  # refused before any image was scored
    made = tmp_path / "new" / "deeper" / "m.json"
    done = run_script("evaluate.py", "--data-dir", str(labelled_folder), "--model", str(tiny_model_dir),
                      "--out", str(made))
    assert done.returncode == 0 and json.loads(made.read_text())["n"] == 8, done.stderr


def test_a_split_no_row_has_is_named_with_the_splits_there_are(tiny_model_dir, tmp_path):
    rng = np.random.default_rng(2)
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), synthetic_xray(rng, crack=bool(i % 2)))
    with (tmp_path / "labels.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["path", "label", "split"]] +
                                     [[f"img{i}.png", i % 2, "train" if i < 2 else "val"] for i in range(4)])
    done = run_script("evaluate.py", "--data-dir", str(tmp_path), "--model", str(tiny_model_dir), "--split", "nope")
    assert done.returncode == 2 and "No rows have split 'nope'; the split column holds 'train', 'val'" in done.stderr

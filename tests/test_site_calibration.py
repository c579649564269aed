"""A new site re-fits the operating points on its own labelled images and serves them."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from fracture_web import create_app
from fracture_web.cli.calibrate import site_files
from fracture_web.evaluation.calibration import HIGH_SENSITIVITY_RULE
from fracture_web.evaluation.site import SiteSampleError, check_size, fit_site, site_metadata
from fracture_web.imaging import preprocess
from fracture_web.inference import FractureModel
from fracture_web.probability import logit, recalibrate, sigmoid
from helpers import post_form, run_script, synthetic_xray


def site_scores(rng: np.random.Generator, n: int = 400, shift: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """A site where the model ranks well but every probability is pushed up by ``shift`` logits."""
    labels = (rng.random(n) < 0.3).astype(int)
    true_logits = rng.normal(0, 1.2, n) + 2.5 * (labels - 0.5)
    return labels, sigmoid(true_logits + shift)


def test_refitting_moves_the_thresholds_to_where_the_site_needs_them():
    labels, probs = site_scores(np.random.default_rng(0))
    development_threshold = 0.5
    fooled = np.mean(probs[labels == 0] >= development_threshold)  # most normals flagged at this site
    fit = fit_site(labels, probs)
    refitted = recalibrate(probs, *fit.platt)
    balanced = fit.thresholds["balanced"]
    assert fooled > 0.5 and np.mean(refitted[labels == 0] >= balanced) < 0.3
    assert np.mean(refitted[labels == 1] >= fit.thresholds["high_sensitivity"]) >= 0.90
    # Re-calibrated, the probabilities mean what they say: mean prediction near the prevalence.
    assert abs(refitted.mean() - labels.mean()) < 0.03


def test_a_sample_the_model_separates_perfectly_still_gets_thresholds_new_images_can_reach():
    # A small site's sample is often separated perfectly; a plain maximum-likelihood fit then
    # steepens without bound and puts the thresholds a hair below 1, where new fractures fall short.
    rng = np.random.default_rng(3)
    labels = np.r_[np.ones(40, int), np.zeros(40, int)]
    probs = sigmoid(np.r_[rng.normal(2.5, 0.5, 40), rng.normal(-2.5, 0.5, 40)])
    fit = fit_site(labels, probs)
    assert 0 < fit.platt[0] < 3
    assert all(threshold < 0.95 for threshold in fit.thresholds.values())


def test_the_reported_rates_are_cross_validated_with_confidence_intervals():
    labels, probs = site_scores(np.random.default_rng(1))
    fit = fit_site(labels, probs)
    for point in ("balanced", "high_sensitivity"):
        rates = fit.cross_validated[point]
        assert rates["tp"] + rates["fn"] == labels.sum() and rates["tn"] + rates["fp"] == (labels == 0).sum()
        low, high = rates["sensitivity_ci95"]
        assert low < rates["sensitivity"] < high
    # Held-out images miss the in-sample 90% a little more often than the fitting images do.
    assert 0.80 < fit.cross_validated["high_sensitivity"]["sensitivity"] < 0.97


@pytest.mark.parametrize("fractured, normal", [(19, 100), (100, 19), (0, 60)])
def test_a_sample_too_small_to_fit_is_refused_saying_what_is_missing(fractured, normal):
    labels = np.array([1] * fractured + [0] * normal)
    probs = np.random.default_rng(0).random(len(labels))
    with pytest.raises(SiteSampleError, match=f"{fractured} fractured and {normal} non-fractured"):
        fit_site(labels, probs)


def test_the_refit_keeps_the_margin_and_the_metadata_says_what_it_costs():
    labels, probs = site_scores(np.random.default_rng(3))
    fit = fit_site(labels, probs)
    assert fit.margin["with_margin"]["threshold"] == fit.thresholds["high_sensitivity"]
    assert fit.margin["specificity_cost"] >= 0
    site = site_metadata({"operating_points": {"balanced": {"threshold": 0.5}}}, fit)["site_calibration"]
    assert site["high_sensitivity_margin"] == fit.margin
    assert HIGH_SENSITIVITY_RULE in site["method"]


def test_a_sample_too_small_for_the_margin_is_a_sample_too_small_to_fit():
    labels = np.array([1] * 31 + [0] * 40)
    with pytest.raises(SiteSampleError, match="has 31 fractured images; the high-sensitivity point needs at least 32"):
        check_size(labels)
    check_size(np.array([1] * 32 + [0] * 20))


def test_refitting_a_refitted_model_composes_the_two_calibrations():
    rng = np.random.default_rng(2)
    labels, probs = site_scores(rng)
    metadata = {"operating_points": {"balanced": {"threshold": 0.2}, "high_sensitivity": {"threshold": 0.1}}}
    first = site_metadata(metadata, fit_site(labels, probs))
    once = recalibrate(probs, *first["site_calibration"]["platt"])
    second_fit = fit_site(labels, once)
    second = site_metadata(first, second_fit)
    twice = recalibrate(recalibrate(probs, *first["site_calibration"]["platt"]), *second_fit.platt)
    np.testing.assert_allclose(recalibrate(probs, *second["site_calibration"]["platt"]), twice, atol=1e-5)
    assert second["site_calibration"]["development_operating_points"] == {"balanced": first["operating_points"]
                                                                          ["balanced"]["threshold"],
                                                                          "high_sensitivity": first["operating_points"]
                                                                          ["high_sensitivity"]["threshold"]}


@pytest.fixture(scope="module")
def site_folder(tmp_path_factory) -> Path:
    """A site's labelled sample: 32 fractured and 24 normal synthetic radiographs, another size
    (32 fractured: the fewest the high-sensitivity margin needs in each cross-validation fold)."""
    root = tmp_path_factory.mktemp("site")
    rng = np.random.default_rng(7)
    for folder, crack, count in (("Fractured", True, 32), ("Non_fractured", False, 24)):
        (root / folder).mkdir()
        for i in range(count):
            cv2.imwrite(str(root / folder / f"{i}.png"), synthetic_xray(rng, crack, size=(200, 150)))
    return root


def test_the_script_writes_a_model_folder_that_the_app_serves_with_the_site_points(
        tiny_model_dir, site_folder, sample_bytes, tmp_path):
    out = tmp_path / "site_model"
    done = run_script("calibrate_site.py", "--data-dir", str(site_folder), "--model", str(tiny_model_dir),
                      "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Re-fitted on 56 images (32 fractured)" in done.stdout and "cross-validated" in done.stdout
    assert "without margin  threshold" in done.stdout and "with margin     threshold" in done.stdout
    assert "specificity on this sample" in done.stdout
    metadata = json.loads((out / "metadata.json").read_text())
    site = metadata["site_calibration"]
    assert site["images"] == 56 and set(site["cross_validated"]) == {"balanced", "high_sensitivity"}
    margin = site["high_sensitivity_margin"]
    assert "Wilson lower bound" in margin["rule"] and margin["specificity_cost"] >= 0
    served = metadata["operating_points"]["high_sensitivity"]["threshold"]
    assert margin["with_margin"]["threshold"] == pytest.approx(served)
    assert "## Re-fitted at this site" in (out / "MODEL_CARD.md").read_text()
    # The shipped folder is untouched; the new one serves the re-fitted probability and thresholds.
    assert "site_calibration" not in json.loads((tiny_model_dir / "metadata.json").read_text())
    reads = f"sqlite:///{tmp_path / 'reads.sqlite3'}"  # the test's own, never the repo's instance folder
    client = create_app({"TESTING": True, "MODEL_DIR": str(out), "DATABASE_URL": reads}).test_client()
    body = client.post("/api/v1/predict", data={"file": (io.BytesIO(sample_bytes), "x.jpg")}).get_json()
    development = FractureModel(tiny_model_dir)
    raw = float(development.outputs(preprocess(sample_bytes, development.input_size)[None])["probability"][0])
    assert body["calibration"] == "site"
    assert body["threshold"] == pytest.approx(metadata["operating_points"]["balanced"]["threshold"])
    assert body["probability"] == pytest.approx(float(recalibrate(np.array([raw]), *site["platt"])[0]), abs=1e-6)
    page = post_form(client, {"file": (io.BytesIO(sample_bytes), "x.jpg")}).get_data(as_text=True)
    assert "re-fitted on this site's own labelled" in page and "56 images" in page


def test_the_script_refuses_too_few_fractured_images_for_the_margin_before_scoring_them(site_folder, tmp_path):
    small = tmp_path / "small"
    shutil.copytree(site_folder, small)
    for extra in sorted((small / "Fractured").iterdir())[24:]:
        extra.unlink()
    done = run_script("calibrate_site.py", "--data-dir", str(small), "--model", str(tmp_path / "no_model"),
                      "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "The sample has 24 fractured images; the high-sensitivity point needs at least 32" in done.stderr
    assert not (tmp_path / "out").exists()


def test_the_script_refuses_a_one_class_folder_and_never_overwrites_the_model(tiny_model_dir, site_folder, tmp_path):
    one_class = tmp_path / "one_class"
    shutil.copytree(site_folder / "Fractured", one_class / "Fractured")
    done = run_script("calibrate_site.py", "--data-dir", str(one_class), "--model", str(tiny_model_dir),
                      "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "only one class" in done.stderr
    before = (tiny_model_dir / "metadata.json").read_bytes()
    done = run_script("calibrate_site.py", "--data-dir", str(site_folder), "--model", str(tiny_model_dir),
                      "--out", str(tiny_model_dir))
    assert done.returncode == 2 and "not empty" in done.stderr and "--force" in done.stderr
    assert (tiny_model_dir / "metadata.json").read_bytes() == before


def test_the_logit_undoes_the_sigmoid():
    x = np.linspace(-10, 10, 41)
    np.testing.assert_allclose(logit(sigmoid(x)), x, atol=1e-6)


def test_a_model_card_that_cannot_be_rendered_again_says_it_no_longer_gives_the_served_thresholds(tmp_path):
    # A model folder without its validation report (metrics.json) keeps its own card after a
    # site re-fit: it must not go on presenting the development thresholds as the served ones.
    (tmp_path / "MODEL_CARD.md").write_text("# Model card\n\nbalanced threshold 0.23\n")
    site = {"fitted_at": "2026-12-06T21:00:00+00:00", "images": 120, "fractured": 40}
    files = site_files(tmp_path, {"site_calibration": site})
    card = files["MODEL_CARD.md"]
    assert card.startswith("> **Re-fitted at a site on 2026-12-06T21:00:00+00:00** on 120 images (40 fractured)")
    assert "not the ones this card gives below" in card and card.endswith("balanced threshold 0.23\n")
    (tmp_path / "MODEL_CARD.md").unlink()
    assert set(site_files(tmp_path, {"site_calibration": site})) == {"site_metrics.json"}

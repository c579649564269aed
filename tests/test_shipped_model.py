"""The model that ships in model/ loads and gives sane output on a real radiograph."""
from __future__ import annotations

import numpy as np
import pytest

from fracture_web.config import PROJECT_ROOT
from fracture_web.imaging import preprocess
from fracture_web.inference import FractureModel
from fracture_web.pixels import InvalidImageError

from helpers import SAMPLES

MODEL_DIR = PROJECT_ROOT / "model"


def test_shipped_model_gives_sane_output_for_every_sample():
    model = FractureModel(MODEL_DIR)
    assert model.input_size <= 384 and set(model.thresholds) >= {"balanced", "high_sensitivity"}
    batch = np.stack([preprocess(path.read_bytes(), model.input_size) for path in SAMPLES])
    probs, heatmaps = model.infer(batch)
    side = model.input_size // model.metadata.get("map_stride", 16)  # the heatmap is the fracture map
    assert probs.shape == (len(SAMPLES),) and heatmaps.shape == (len(SAMPLES), side, side)
    assert model.outputs(batch[:1])["cam"].shape == (1, model.input_size // 32, model.input_size // 32)
    assert np.all(np.isfinite(probs)) and np.all((probs >= 0) & (probs <= 1))
    assert np.all(np.isfinite(heatmaps)) and np.all((heatmaps >= 0) & (heatmaps <= 1))
    assert np.all(heatmaps.max(axis=(1, 2)) == 1.0)  # each map is scaled to its own peak
    assert probs.std() > 1e-3  # different radiographs get different scores


def test_shipped_model_metadata_was_written_by_the_training_script():
    model = FractureModel(MODEL_DIR)
    training = model.metadata["training"]
    networks = [member["training"] for member in training.get("members", [])] or [training]  # an ensemble's each
    assert "FracAtlas" in training["data"] and all("ImageNet" in network["initial_weights"] for network in networks)
    assert all("FracAtlas" in network["data"] and network["n_train"] > 2000 for network in networks)
    assert training["n_train"] > 2000 and model.metadata["validation_metrics"]["n"] > 400


def test_shipped_model_card_and_metrics_were_generated_for_this_model():
    import json

    metadata = json.loads((MODEL_DIR / "metadata.json").read_text())
    metrics = json.loads((MODEL_DIR / "metrics.json").read_text())
    card = (MODEL_DIR / "MODEL_CARD.md").read_text()
    assert metrics["model_version"] == metadata["model_version"] and metrics["split"] == "val"
    assert metadata["model_version"] in card and f"AUC {metrics['auc']:.3f}" in card
    assert "not a medical" in card.lower() and "children" in card and "hardware" in card
    assert (MODEL_DIR / "plots" / "roc.png").is_file() and (MODEL_DIR / "plots" / "reliability.png").is_file()


def test_shipped_model_warns_about_images_unlike_its_training_radiographs():
    import cv2

    from fracture_web.analysis import OUT_OF_SCOPE, analyse

    model = FractureModel(MODEL_DIR)
    for path in SAMPLES:  # radiographs like the training ones: no warning
        assert analyse(path.read_bytes(), model, images=False).warnings == ()
    rng = np.random.default_rng(0)
    text = np.full((400, 600), 255, np.uint8)
    for i in range(15):
        cv2.putText(text, f"Patient report line {i} lorem ipsum", (10, 25 * i + 25),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.6, 0, 1)
    strangers = {"a text screenshot": text,
                 "a checkerboard": ((np.indices((400, 400)).sum(0) // 40 % 2) * 255).astype(np.uint8),
                 "coarse noise": cv2.resize(rng.integers(0, 255, (50, 40), dtype=np.uint8), (320, 400),
                                            interpolation=cv2.INTER_NEAREST),
                 "a cat photo": cv2.imread(str(PROJECT_ROOT / "tests/resources/lite0_chelsea_224.png"))}
    for name, image in strangers.items():
        result = analyse(cv2.imencode(".png", image)[1].tobytes(), model, images=False)
        assert OUT_OF_SCOPE in result.warnings, name
    # Pixel noise is refused before the model sees it (pixels.check_content).
    with pytest.raises(InvalidImageError, match="random noise"):
        analyse(cv2.imencode(".png", rng.integers(0, 255, (400, 300), dtype=np.uint8))[1].tobytes(), model)


def test_shipped_model_shows_where_on_fractured_samples_and_no_definite_box_on_normal_ones():
    import cv2

    from fracture_web.analysis import analyse

    model = FractureModel(MODEL_DIR)
    assert 0 < model.finding_levels.possible <= model.finding_levels.definite < 1  # chosen on validation
    for path in SAMPLES:
        height, width = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).shape
        prediction = analyse(path.read_bytes(), model, images=False).prediction
        for finding in prediction.findings:
            x0, y0, x1, y1 = finding.box
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        if prediction.fractured:
            assert prediction.findings, path.name
        else:
            assert all(f.level == "possible" for f in prediction.findings), path.name

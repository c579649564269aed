"""The high-sensitivity point keeps its promise on new images: it is chosen with a margin for the
sample's size, says what the margin costs, and a sample too small for the margin is refused."""
from __future__ import annotations

import numpy as np
import pytest

from fracture_web.cli.calibrate import margin_lines
from fracture_web.evaluation.calibration import (SampleTooSmallError, check_fractured, choose_operating_points,
                                                 fractured_needed, high_sensitivity_threshold, margin_cost,
                                                 sensitivity_lower_bound)
from fracture_web.evaluation.diagnostic_accuracy import confusion_rates


def evenly_spread(fractured: int = 100, normal: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Fractured images scored evenly from 0.01 to 1.00 (100 of them), normal ones evenly below 0.1."""
    labels = np.r_[np.ones(fractured, int), np.zeros(normal, int)]
    probs = np.r_[np.arange(1, fractured + 1) / fractured, (np.arange(normal) + 0.5) / normal * 0.1]
    return labels, probs


def test_the_point_keeps_the_fewest_fractured_images_whose_lower_bound_reaches_the_target():
    labels, probs = evenly_spread()
    threshold = high_sensitivity_threshold(labels, probs, 0.90)
    kept = int(np.sum(probs[labels == 1] >= threshold))
    # 95 of 100 is the smallest count whose one-sided 95% Wilson lower bound reaches 0.90.
    assert kept == 95
    assert sensitivity_lower_bound(95, 100)[0] >= 0.90 > sensitivity_lower_bound(94, 100)[0]
    # The highest such threshold: the 95th fractured score from the top, not anything below it.
    assert threshold == pytest.approx(0.06)
    assert choose_operating_points(labels, probs)["high_sensitivity"] == threshold


def test_without_the_margin_the_point_keeps_only_the_target_share():
    labels, probs = evenly_spread()
    assert int(np.sum(probs[labels == 1] >= high_sensitivity_threshold(labels, probs, 0.90, margin=False))) == 90


def test_the_margin_cost_is_the_specificity_given_up_on_the_sample():
    labels, probs = evenly_spread()
    cost = margin_cost(labels, probs, 0.90)
    plain, kept = cost["without_margin"], cost["with_margin"]
    assert "Wilson lower bound" in cost["rule"] and cost["target"] == 0.90
    assert plain["sensitivity"] == 0.90 and kept["sensitivity"] == 0.95
    assert plain["sensitivity_lower_bound"] < 0.90 <= kept["sensitivity_lower_bound"]
    assert kept["specificity"] == confusion_rates(labels, probs, kept["threshold"])["specificity"]
    # Every normal image scores below the plain point (0.11); 40 of 100 reach the margin's (0.06).
    assert plain["specificity"] == 1.0 and kept["specificity"] == 0.60
    assert cost["specificity_cost"] == pytest.approx(0.40)


def test_the_summary_prints_both_points_and_the_cost():
    labels, probs = evenly_spread()
    text = "\n".join(margin_lines(margin_cost(labels, probs, 0.90)))
    assert "without margin  threshold 0.110  sensitivity 0.900 (lower bound 0.840)  specificity 1.000" in text
    assert "with margin     threshold 0.060  sensitivity 0.950 (lower bound 0.901)  specificity 0.600" in text
    assert "the margin costs 0.400 specificity on this sample" in text


def test_at_least_25_fractured_images_all_detected_can_show_90_percent_sensitivity():
    assert fractured_needed(0.90) == 25
    assert sensitivity_lower_bound(25, 25)[0] >= 0.90 > sensitivity_lower_bound(24, 24)[0]
    # Cross-validated in 5 folds, each fold's fitting part (the sample less its largest fold) needs 25.
    assert fractured_needed(0.90, folds=5) == 32


def test_a_sample_too_small_for_the_margin_is_refused_saying_how_many_fractured_images_are_needed():
    with pytest.raises(SampleTooSmallError, match="has 24 fractured images; .* needs at least 32 .* Add 8 or more"):
        check_fractured(np.r_[np.ones(24, int), np.zeros(100, int)], 0.90, folds=5)
    check_fractured(np.r_[np.ones(32, int), np.zeros(20, int)], 0.90, folds=5)


def test_a_validation_split_too_small_for_the_margin_keeps_every_fractured_image(caplog):
    labels, probs = evenly_spread(fractured=10)
    assert high_sensitivity_threshold(labels, probs, 0.90) == pytest.approx(0.1)
    assert "10 fractured images cannot show sensitivity >= 0.90" in caplog.text

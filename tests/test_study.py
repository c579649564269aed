"""Several views, one verdict: a study is fractured when any view is, at the largest probability."""
from __future__ import annotations

import numpy as np
import pytest

from fracture_web.inference import Prediction
from fracture_web.study import EmptyStudyError, combine


def view(probability: float, threshold: float = 0.3, point: str = "balanced") -> Prediction:
    fractured = probability >= threshold
    return Prediction("fractured" if fractured else "not_fractured", fractured, probability, threshold, point, "v1",
                      np.zeros((4, 4), np.float32))


def test_one_suspicious_view_makes_the_study_fractured_at_its_probability():
    study = combine([view(0.1), view(0.6), view(0.2)])
    assert study.fractured and study.label == "fractured" and study.verdict == "Fracture suspected"
    assert study.probability == 0.6 and study.views == 3
    assert study.as_dict() == {"label": "fractured", "probability": 0.6, "threshold": 0.3,
                               "operating_point": "balanced", "model_version": "v1"}


def test_a_study_of_normal_views_is_not_fractured_at_the_largest_probability():
    study = combine([view(0.1), view(0.25)])
    assert not study.fractured and study.probability == 0.25


def test_no_readable_view_has_no_verdict_and_mixed_operating_points_are_refused():
    with pytest.raises(EmptyStudyError):
        combine([])
    with pytest.raises(ValueError):
        combine([view(0.1), view(0.2, threshold=0.07, point="high_sensitivity")])

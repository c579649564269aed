"""model/MODEL_CARD.md, rendered from ``model_card.md.j2`` with metadata.json and the validation report.

Every number in the card comes from those two files, which scripts wrote; nothing is typed.
The wording lives in the template; this module only supplies the number formats.
"""
from __future__ import annotations

import math
from importlib import resources

import jinja2

TEMPLATE = "model_card.md.j2"
#: Shown where a number is undefined (no cases to count) or absent (an AUC of a one-class group).
MISSING = "–"


def _pct(value: float | None) -> str:
    """A rate as a percentage with one decimal."""
    return MISSING if value is None or not math.isfinite(value) else f"{value:.1%}"


def _ci(interval: list[float | None]) -> str:
    """A 95% interval as ``low–high`` to three decimals."""
    low, high = interval
    return MISSING if low is None or high is None else f"{low:.3f}–{high:.3f}"


def _fixed(value: float | None, digits: int) -> str:
    """A number to ``digits`` decimals."""
    return MISSING if value is None else f"{value:.{digits}f}"


def _environment() -> jinja2.Environment:
    # Markdown, not HTML: nothing to escape. Strict: a missing field fails instead of printing nothing.
    env = jinja2.Environment(autoescape=False, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(pct=_pct, ci=_ci, fixed=_fixed)
    return env


def render(metadata: dict, metrics: dict) -> str:
    """The model card as Markdown, from metadata.json and the validation report (as in metrics.json)."""
    source = resources.files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8")
    template = _environment().from_string(source)
    return template.render(metadata=metadata, metrics=metrics, points=list(metrics["operating_points"]))

"""model/MODEL_CARD.md, rendered from ``model_card.md.j2`` with metadata.json and the validation report.

Every number in the card comes from those two files and the ``.tflite`` files' parity report, which
scripts wrote; nothing is typed.
The wording lives in the template; this module only supplies the number formats.
"""
from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path

import jinja2

from ..runtimes import PARITY_FILE, parity_problem

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


def render(metadata: dict, metrics: dict, parity: dict | None = None) -> str:
    """The model card as Markdown, from metadata.json, the validation report (as in metrics.json) and,
    where the ``.tflite`` files have been checked, their parity report (tflite_parity.json)."""
    source = resources.files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8")
    template = _environment().from_string(source)
    stands_in = {v["file"]: parity_problem(v, parity) is None for v in parity["variants"].values()} if parity else {}
    return template.render(metadata=metadata, metrics=metrics, parity=parity, stands_in=stands_in,
                           points=list(metrics["operating_points"]))


def read_parity(model_dir: Path) -> dict | None:
    """The ``.tflite`` files' parity report in ``model_dir``, or None where there is none."""
    path = Path(model_dir) / PARITY_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def render_folder(model_dir: Path) -> str:
    """The model card of the model folder ``model_dir``, from its own files."""
    read = lambda name: json.loads((Path(model_dir) / name).read_text())  # noqa: E731
    return render(read("metadata.json"), read("metrics.json"), read_parity(model_dir))

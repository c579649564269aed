"""How a lab tool hands over its result: printed, and written as JSON where ``--out`` asks."""
from __future__ import annotations

import json
from pathlib import Path


def emit(result: dict, out: Path | None) -> None:
    """Print ``result`` as indented JSON and, given ``out``, write the same text there."""
    text = json.dumps(result, indent=1)
    print(text)
    if out:
        out.write_text(text + "\n")

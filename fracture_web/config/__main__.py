"""``python -m fracture_web.config --markdown``: print the settings table for the docs."""
from __future__ import annotations

import argparse
import sys

from .docs import markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fracture_web.config", description=__doc__)
    parser.add_argument("--markdown", action="store_true", required=True,
                        help="the table of every FRACTURE_* setting, as docs/operations.md holds it")
    parser.parse_args(argv)
    print(markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())

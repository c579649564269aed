"""Long fuzzing run of the decode/preprocess path (the test suite runs a short one).

    python -m bench.fuzz_imaging --examples 20000

Runs tests/test_fuzz_imaging.py with many more hypothesis examples: random bytes and
mutated or cut PNG, JPEG, TIFF and BMP files must each give a valid model input or
InvalidImageError. Exits non-zero on any other exception (hypothesis shrinks it).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=20_000, help="examples per fuzz test")
    args = parser.parse_args(argv)
    env = os.environ | {"FUZZ_EXAMPLES": str(args.examples)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fuzz_imaging.py"]
    return subprocess.run(command, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())

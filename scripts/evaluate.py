"""Evaluate the shipped model on a labelled folder: AUC, operating points, calibration.

``fracture-evaluate`` from a checkout: the same command (``fracture_web/cli/evaluate.py``), with the
same arguments. ``python scripts/evaluate.py --help`` says more."""
import sys

from fracture_web.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())

"""Export the shipped SavedModel to ONNX for ONNX Runtime, and check the files against it.

``fracture-export-onnx`` from a checkout: the same command (``fracture_web/cli/export_onnx.py``), with the
same arguments. ``python scripts/export_onnx.py --help`` says more."""
import sys

from fracture_web.cli.export_onnx import main

if __name__ == "__main__":
    sys.exit(main())

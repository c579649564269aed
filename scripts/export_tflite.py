"""Convert the shipped SavedModel to TensorFlow Lite for LiteRT, and check the files against it.

``fracture-export-tflite`` from a checkout: the same command (``fracture_web/cli/export_tflite.py``), with the
same arguments. ``python scripts/export_tflite.py --help`` says more."""
import sys

from fracture_web.cli.export_tflite import main

if __name__ == "__main__":
    sys.exit(main())

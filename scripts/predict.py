"""Print the verdict and probability for one or more X-ray files (PNG, JPEG, TIFF or DICOM).

``fracture-predict`` from a checkout: the same command (``fracture_web/cli/predict.py``), with the
same arguments. ``python scripts/predict.py --help`` says more."""
import sys

from fracture_web.cli.predict import main

if __name__ == "__main__":
    sys.exit(main())

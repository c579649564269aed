"""Re-fit the model's calibration and operating points on this site's own labelled radiographs.

``fracture-calibrate`` from a checkout: the same command (``fracture_web/cli/calibrate.py``), with the
same arguments. ``python scripts/calibrate_site.py --help`` says more."""
import sys

from fracture_web.cli.calibrate import main

if __name__ == "__main__":
    sys.exit(main())

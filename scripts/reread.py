"""Re-read an archive: every file under a folder (DICOM or images, recursively) -> one CSV row each.

``fracture-reread`` from a checkout: the same command (``fracture_web/cli/reread.py``), with the
same arguments. ``python scripts/reread.py --help`` says more."""
import sys

from fracture_web.cli.reread import main

if __name__ == "__main__":
    sys.exit(main())

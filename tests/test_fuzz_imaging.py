"""Property-based fuzzing of the decode/preprocess path, at full and at reduced size: whatever the
bytes, either a valid model input or InvalidImageError, never another exception."""
from __future__ import annotations

import os

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fracture_web.imaging import decode_image, preprocess, to_model_input
from fracture_web.pixels import InvalidImageError

from dicom_files import jpeg2000, jpeg_baseline, radiograph_dataset, rle, to_bytes


def _seed_files() -> list[bytes]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (96, 80), dtype=np.uint8)
    deep = image.astype(np.uint16) * 16
    dicoms = [radiograph_dataset(deep, bits_stored=12, WindowCenter=2000, WindowWidth=3000),
              rle(radiograph_dataset(deep, bits_stored=12)), jpeg2000(radiograph_dataset(deep, bits_stored=12)),
              jpeg_baseline(radiograph_dataset(image))]
    return ([cv2.imencode(ext, image)[1].tobytes() for ext in (".png", ".jpg", ".tif", ".bmp")]
            + [to_bytes(ds) for ds in dicoms])


SEEDS = _seed_files()
#: A short run here; bench/fuzz_imaging.py sets FUZZ_EXAMPLES for a long one.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))


def check(data: bytes) -> None:
    """Full-size and reduced decoding (20 px asked for: the seeds shrink to half) alike."""
    for decode in (lambda: preprocess(data, 64), lambda: to_model_input(decode_image(data, 20).pixels, 64)):
        try:
            model_input = decode()
        except InvalidImageError:
            continue
        assert model_input.shape == (64, 64, 1) and model_input.dtype == np.float32
        assert np.all(np.isfinite(model_input)) and 0.0 <= model_input.min() and model_input.max() <= 1.0


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_never_crash_the_decoder(data):
    check(data)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 20_000), st.integers(0, 255)), max_size=12),
       st.integers(8, 10_000))
def test_mutated_and_cut_images_never_crash_the_decoder(seed, flips, cut):
    data = bytearray(seed[:cut])
    for position, value in flips:  # overwrite a few bytes, headers included
        if data:
            data[position % len(data)] = value
    check(bytes(data))

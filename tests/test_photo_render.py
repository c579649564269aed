"""A radiograph rendered as a phone photo of its film on a light box or of a monitor."""
from __future__ import annotations

import numpy as np
import pytest

from fracture_web.imaging import decode_image
from fracture_web.photo_render import KINDS, render_photo
from helpers import SAMPLES


@pytest.fixture(scope="module")
def radiograph() -> np.ndarray:
    return np.rint(decode_image(SAMPLES[0].read_bytes()).pixels * 255).astype(np.uint8)


@pytest.mark.parametrize("kind", KINDS)
def test_a_photo_is_a_colour_picture_larger_than_the_film_and_repeats_for_a_seed(kind, radiograph):
    photo = render_photo(radiograph, kind, np.random.default_rng(0))
    assert photo.image.dtype == np.uint8 and photo.image.ndim == 3 and photo.image.shape[2] == 3
    assert photo.image.shape[0] * photo.image.shape[1] > radiograph.size
    blue, green, red = (photo.image[..., i].astype(float).mean() for i in range(3))
    assert max(blue, green, red) - min(blue, green, red) > 2  # a colour cast
    again = render_photo(radiograph, kind, np.random.default_rng(0))
    assert np.array_equal(photo.image, again.image) and np.array_equal(photo.corners, again.corners)
    assert not np.array_equal(photo.image, render_photo(radiograph, kind, np.random.default_rng(1)).image)


def _corner_marks(kind: str) -> np.ndarray:
    """A radiograph whose four corners are marked against what will surround it in the photo:
    dark marks on a film (the light box around it is bright), bright ones on a screen (dark around)."""
    mark = 0 if kind == "film" else 255
    image = np.full((300, 240), 255 - mark, np.uint8)
    for rows in (slice(0, 30), slice(-30, None)):
        for cols in (slice(0, 30), slice(-30, None)):
            image[rows, cols] = mark
    return image


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", KINDS)
def test_the_films_corners_are_where_the_perspective_puts_them(kind, seed):
    photo = render_photo(_corner_marks(kind), kind, np.random.default_rng(seed))
    grey = photo.image.astype(float).mean(axis=2)
    centre = photo.corners.mean(axis=0)
    sign = -1.0 if kind == "film" else 1.0
    for corner in photo.corners:
        towards_centre = (centre - corner) / np.linalg.norm(centre - corner)
        inside = corner + 6 * towards_centre
        outside = corner - 6 * towards_centre
        mark, surround = (grey[int(round(p[1])), int(round(p[0]))] for p in (inside, outside))
        assert sign * (mark - surround) > 25, (corner, mark, surround)


def test_a_film_is_seen_at_an_angle_not_square_on(radiograph):
    corners = render_photo(radiograph, "film", np.random.default_rng(2)).corners
    top, bottom = corners[1] - corners[0], corners[2] - corners[3]
    assert not np.allclose(top, bottom, atol=2.0)


def test_only_a_film_or_a_monitor_can_be_photographed(radiograph):
    with pytest.raises(ValueError):
        render_photo(radiograph, "poster", np.random.default_rng(0))

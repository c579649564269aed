"""Where there is no digital radiography, a clinician photographs the film or the screen: the app
recognises the photo, straightens the film, reads it in grey and says it was a photo."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest

from fracture_web.analysis import analyse
from fracture_web.datasets import read_records
from fracture_web.evaluation.robustness import format_robustness, robustness_table
from fracture_web.imaging import COLOUR_WARNING, decode_image
from fracture_web.photo import NO_FILM_WARNING, PHOTO_WARNING, TOO_BLURRED, TOO_DARK, read_photo
from fracture_web.pixels import InvalidImageError
from fracture_web.photo_render import KINDS, render_photo
from helpers import SAMPLES, synthetic_xray
from test_orientation import TopHalfModel, bar_folder


def radiograph(path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


def jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def likeness(a: np.ndarray, b: np.ndarray) -> float:
    """How alike two pictures are, whatever their sizes: the correlation of 32 x 32 thumbnails."""
    thumbs = [cv2.resize(x.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA).ravel() for x in (a, b)]
    return float(np.corrcoef(*thumbs)[0, 1])


@pytest.mark.parametrize("kind", KINDS)
def test_photos_of_the_samples_are_recognised_and_straightened(kind):
    as_taken, straightened = [], []
    for path in SAMPLES:
        original = radiograph(path)
        photo = render_photo(original, kind, np.random.default_rng(7)).image
        reading = read_photo(photo)
        assert reading is not None and reading.warning == PHOTO_WARNING, path.name
        assert reading.pixels.dtype == np.float32 and 0.0 <= reading.pixels.min() and reading.pixels.max() <= 1.0
        as_taken.append(likeness(original, cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)))
        straightened.append(likeness(original, reading.pixels))
    # Each straightened film is more like its radiograph than the photo was, and far more on average.
    assert all(s > a for s, a in zip(straightened, as_taken)), (straightened, as_taken)
    assert np.mean(straightened) > np.mean(as_taken) + 0.3


def test_the_film_is_found_where_the_photo_shows_it():
    original = radiograph(SAMPLES[1])
    photo = render_photo(original, "film", np.random.default_rng(3))
    found = read_photo(photo.image).corners
    # The light box's edge, a little outside the film's own corners, on every side.
    assert np.all(np.linalg.norm(found - photo.corners, axis=1) < 0.15 * max(original.shape))


def test_an_uploaded_photo_is_decoded_as_the_straightened_film_with_the_warning():
    photo = render_photo(radiograph(SAMPLES[0]), "monitor", np.random.default_rng(1)).image
    decoded = decode_image(jpeg(photo))
    assert decoded.warnings == (PHOTO_WARNING,)
    assert decoded.pixels.ndim == 2 and decoded.size == decoded.pixels.shape
    assert decoded.pixels.size < 0.8 * photo.shape[0] * photo.shape[1]


def test_a_plain_radiograph_is_never_taken_for_a_photo():
    rng = np.random.default_rng(0)
    collimated = np.zeros((400, 320), np.uint8)
    collimated[60:340, 50:270] = synthetic_xray(rng, crack=True, size=(280, 220))
    pictures = [radiograph(path) for path in SAMPLES] + [synthetic_xray(rng, crack=c) for c in (True, False)]
    for picture in pictures + [collimated]:
        as_rgb = cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR)  # some exports store grey as colour
        assert read_photo(as_rgb) is None
        for data in (jpeg(picture), jpeg(as_rgb)):
            decoded = decode_image(data)
            assert decoded.warnings == () and decoded.size == picture.shape


def test_a_radiograph_file_with_a_coloured_marker_is_read_as_the_file_it_is():
    # A red side marker (a 30-pixel dot) made it a "photo": the film searched for in it, the verdict
    # drawn from a quadrilateral of background, under a warning that it was straightened.
    framed = cv2.copyMakeBorder(radiograph(SAMPLES[0]), 32, 32, 32, 32, cv2.BORDER_CONSTANT, value=0)
    marked = cv2.cvtColor(framed, cv2.COLOR_GRAY2BGR)
    cv2.circle(marked, (framed.shape[1] - 40, 30), 14, (0, 0, 255), -1)
    assert read_photo(marked) is None
    decoded = decode_image(cv2.imencode(".png", marked)[1].tobytes())
    assert decoded.warnings == () and decoded.size == decoded.pixels.shape == framed.shape


@pytest.mark.parametrize("kite", [[[600, 150], [1000, 650], [600, 1450], [200, 650]],
                                  [[620, 140], [1010, 700], [580, 1460], [190, 620]]])
def test_a_film_photographed_turned_about_45_degrees_under_perspective_is_straightened_whole(kite):
    # Each corner was chosen on its own (least x + y, least y - x ...): the top point won twice,
    # and the film was warped to a strip a few pixels wide, then read.
    film = cv2.copyMakeBorder(radiograph(SAMPLES[1]), 20, 20, 20, 20, cv2.BORDER_CONSTANT, value=245)
    height, width = film.shape
    frame = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    grey = cv2.warpPerspective(film, cv2.getPerspectiveTransform(frame, np.float32(kite)), (1200, 1600),
                               borderValue=40)
    photo = cv2.merge([grey, grey, np.clip(grey.astype(int) + 6, 0, 255).astype(np.uint8)])  # a light box's cast
    reading = read_photo(photo)
    assert reading is not None and reading.warning == PHOTO_WARNING
    assert len({tuple(np.round(corner)) for corner in reading.corners}) == 4
    assert min(reading.pixels.shape) > 0.5 * min(height, width)


def test_a_photo_with_no_film_in_it_is_read_as_it_is_with_the_warning():
    # The film photographed so close that it fills the picture: no edge to find.
    original = radiograph(SAMPLES[2])
    warm = np.clip(cv2.cvtColor(original, cv2.COLOR_GRAY2BGR) * np.array([0.9, 1.0, 1.1]), 0, 255).astype(np.uint8)
    reading = read_photo(warm)
    assert reading is not None and reading.pixels is None and reading.warning == NO_FILM_WARNING
    decoded = decode_image(jpeg(warm))
    assert decoded.warnings == (NO_FILM_WARNING,) and decoded.size == original.shape


def test_a_photo_too_dark_or_too_blurred_to_read_is_refused_with_a_request_to_take_it_again():
    photo = render_photo(radiograph(SAMPLES[4]), "film", np.random.default_rng(5)).image
    noise = np.random.default_rng(0).normal(0.0, 2.0, photo.shape)  # a dark photo's sensor noise
    dark = np.clip(photo * 0.08 + noise, 0, 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(photo, (0, 0), 0.015 * max(photo.shape))
    for bad, message in ((dark, TOO_DARK), (blurred, TOO_BLURRED)):
        with pytest.raises(InvalidImageError) as refused:
            decode_image(jpeg(bad))
        assert str(refused.value) == message and "Take it again" in message


def test_a_colourful_picture_with_no_film_keeps_the_colour_warning_alone():
    cat = cv2.imread(str(SAMPLES[0].parent.parent.parent / "tests" / "resources" / "lite0_chelsea_224.png"))
    assert decode_image(jpeg(cat)).warnings == (COLOUR_WARNING,)


def test_the_answer_says_photo_and_the_page_shows_the_straightened_film(model):
    photo = render_photo(radiograph(SAMPLES[0]), "film", np.random.default_rng(2)).image
    result = analyse(jpeg(photo), model)
    assert result.source == "photo" and PHOTO_WARNING in result.warnings
    assert result.as_dict()["source"] == "photo"
    straightened = read_photo(photo).pixels
    shown_ratio, film_ratio = (x.shape[0] / x.shape[1] for x in (result.xray, straightened))
    assert abs(shown_ratio - film_ratio) < 0.02 and likeness(result.xray, straightened) > 0.95
    plain = analyse(SAMPLES[0].read_bytes(), model, images=False)
    assert plain.source == "file" and "source" not in plain.as_dict()


def test_the_api_says_photo(client):
    photo = render_photo(radiograph(SAMPLES[3]), "monitor", np.random.default_rng(4)).image
    body = client.post("/api/v1/predict", data={"file": (io.BytesIO(jpeg(photo)), "phone.jpg")}).get_json()
    assert body["source"] == "photo" and PHOTO_WARNING in body["warnings"]
    # Its boxes are in the straightened film's pixels, which the photo's own size does not give.
    film = decode_image(jpeg(photo)).size
    assert body["image_size"] == {"width": film[1], "height": film[0]} and film != photo.shape[:2]
    for finding in body["findings"]:
        assert 0 <= finding["box"][0] < finding["box"][2] <= film[1] and 0 <= finding["box"][1] < finding["box"][3] <= film[0]


def test_the_robustness_table_has_a_photographed_section_read_as_uploaded_and_as_is(tmp_path):
    model = TopHalfModel()
    table = robustness_table(read_records(bar_folder(tmp_path)), model, shifts=(), batch_size=4, photos=KINDS)
    rows = table["photographed"]
    assert list(rows) == ["film", "film_as_is", "monitor", "monitor_as_is"]
    assert rows["film"]["as_photo"] == 1.0 and 0.0 <= rows["film"]["straightened"] <= 1.0
    assert "as_photo" not in rows["film_as_is"] and not rows["film"]["scanner"]
    assert sum(model.batch_sizes) == 8 * (1 + 4)
    text = format_robustness(table).splitlines()
    header = next(i for i, line in enumerate(text) if line.startswith("photographed"))
    assert [line.split()[0] for line in text[header + 1:]] == list(rows)


def test_a_photo_of_something_that_is_not_a_radiograph_is_out_of_scope_as_before():
    from fracture_web.analysis import OUT_OF_SCOPE
    from fracture_web.config import PROJECT_ROOT
    from fracture_web.inference import FractureModel

    model = FractureModel(PROJECT_ROOT / "model")  # the shipped model: the tiny one finds everything strange
    cat = cv2.imread(str(PROJECT_ROOT / "tests" / "resources" / "lite0_chelsea_224.png"))
    assert OUT_OF_SCOPE in analyse(jpeg(cat), model, images=False).warnings  # the photo itself, as before
    for kind in KINDS:  # and a photo of it on a light box or a screen
        photo = render_photo(cv2.resize(cat, (336, 336)), kind, np.random.default_rng(0)).image
        result = analyse(jpeg(photo), model, images=False)
        assert result.source == "photo" and OUT_OF_SCOPE in result.warnings, kind

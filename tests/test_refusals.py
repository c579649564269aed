"""Every refusal in the table is one a person can meet: each row is reached by a real request, on the page
and in the API where it can happen, and answers with its status and message (the page keeps the form),
counted once under its reason; the views answer no error themselves."""
from __future__ import annotations

import ast
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from gunicorn.http.errors import InvalidChunkSize
from markupsafe import escape
from prometheus_client import REGISTRY

from bench.local_server import free_port
from fracture_web import create_app, metrics, refusals
from fracture_web.imaging import decode_image
from fracture_web.inference import ModelOutputError
from fracture_web.reads.models import READS
from fracture_web.refusals import Refusal
from fracture_web.web import uploads
from helpers import SAMPLES, csrf_token, post_form

NOT_AN_IMAGE = b"this is a letter, not a radiograph"
TOKEN = "site-token-for-the-refusals-test"
#: An analysis id as the app gives them, that this site never gave.
NEVER_GIVEN = "0" * 32
#: The reasons dashboards and alerts already count under: they must not change.
DASHBOARD_REASONS = {"no_file", "too_many_files", "unreadable", "too_large", "bad_operating_point", "no_model",
                     "unauthorised", "cross_site", "expired_form", "upload_stalled", "bad_request"}


class Failing(io.BytesIO):
    """A request body whose every read fails with ``error``: a client that stalls, or breaks HTTP's framing."""

    def __init__(self, error: Exception) -> None:
        super().__init__(bytes(100))
        self._error = error

    def read(self, *args):
        raise self._error

    read1 = readinto = readline = read


def files(*contents: bytes, field: str = "file") -> dict:
    return {field: [(io.BytesIO(data), f"view{i}.jpg") for i, data in enumerate(contents, start=1)]}


def post_with_csrf(client, path: str, data: dict, **kwargs):
    """A form POST carrying the CSRF token the page gave this browser."""
    return client.post(path, data=data | {"csrf_token": csrf_token(client)}, **kwargs)


class Site:
    """The apps the stories need: one with the tiny model, others made with a setting or without a model,
    all keeping their reads at ``reads_url``."""

    def __init__(self, tiny_model_dir: Path, reads_url: str) -> None:
        self.reads_url = reads_url
        self.analysing = self.app(MODEL_DIR=str(tiny_model_dir), MAX_STUDY_IMAGES=2).test_client()

    def app(self, **config) -> Flask:
        return create_app({"TESTING": True, "DATABASE_URL": self.reads_url} | config)

    def without_model(self, **config):
        return self.app(LOAD_MODEL=False, **config).test_client()


# Each story makes the requests that meet one row, on the surfaces where a person can meet it, and
# says the message they should read.
Answers = dict[str, object]
Story = Callable[[Site], tuple[Answers, str]]


def unreadable(site: Site) -> tuple[Answers, str]:
    words = _error_of(lambda: decode_image(NOT_AN_IMAGE))
    return {"page": post_form(site.analysing, files(NOT_AN_IMAGE)),
            "api": site.analysing.post("/api/v1/predict", data=files(NOT_AN_IMAGE))}, words


def bad_operating_point(site: Site) -> tuple[Answers, str]:
    model = site.analysing.application.extensions["fracture_model"]
    words = _error_of(lambda: model.resolve("lucky"))
    radiograph = SAMPLES[0].read_bytes()
    return {"page": post_form(site.analysing, files(radiograph) | {"operating_point": "lucky"}),
            "api": site.analysing.post("/api/v1/predict?operating_point=lucky", data=files(radiograph))}, words


def no_file(site: Site) -> tuple[Answers, str]:
    def nothing() -> dict:  # the form sent without choosing a file
        return {"file": (io.BytesIO(b""), "")}
    return {"page": post_form(site.analysing, nothing()),
            "api": site.analysing.post("/api/v1/predict", data=nothing())}, refusals.NO_FILE.text()


def wrong_field(site: Site) -> tuple[Answers, str]:
    return {"page": post_form(site.analysing, files(NOT_AN_IMAGE, field="upload")),
            "api": site.analysing.post("/api/v1/studies", data=files(NOT_AN_IMAGE, field="upload"))}, \
        refusals.WRONG_FIELD.text(field="upload")


def malformed_form(site: Site) -> tuple[Answers, str]:
    # Two whole parts, then the body ends without its closing boundary (a client or proxy cut it off).
    body = b"".join(b'--zz\r\nContent-Disposition: form-data; name="file"; filename="v.jpg"\r\n\r\n' + data + b"\r\n"
                    for data in (SAMPLES[0].read_bytes(), SAMPLES[1].read_bytes()))
    form = "multipart/form-data; boundary=zz"
    return {"page": site.analysing.post("/", data=body, content_type=form),
            "api": site.analysing.post("/api/v1/studies", data=body, content_type=form)}, refusals.MALFORMED_FORM.text()


def bad_heatmap(site: Site) -> tuple[Answers, str]:
    return {"api": site.analysing.post("/api/v1/predict?heatmap=gif", data=files(SAMPLES[0].read_bytes()))}, \
        refusals.BAD_HEATMAP.text(value="gif")


def empty_body(site: Site) -> tuple[Answers, str]:
    return {"api": site.analysing.post("/api/v1/predict", data=b"", content_type="application/dicom")}, \
        refusals.EMPTY_BODY.text()


def one_at_a_time(site: Site) -> tuple[Answers, str]:
    return {"api": site.analysing.post("/api/v1/predict", data=files(NOT_AN_IMAGE, NOT_AN_IMAGE))}, \
        refusals.ONE_AT_A_TIME.text()


def study_too_large(site: Site) -> tuple[Answers, str]:
    limit = site.analysing.application.config["MAX_STUDY_IMAGES"]
    views = [NOT_AN_IMAGE] * (limit + 1)
    return {"page": post_form(site.analysing, files(*views)),
            "api": site.analysing.post("/api/v1/studies", data=files(*views))}, \
        refusals.STUDY_TOO_LARGE.text(limit=limit, sent=limit + 1)


def token_needed(site: Site) -> tuple[Answers, str]:
    guarded = site.without_model(API_TOKEN=TOKEN)
    return {"api": guarded.post("/api/v1/predict", data=files(NOT_AN_IMAGE))}, refusals.TOKEN_NEEDED.text()


def sign_in_first(site: Site) -> tuple[Answers, str]:
    guarded = site.without_model(API_TOKEN=TOKEN)
    return {"page": post_form(guarded, files(NOT_AN_IMAGE))}, refusals.SIGN_IN_FIRST.text()


def wrong_token(site: Site) -> tuple[Answers, str]:
    guarded = site.without_model(API_TOKEN=TOKEN)
    return {"page": post_with_csrf(guarded, "/sign-in", {"token": "not-the-token"})}, refusals.WRONG_TOKEN.text()


def expired_form(site: Site) -> tuple[Answers, str]:
    client = site.without_model()
    return {"page": client.post("/", data=files(NOT_AN_IMAGE), content_type="multipart/form-data")}, \
        refusals.EXPIRED_FORM.text()


def bad_request(site: Site) -> tuple[Answers, str]:
    client = site.without_model()

    def malformed(path: str):  # a chunked body with a broken chunk size, as gunicorn reports it
        return client.post(path, input_stream=Failing(InvalidChunkSize(b"zz")), content_type="application/dicom")
    return {"page": malformed("/"), "api": malformed("/api/v1/predict")}, refusals.BAD_REQUEST.text()


def cross_site(site: Site) -> tuple[Answers, str]:
    client, cross = site.without_model(), {"Sec-Fetch-Site": "cross-site"}
    return {"page": client.post("/", data=files(NOT_AN_IMAGE), headers=cross),
            "api": client.post("/api/v1/predict", data=files(NOT_AN_IMAGE), headers=cross)}, \
        refusals.CROSS_SITE.text()


def not_found(site: Site) -> tuple[Answers, str]:
    client = site.without_model()
    return {"page": client.get("/nowhere"), "api": client.get("/api/v1/nowhere")}, refusals.NOT_FOUND.text()


def not_allowed(site: Site) -> tuple[Answers, str]:
    client = site.without_model()
    return {"page": client.delete("/"), "api": client.get("/api/v1/predict")}, refusals.NOT_ALLOWED.text()


def upload_stalled(site: Site) -> tuple[Answers, str]:
    client = site.without_model()

    def stalled(path: str):
        return client.post(path, input_stream=Failing(TimeoutError("stalled")), content_type="application/dicom")
    return {"page": stalled("/"), "api": stalled("/api/v1/predict")}, refusals.UPLOAD_STALLED.text()


def too_large(site: Site) -> tuple[Answers, str]:
    client = site.without_model(MAX_CONTENT_LENGTH=1 << 20)
    big = bytes(2 << 20)
    return {"page": post_form(client, files(big)), "api": client.post("/api/v1/predict", data=files(big))}, \
        refusals.TOO_LARGE.text(limit_mb=1)


def no_model(site: Site) -> tuple[Answers, str]:
    client = site.without_model()
    return {"page": post_form(client, files(NOT_AN_IMAGE)),
            "api": client.post("/api/v1/predict", data=files(NOT_AN_IMAGE))}, refusals.NO_MODEL.text()


def read_malformed(site: Site) -> tuple[Answers, str]:
    maybe = {"request_id": NEVER_GIVEN, "read": "maybe"}
    return {"page": post_with_csrf(site.analysing, "/reads", maybe),
            "api": site.analysing.post("/api/v1/reads", json=maybe)}, \
        refusals.READ_MALFORMED.text(problem=f"'read' must be one of {', '.join(READS)}.")


def unknown_analysis(site: Site) -> tuple[Answers, str]:
    read = {"request_id": NEVER_GIVEN, "read": "fractured"}
    return {"page": post_with_csrf(site.analysing, "/reads", read),
            "api": site.analysing.post("/api/v1/reads", json=read)}, \
        refusals.UNKNOWN_ANALYSIS.text(analysis_id=NEVER_GIVEN)


def reads_unavailable(site: Site) -> tuple[Answers, str]:
    client = site.without_model(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")
    read = {"request_id": NEVER_GIVEN, "read": "fractured"}
    return {"page": post_with_csrf(client, "/reads", read), "api": client.post("/api/v1/reads", json=read)}, \
        refusals.READS_UNAVAILABLE.text()


#: A story for every row of the table, by the row's name in ``fracture_web.refusals``.
STORIES: dict[str, Story] = {
    "UNREADABLE": unreadable, "BAD_OPERATING_POINT": bad_operating_point, "NO_FILE": no_file,
    "WRONG_FIELD": wrong_field, "MALFORMED_FORM": malformed_form, "BAD_HEATMAP": bad_heatmap,
    "EMPTY_BODY": empty_body, "ONE_AT_A_TIME": one_at_a_time,
    "STUDY_TOO_LARGE": study_too_large, "TOKEN_NEEDED": token_needed, "SIGN_IN_FIRST": sign_in_first,
    "WRONG_TOKEN": wrong_token, "EXPIRED_FORM": expired_form, "BAD_REQUEST": bad_request, "CROSS_SITE": cross_site,
    "NOT_FOUND": not_found, "NOT_ALLOWED": not_allowed, "UPLOAD_STALLED": upload_stalled, "TOO_LARGE": too_large,
    "NO_MODEL": no_model, "READ_MALFORMED": read_malformed, "UNKNOWN_ANALYSIS": unknown_analysis,
    "READS_UNAVAILABLE": reads_unavailable,
}
#: Each row by its name in the module.
ROWS = {name: row for name, row in vars(refusals).items() if isinstance(row, Refusal)}


def _error_of(call: Callable[[], object]) -> str:
    """The words of the domain exception ``call`` raises."""
    with pytest.raises(ValueError) as raised:
        call()
    return str(raised.value)


def refusal_counts() -> dict[str, float]:
    return {reason: REGISTRY.get_sample_value("fracture_refusals_total", {"reason": reason}) or 0.0
            for reason in metrics.REFUSAL_REASONS}


def check_answer(row: Refusal, surface: str, response, message: str) -> None:
    """The row's status and message, as JSON for the API or on the page with its form."""
    assert response.status_code == row.status
    if surface == "api":
        assert response.is_json and response.get_json() == {"error": message}
    else:
        page = response.get_data(as_text=True)
        assert response.mimetype == "text/html" and str(escape(message)) in page and "<form" in page
    for name, value in row.headers:
        assert response.headers[name] == value
    if row.body_unread:  # the rest of the body is not read: the connection closes after the answer
        assert response.headers["Connection"] == "close"


@pytest.fixture(scope="module")
def site(tiny_model_dir: Path, tmp_path_factory) -> Site:
    return Site(tiny_model_dir, f"sqlite:///{tmp_path_factory.mktemp('reads') / 'reads.sqlite3'}")


def test_every_row_of_the_table_has_a_story_below():
    assert set(ROWS) == set(STORIES) and len(ROWS) == len(refusals.TABLE)
    assert set(ROWS.values()) == set(refusals.TABLE)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_each_refusal_answers_its_status_and_message_counted_once_under_its_reason(site, name):
    row, story = ROWS[name], STORIES[name]
    before = refusal_counts()
    answers, message = story(site)
    after = refusal_counts()
    assert answers, "a row no request can reach"
    for surface, response in answers.items():
        check_answer(row, surface, response, message)
    grown = {reason: after[reason] - before[reason] for reason in after if after[reason] != before[reason]}
    assert grown == ({} if row.label is None else {row.label: len(answers)})


@pytest.mark.parametrize("kind", [*refusals.BY_EXCEPTION, ModelOutputError])
def test_each_domain_exception_a_view_raises_is_answered_by_its_row(kind: type[Exception], reads_url: str):
    words = "What went wrong with this upload, in the domain's words."

    def view():
        raise kind(words)
    app = create_app({"TESTING": True, "LOAD_MODEL": False, "DATABASE_URL": reads_url})
    app.add_url_rule("/raises", "raises", view)
    app.add_url_rule("/api/v1/raises", "api_raises", view)
    row, before = refusals.for_exception(kind(words)), refusal_counts()
    check_answer(row, "page", app.test_client().get("/raises"), words)
    check_answer(row, "api", app.test_client().get("/api/v1/raises"), words)
    assert refusal_counts()[row.label] - before[row.label] == 2


def test_an_unreadable_view_of_a_study_is_listed_with_the_words_of_the_refusal(site, sample_bytes):
    body = site.analysing.post("/api/v1/studies", data=files(sample_bytes, NOT_AN_IMAGE)).get_json()
    alone = site.analysing.post("/api/v1/predict", data=files(NOT_AN_IMAGE)).get_json()
    assert body["images"][1] == alone == {"error": _error_of(lambda: decode_image(NOT_AN_IMAGE))}


def test_a_file_beside_the_file_field_is_refused_not_left_unread(site, sample_bytes):
    body = files(sample_bytes) | files(sample_bytes, field="image")
    answer = site.analysing.post("/api/v1/studies", data=body)
    assert answer.status_code == 400 and answer.get_json() == {"error": refusals.WRONG_FIELD.text(field="image")}


def test_the_reasons_counted_are_those_dashboards_know():
    assert set(metrics.REFUSAL_REASONS) == DASHBOARD_REASONS
    with pytest.raises(ValueError):
        metrics.record_refusal("no such reason")


def test_the_views_answer_no_error_themselves():
    views = Path(refusals.__file__).parent / "web" / "views.py"
    assert not [node for node in ast.walk(ast.parse(views.read_text())) if isinstance(node, ast.Try)]


def test_the_refusals_made_before_the_body_is_read_close_the_connection():
    # no token, cross-site, too slow, too large: the server must not go on reading the body at the client's pace
    assert uploads.CLOSE_AFTER == {401, 403, 408, 413}

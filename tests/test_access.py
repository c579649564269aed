"""A site that sets an access token: the page asks for it once, the API wants it in every request,
and a request without it is turned away before its upload is read."""
from __future__ import annotations

import io

import pytest

from fracture_web import create_app
from helpers import csrf_token, post_form

TOKEN = "site-token-for-the-test-suite"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture()
def guarded(tiny_model_dir):
    return create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir), "API_TOKEN": TOKEN})


def upload(data: bytes) -> dict:
    return {"file": (io.BytesIO(data), "xray.jpg")}


def sign_in(client, token: str = TOKEN):
    return client.post("/sign-in", data={"token": token, "csrf_token": csrf_token(client)})


def test_the_page_asks_for_the_token_once_and_then_analyses(guarded, sample_bytes):
    client = guarded.test_client()
    page = client.get("/").get_data(as_text=True)
    assert 'name="token"' in page and 'name="file"' not in page
    refused = post_form(client, upload(sample_bytes))  # the form POST itself, CSRF token and all
    assert refused.status_code == 401 and "Sign in" in refused.get_data(as_text=True)
    assert "Probability of a fracture" not in refused.get_data(as_text=True)
    wrong = sign_in(client, "not-the-site-token-at-all")
    assert wrong.status_code == 401 and "not this site" in wrong.get_data(as_text=True)
    assert sign_in(client).status_code == 303
    assert TOKEN not in client.get_cookie("session").value  # a fingerprint, not the token
    result = post_form(client, upload(sample_bytes))
    assert result.status_code == 200 and "Probability of a fracture" in result.get_data(as_text=True)
    client.post("/sign-out", data={"csrf_token": csrf_token(client)})
    assert post_form(client, upload(sample_bytes)).status_code == 401


def test_signing_in_needs_the_pages_csrf_token(guarded):
    client = guarded.test_client()
    client.get("/")
    forged = client.post("/sign-in", data={"token": TOKEN})
    assert forged.status_code == 400 and "Reload the page" in forged.get_data(as_text=True)


def test_a_new_token_signs_every_browser_out(guarded, tiny_model_dir, sample_bytes):
    client = guarded.test_client()
    sign_in(client)
    cookie = client.get_cookie("session").value
    rotated = create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir), "API_TOKEN": TOKEN + "-rotated",
                          "SECRET_KEY": guarded.config["SECRET_KEY"]}).test_client()
    rotated.set_cookie("session", cookie)
    assert post_form(rotated, upload(sample_bytes)).status_code == 401


def test_the_api_wants_the_bearer_header_and_not_the_pages_cookie(guarded, sample_bytes):
    client = guarded.test_client()
    for path in ("/api/v1/predict", "/api/v1/studies"):
        missing = client.post(path, data=upload(sample_bytes))
        assert missing.status_code == 401 and "Bearer" in missing.get_json()["error"]
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        wrong = client.post(path, data=upload(sample_bytes), headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert client.post(path, data=upload(sample_bytes), headers=BEARER).status_code == 200
    sign_in(client)  # the API is exempt from the CSRF check: a signed-in cookie must not open it
    assert client.post("/api/v1/predict", data=upload(sample_bytes)).status_code == 401


def test_health_and_metrics_stay_open(guarded):
    client = guarded.test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200


class Unreadable(io.BytesIO):
    """A 31 MB request body that fails the test if anyone reads it."""

    def __init__(self) -> None:
        super().__init__(bytes(31 << 20))

    def read(self, *args):
        raise AssertionError("the body was read before the token was checked")

    read1 = readinto = readline = read


@pytest.mark.parametrize("path", ["/", "/api/v1/predict", "/api/v1/studies"])
def test_a_request_without_the_token_is_refused_before_its_body_is_read(guarded, path):
    response = guarded.test_client().post(path, input_stream=Unreadable(),
                                          content_type="multipart/form-data; boundary=b")
    assert response.status_code == 401
    assert response.headers["Connection"] == "close"  # the server need not read the 31 MB either


@pytest.mark.parametrize("origin", ["http://[::1", "http://[x]"])
def test_a_malformed_origin_header_is_refused_as_cross_site_not_a_500(origin):
    client = create_app({"TESTING": True, "LOAD_MODEL": False}).test_client()
    for path in ("/api/v1/predict", "/api/v1/reads", "/"):
        assert client.post(path, data=b"x", headers={"Origin": origin}).status_code == 403


def test_a_sign_in_form_too_large_for_any_token_is_told_it_is_not_the_token(guarded):
    client = guarded.test_client()
    answer = client.post("/sign-in", data={"token": "x" * 5000, "csrf_token": csrf_token(client)})
    assert answer.status_code == 401 and "not this site" in answer.get_data(as_text=True)

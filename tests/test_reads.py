"""A reader's story: every analysis the app gives comes with an id; the reader answers "fracture",
"no fracture" or "not sure" for it, from the result page in one click or from another system through
``POST /api/v1/reads``; the site keeps every read (a restart loses none, on SQLite or PostgreSQL), the
last one counts, nothing identifies a patient, and a database that cannot be reached never costs the
analysis itself."""
from __future__ import annotations

import io
import re
import sqlite3
from contextlib import nullcontext
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.dx_files import to_bytes
from bench.local_server import free_port
from dicom_files import PATIENT, radiograph_dataset
from fracture_web import create_app
from fracture_web.inference import Prediction
from fracture_web.reads.store import ReadStore, database_url
from fracture_web.web.reads import KEY
from helpers import SAMPLES, csrf_token, post_form, synthetic_xray
from servers import POSTGRES_BIN, postgres_server

TOKEN = "site-token-for-the-reads-test"


def make_app(url: str, **config):
    """The app with the shipped model, keeping its reads at ``url``."""
    return create_app({"TESTING": True, "DATABASE_URL": url} | config)


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'reads.sqlite3'}"


def radiograph(seed: int, crack: bool) -> bytes:
    return cv2.imencode(".png", synthetic_xray(np.random.default_rng(seed), crack))[1].tobytes()


def analyse(client, image: bytes, **kwargs) -> dict:
    answer = client.post("/api/v1/predict", data=image, content_type="image/png", **kwargs)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()


def send_read(client, request_id: str, read: str, headers: dict | None = None, **fields):
    return client.post("/api/v1/reads", json={"request_id": request_id, "read": read} | fields, headers=headers)


def close(app) -> None:
    app.extensions[KEY].dispose()


@pytest.fixture()
def app(tmp_path):
    app = make_app(sqlite_url(tmp_path))
    yield app
    close(app)


def test_an_answer_carries_the_id_its_read_is_sent_with_and_the_last_read_counts(app):
    client = app.test_client()
    answer = analyse(client, SAMPLES[0].read_bytes())  # a fractured hand, with a finding to confirm
    assert re.fullmatch(r"[0-9a-f]{32}", answer["request_id"]) and answer["stored"] is True and answer["findings"]
    first = send_read(client, answer["request_id"], "unsure", reader="R7")
    assert first.status_code == 200 and first.get_json()["read"] == "unsure"
    corrected = send_read(client, answer["request_id"], "fractured", reader="R7", findings_right=[1]).get_json()
    # The analysis as stored, read back by its id: the correction counts, the first read is kept.
    stored = client.get(f"/api/v1/analyses/{answer['request_id']}").get_json()
    assert stored == corrected
    assert stored["read"] == "fractured" and stored["reads_given"] == 2 and stored["findings_right"] == [1]
    assert stored["probability"] == answer["probability"] and stored["model_version"] == answer["model_version"]
    assert stored["operating_point"] == answer["operating_point"] and stored["findings"] == answer["findings"]


def test_each_view_of_a_study_gets_its_own_id_for_a_read(app):
    client = app.test_client()
    views = {"file": [(io.BytesIO(radiograph(seed, crack=seed == 2)), f"v{seed}.png") for seed in (2, 3)]}
    body = client.post("/api/v1/studies", data=views).get_json()
    ids = [image["request_id"] for image in body["images"]]
    assert len(set(ids)) == 2 and body["stored"] is True
    for request_id, read in zip(ids, ("fractured", "not_fractured")):
        assert send_read(client, request_id, read).status_code == 200
    assert [client.get(f"/api/v1/analyses/{i}").get_json()["read"] for i in ids] == ["fractured", "not_fractured"]


def test_each_view_of_a_study_on_the_page_has_its_own_read_form(app):
    client = app.test_client()
    views = {"file": [(io.BytesIO(radiograph(seed, crack=seed == 7)), f"v{seed}.png") for seed in (7, 8)]}
    page = post_form(client, views).get_data(as_text=True)
    ids = re.findall(r'name="request_id" value="([0-9a-f]{32}-[0-9])"', page)
    assert len(ids) == 2 and "Your own read of view 2" in page
    saved = client.post("/reads", data={"csrf_token": csrf_token(client), "request_id": ids[1], "read": "unsure"})
    assert saved.status_code == 200
    assert [client.get(f"/api/v1/analyses/{i}").get_json()["read"] for i in ids] == [None, "unsure"]


@pytest.mark.parametrize("body, status, words", [
    ({"request_id": "0" * 32, "read": "fractured"}, 404, "No analysis is stored under the id"),
    ({"request_id": "0" * 32, "read": "maybe"}, 400, "'read' must be one of fractured, not_fractured, unsure"),
    ({"read": "fractured"}, 400, "'request_id' must be the request_id of an analysis"),
    ({"request_id": "../etc/passwd", "read": "fractured"}, 400, "'request_id' must be"),
    ({"request_id": "0" * 32, "read": "fractured", "reader": "Dr Jane Doe"}, 400, "never a name"),
    ({"request_id": "0" * 32, "read": "fractured", "findings_right": ["first"]}, 400, "'findings_right'"),
    (["fractured"], 400, "send a JSON object"),
])
def test_a_read_for_an_unknown_id_is_404_and_a_malformed_one_400(app, body, status, words):
    answer = app.test_client().post("/api/v1/reads", json=body)
    assert answer.status_code == status and words in answer.get_json()["error"]


def test_a_read_that_is_not_json_is_400_saying_how_to_send_it(app):
    client = app.test_client()
    answer = client.post("/api/v1/reads", data=b'{"request_id": "x", "read": "unsure"}', content_type="text/plain")
    assert answer.status_code == 400 and "'Content-Type: application/json'" in answer.get_json()["error"]
    answer = client.post("/api/v1/reads", data=b"fractured", content_type="application/json")
    assert answer.status_code == 400 and "send a JSON object" in answer.get_json()["error"]


@pytest.mark.parametrize("read", ["not_fractured", "unsure"])
def test_a_read_that_is_not_fractured_cannot_confirm_a_finding(app, read):
    client = app.test_client()
    answer = analyse(client, SAMPLES[0].read_bytes())
    refused = send_read(client, answer["request_id"], read, findings_right=[1])
    assert refused.status_code == 400 and "goes with the read 'fractured' only" in refused.get_json()["error"]
    # On the page, boxes ticked before "No fracture" or "Not sure" was pressed are left out of the read.
    saved = client.post("/reads", data={"csrf_token": csrf_token(client), "request_id": answer["request_id"],
                                        "read": read, "right": ["1"]}, headers={"Accept": "application/json"})
    assert saved.status_code == 200 and saved.get_json()["read"] == read and saved.get_json()["findings_right"] is None


def test_an_analysis_asked_for_by_an_id_of_the_wrong_form_is_400_without_echoing_it(app):
    answer = app.test_client().get("/api/v1/analyses/" + "x" * 10_000)
    assert answer.status_code == 400 and "x" * 100 not in answer.get_data(as_text=True)


def test_the_result_page_takes_the_read_in_one_click_without_javascript(app):
    client = app.test_client()
    page = post_form(client, {"file": (open(SAMPLES[0], "rb"), "x.jpg")}).get_data(as_text=True)
    assert "Your own read of this image" in page
    request_id = re.search(r'name="request_id" value="([0-9a-f]{32})"', page).group(1)
    boxes = re.findall(r'name="right" value="(\d+)"', page)
    saved = client.post("/reads", data={"csrf_token": csrf_token(client), "request_id": request_id,
                                        "read": "fractured", "right": boxes[:1], "reader": "R2"})
    assert saved.status_code == 200 and "Your read was recorded" in saved.get_data(as_text=True)
    stored = client.get(f"/api/v1/analyses/{request_id}").get_json()
    assert stored["read"] == "fractured" and stored["reader"] == "R2"
    assert stored["findings_right"] == ([int(boxes[0])] if boxes else None)
    # The form is a form like the upload: without its CSRF token it is refused.
    assert client.post("/reads", data={"request_id": request_id, "read": "unsure"}).status_code == 400


@pytest.mark.parametrize("right", ["\u00b2", "\u0663", "0", "1.0", "-1"])
def test_the_read_form_refuses_a_finding_number_that_is_not_one(app, right):
    client = app.test_client()
    request_id = analyse(client, radiograph(3, crack=True))["request_id"]
    answer = client.post("/reads", data={"csrf_token": csrf_token(client), "request_id": request_id,
                                         "read": "fractured", "right": right}, headers={"Accept": "application/json"})
    assert answer.status_code == 400 and "numbered 1, 2" in answer.get_json()["error"]
    assert client.get(f"/api/v1/analyses/{request_id}").get_json()["read"] is None


def test_a_read_cannot_confirm_a_finding_the_analysis_did_not_show(app):
    client = app.test_client()
    answer = analyse(client, radiograph(3, crack=True))
    shown = len(answer["findings"])
    refused = send_read(client, answer["request_id"], "fractured", findings_right=[shown + 1])
    assert refused.status_code == 400 and f"showed {shown} finding" in refused.get_json()["error"]
    assert client.get(f"/api/v1/analyses/{answer['request_id']}").get_json()["reads_given"] == 0


def test_with_a_token_set_a_read_and_the_site_page_need_it(tmp_path):
    app = make_app(sqlite_url(tmp_path), API_TOKEN=TOKEN)
    client, bearer = app.test_client(), {"Authorization": f"Bearer {TOKEN}"}
    answer = analyse(client, radiograph(4, crack=False), headers=bearer)
    assert send_read(client, answer["request_id"], "not_fractured").status_code == 401
    assert client.get(f"/api/v1/analyses/{answer['request_id']}").status_code == 401
    assert client.get("/site").status_code == 401 and client.get("/site/reads.csv").status_code == 401
    assert send_read(client, answer["request_id"], "not_fractured", headers=bearer).status_code == 200
    assert client.get("/site", headers=bearer).status_code == 200
    close(app)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_restart_keeps_every_read(database, tmp_path):
    if database == "postgresql":
        assert POSTGRES_BIN is not None, "Debian's postgresql is not installed (make test installs it)"
        server = postgres_server()
    else:
        server = nullcontext(sqlite_url(tmp_path))
    with server as url:
        before = make_app(url)
        client = before.test_client()
        ids = [analyse(client, radiograph(seed, crack=seed % 2 == 0))["request_id"] for seed in range(4)]
        for request_id, read in zip(ids, ("fractured", "not_fractured", "unsure", "fractured")):
            send_read(client, request_id, read)
        send_read(client, ids[2], "not_fractured")  # a correction
        kept = [client.get(f"/api/v1/analyses/{i}").get_json() for i in ids]
        close(before)
        after = make_app(url)  # a restart: a new process would open the same database
        assert [after.test_client().get(f"/api/v1/analyses/{i}").get_json() for i in ids] == kept
        assert [row["read"] for row in kept] == ["fractured", "not_fractured", "not_fractured", "fractured"]
        assert kept[2]["reads_given"] == 2
        close(after)
        # The node sends an image again under the same id: its analysis is replaced, its read kept.
        store = ReadStore.open(database_url(url, tmp_path))
        again = Prediction("fractured", True, 0.9, 0.5, "balanced", "v2", np.zeros((1, 1)))
        store.add_analysis(ids[1], again, {"body_part": "HAND"}, source="dicom")
        replaced = store.get(ids[1])
        assert (replaced.probability, replaced.model_version, replaced.source, replaced.body_part) == (0.9, "v2", "dicom", "HAND")
        assert (replaced.read, replaced.reads_given) == ("not_fractured", 1) and len(store.all()) == 4
        store.dispose()


def test_with_the_database_down_the_analysis_answers_and_the_read_says_it_was_not_saved(caplog):
    app = make_app(f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")  # nothing listens there
    client = app.test_client()
    answer = analyse(client, radiograph(5, crack=True))
    assert answer["stored"] is False and answer["label"] in ("fractured", "not_fractured")
    page = post_form(client, {"file": (open(SAMPLES[0], "rb"), "x.jpg")})
    assert page.status_code == 200 and "a read for it cannot be saved" in page.get_data(as_text=True)
    refused = send_read(client, answer["request_id"], "fractured")
    assert refused.status_code == 503 and "could not be saved" in refused.get_json()["error"]
    site = client.get("/site")
    assert site.status_code == 503 and "cannot be reached" in site.get_data(as_text=True)
    assert "reads will not be kept until the database answers" in caplog.text
    assert "Traceback" not in caplog.text


def test_nothing_that_identifies_a_patient_is_stored(app, tmp_path):
    client = app.test_client()
    pixels = synthetic_xray(np.random.default_rng(6), crack=True)
    dicom = to_bytes(radiograph_dataset(pixels, BodyPartExamined="HAND", ViewPosition="PA"))
    answer = client.post("/api/v1/predict", data=dicom, content_type="application/dicom").get_json()
    send_read(client, answer["request_id"], "fractured", reader="R1")
    close(app)
    stored = sqlite3.connect(tmp_path / "reads.sqlite3")
    assert stored.execute("SELECT body_part, view FROM analyses").fetchall() == [("HAND", "PA")]
    dump = "\n".join(stored.iterdump())
    stored.close()
    for value in PATIENT.values():
        assert value not in dump
    assert "Doe" not in dump


def test_several_workers_share_one_sqlite_file_without_losing_a_read(tmp_path):
    # Two gunicorn workers start at once on a fresh file: each migrates (in turn) and writes at the same time.
    from concurrent.futures import ThreadPoolExecutor

    url = sqlite_url(tmp_path)
    prediction = Prediction("fractured", True, 0.8, 0.5, "balanced", "v1", np.zeros((1, 1)))

    def worker(number: int) -> None:
        store = ReadStore.open(url)
        for i in range(40):
            analysis_id = f"{number:016x}{i:016x}"
            store.add_analysis(analysis_id, prediction, {})
            store.add_read(analysis_id, "fractured")
        store.dispose()

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(worker, range(2)))
    store = ReadStore.open(url)
    assert len(store.all()) == 80 and all(row.read == "fractured" for row in store.all())
    store.dispose()


def test_operations_can_migrate_the_database_before_starting_the_workers(tmp_path):
    app = create_app({"TESTING": True, "LOAD_MODEL": False, "DATABASE_URL": sqlite_url(tmp_path)})
    done = app.test_cli_runner().invoke(args=["reads-upgrade"])
    assert done.exit_code == 0 and "The reads' database (sqlite) is up to date." in done.output
    close(app)
    down = create_app({"TESTING": True, "LOAD_MODEL": False,
                       "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"})
    failed = down.test_cli_runner().invoke(args=["reads-upgrade"])
    assert failed.exit_code == 1 and "the reads' database is unavailable (OperationalError)" in failed.output


def test_a_reader_code_starts_with_a_letter_or_digit(app):
    # "-dr1" went into the CSV as "'-dr1" (escaped as a formula), unlike the API's "-dr1".
    answer = send_read(app.test_client(), "0" * 32, "unsure", reader="-dr1")
    assert answer.status_code == 400 and "starting with a letter or digit" in answer.get_json()["error"]

"""Operations' story: /metrics counts what the clinicians did, and the drift signal speaks up once
when the share of fractured verdicts leaves the range validation leads one to expect."""
from __future__ import annotations

import io
import logging
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from helpers import SAMPLES, post_form, running_gunicorn
from bench.loadgen import multipart
from fracture_web import create_app, metrics
from fracture_web.analysis import OUT_OF_SCOPE
from fracture_web.timings import STAGES

NOT_AN_IMAGE = b"this is a letter, not a radiograph"

Samples = dict[tuple[str, tuple], float]

#: A second radiograph, for a study of two views (the same file twice is read once).
OTHER_VIEW = SAMPLES[1].read_bytes()


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text page, by (name, sorted labels)."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 for a series not written yet."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.content_type.startswith("text/plain")
    return parse(response.get_data(as_text=True))


def files(*contents: bytes) -> dict:
    return {"file": [(io.BytesIO(data), f"view{i}.jpg") for i, data in enumerate(contents, start=1)]}


def test_metrics_count_the_predictions_refusals_and_studies_a_test_made(client, app, sample_bytes):
    before = scrape(client)
    answers = [client.post("/api/v1/predict", data=files(sample_bytes)).get_json() for _ in range(2)]
    assert post_form(client, files(sample_bytes)).status_code == 200
    assert client.post("/api/v1/predict", data=files(NOT_AN_IMAGE)).status_code == 400
    assert client.post("/api/v1/studies", data=files(sample_bytes, OTHER_VIEW)).status_code == 200
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("fracture_requests_total", endpoint="predict") == 3
    assert grew("fracture_requests_total", endpoint="page") == 1
    assert grew("fracture_requests_total", endpoint="studies") == 1
    assert grew("fracture_refusals_total", reason="unreadable") == 1
    # five images analysed, all the same radiograph: the same verdict and scope five times
    label, point = answers[0]["label"], app.extensions["fracture_model"].default_operating_point
    assert grew("fracture_verdicts_total", label=label, operating_point=point) == 5
    assert grew("fracture_out_of_scope_warnings_total") == (5 if OUT_OF_SCOPE in answers[0]["warnings"] else 0)
    # one latency per analysed request, by endpoint; the refused one took no analysis
    assert grew("fracture_analysis_seconds_count", endpoint="predict") == 2
    assert grew("fracture_analysis_seconds_count", endpoint="page") == 1
    assert grew("fracture_analysis_seconds_count", endpoint="studies") == 1
    assert grew("fracture_analysis_seconds_sum", endpoint="predict") > 0


def test_each_refusal_is_counted_under_its_reason(client, sample_bytes):
    before = scrape(client)
    client.post("/api/v1/predict", data={"upload": (io.BytesIO(sample_bytes), "x.jpg")})
    client.post("/api/v1/predict", data=files(sample_bytes, OTHER_VIEW))
    client.post("/api/v1/predict?operating_point=lucky", data=files(sample_bytes))
    client.post("/api/v1/predict", data=files(sample_bytes), headers={"Sec-Fetch-Site": "cross-site"})
    client.post("/", data=files(sample_bytes), content_type="multipart/form-data")  # no CSRF token
    after = scrape(client)
    for reason in ("no_file", "too_many_files", "bad_operating_point", "cross_site", "expired_form"):
        assert value(after, "fracture_refusals_total", reason=reason) - \
            value(before, "fracture_refusals_total", reason=reason) == 1, reason


def test_refusals_before_the_view_are_counted_too(sample_bytes):
    client = create_app({"TESTING": True, "LOAD_MODEL": False, "MAX_CONTENT_LENGTH": 1024}).test_client()
    before = scrape(client)
    assert client.post("/api/v1/predict", data=files(sample_bytes)).status_code == 413
    assert client.post("/api/v1/predict", data=files(b"tiny")).status_code == 503
    after = scrape(client)
    assert value(after, "fracture_requests_total", endpoint="predict") - \
        value(before, "fracture_requests_total", endpoint="predict") == 2
    for reason in ("too_large", "no_model"):
        assert value(after, "fracture_refusals_total", reason=reason) - \
            value(before, "fracture_refusals_total", reason=reason) == 1, reason


def test_the_api_token_refusal_is_counted(tiny_model_dir, sample_bytes):
    client = create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir), "API_TOKEN": "s3cret-token-for-tests"}).test_client()
    before = value(scrape(client), "fracture_refusals_total", reason="unauthorised")
    assert client.post("/api/v1/studies", data=files(sample_bytes)).status_code == 401
    assert value(scrape(client), "fracture_refusals_total", reason="unauthorised") - before == 1


@pytest.mark.parametrize("setting", [{"METRICS": "off"}, {"METRICS": False}])
def test_the_metrics_page_can_be_turned_off(setting):
    client = create_app({"TESTING": True, "LOAD_MODEL": False} | setting).test_client()
    assert client.get("/metrics").status_code == 404


def test_metrics_off_from_the_environment(monkeypatch):
    monkeypatch.setenv("FRACTURE_METRICS", "off")
    assert create_app({"TESTING": True, "LOAD_MODEL": False}).test_client().get("/metrics").status_code == 404


def test_the_drift_gauge_follows_the_last_n_verdicts_and_warns_once_per_excursion(caplog):
    drift = metrics.DriftMonitor(window=4, low=0.25, high=0.5, threshold=0.5)
    shares, warnings_after = [], []
    with caplog.at_level(logging.INFO, logger="fracture_web.metrics"):
        # a partial window never warns; then 25%, 50% (in range), 75%, 100% (out), 50% (back), 0% (out again)
        for fractured in (True, False, False, False, True, True, True, True, False, False, False, False):
            shares.append(drift.add(fractured))
            assert REGISTRY.get_sample_value("fracture_fractured_share_recent") == shares[-1]
            warnings_after.append(sum(record.levelno == logging.WARNING for record in caplog.records))
    assert shares == [1, 0.5, 1 / 3, 0.25, 0.25, 0.5, 0.75, 1, 0.75, 0.5, 0.25, 0]
    assert warnings_after == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2]
    warning = next(record for record in caplog.records if record.levelno == logging.WARNING)
    assert warning.getMessage().startswith("drift: 75.0% fractured verdicts over the last 4 images, "
                                           "expected 25.0% to 50.0%")
    assert any("back in its expected range" in record.getMessage() for record in caplog.records)
    assert REGISTRY.get_sample_value("fracture_fractured_share_expected_low") == 0.25
    assert REGISTRY.get_sample_value("fracture_fractured_share_expected_high") == 0.5


def test_the_expected_range_comes_from_the_validation_split():
    counts = {"tp": 69, "fp": 21, "tn": 405, "fn": 20}  # the balanced point of a shipped model: 90 of 515 flagged
    low, high = metrics.expected_share(counts, window=200)
    assert low < 90 / 515 < high
    assert (low, high) == pytest.approx((0.093, 0.256), abs=0.002)
    wide_low, wide_high = metrics.expected_share(counts, window=20)
    assert wide_low < low and wide_high > high  # fewer images, a wider range


def test_the_app_watches_drift_at_its_default_operating_point(tiny_model_dir):
    app = create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir), "METRICS_DRIFT_WINDOW": 50})
    model, drift = app.extensions["fracture_model"], app.extensions["fracture_drift"]
    counts = model.metadata["operating_points"][model.default_operating_point]
    assert (drift.window, drift.threshold) == (50, model.thresholds[model.default_operating_point])
    assert (drift.low, drift.high) == metrics.expected_share(counts, 50)
    page = scrape(app.test_client())
    assert value(page, "fracture_fractured_share_expected_low") == pytest.approx(drift.low)
    assert value(page, "fracture_fractured_share_expected_high") == pytest.approx(drift.high)


def fetch(url: str, body: bytes | None = None, content_type: str = "") -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type} if body else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_gunicorn_workers_share_their_counts(tiny_model_dir, sample_bytes, tmp_path: Path):
    shared = tmp_path / "metrics"
    shared.mkdir()
    (shared / "counter_1.db").write_bytes(b"left over from the last run")  # on_starting empties the folder
    image, bad = multipart(sample_bytes, "x.jpg"), multipart(NOT_AN_IMAGE, "x.jpg")
    with running_gunicorn(FRACTURE_MODEL_DIR=str(tiny_model_dir), WEB_CONCURRENCY="2", GUNICORN_THREADS="2",
                          PROMETHEUS_MULTIPROC_DIR=str(shared)) as (url, _port):
        with ThreadPoolExecutor(4) as pool:  # concurrent, so both workers take some
            statuses = list(pool.map(lambda body: fetch(f"{url}/api/v1/predict", *body)[0], [image] * 5 + [bad]))
        assert statuses == [200] * 5 + [400]
        pages = [fetch(f"{url}/metrics") for _ in range(6)]  # whichever worker answers, the same sums
    for status, text in pages:
        samples = parse(text.decode())
        assert status == 200
        assert value(samples, "fracture_requests_total", endpoint="predict") == 6
        assert value(samples, "fracture_refusals_total", reason="unreadable") == 1
        assert value(samples, "fracture_analysis_seconds_count", endpoint="predict") == 5
        assert sum(v for (name, _), v in samples.items() if name == "fracture_verdicts_total") == 5
    writers = {path.stem.rsplit("_", 1)[1] for path in shared.glob("*.db")}
    assert len(writers) == 2 and "1" not in writers  # two workers wrote there; the stale file is gone


def stage_counts(before: Samples, after: Samples) -> dict[str, float]:
    """How many times each stage was timed between two scrapes."""
    return {stage: value(after, "fracture_stage_seconds_count", stage=stage)
            - value(before, "fracture_stage_seconds_count", stage=stage) for stage in STAGES}


def test_one_answer_with_the_heatmap_shows_where_its_time_went(client, sample_bytes):
    before = scrape(client)
    assert client.post("/api/v1/predict?heatmap=1", data=files(sample_bytes)).status_code == 200
    after = scrape(client)
    assert stage_counts(before, after) == {stage: 1 for stage in STAGES}
    for stage in STAGES:
        assert value(after, "fracture_stage_seconds_sum", stage=stage) > \
            value(before, "fracture_stage_seconds_sum", stage=stage), stage
    # from half a millisecond (a JSON verdict) to two seconds, then the rest
    bounds = sorted(float(dict(labels)["le"]) for name, labels in after
                    if name == "fracture_stage_seconds_bucket" and dict(labels)["stage"] == "decode")
    assert bounds[0] == 0.0005 and bounds[-2:] == [2.0, float("inf")]


def test_an_answer_without_the_heatmap_draws_nothing_and_encodes_only_its_verdict(client, sample_bytes):
    before = scrape(client)
    assert client.post("/api/v1/predict", data=files(sample_bytes)).status_code == 200
    assert stage_counts(before, scrape(client)) == {"decode": 1, "model": 1, "findings": 1, "render": 0, "encode": 1}


def test_the_page_and_a_study_time_each_image_and_encode_each_answer_once(client, sample_bytes):
    before = scrape(client)
    assert post_form(client, files(sample_bytes)).status_code == 200
    assert stage_counts(before, scrape(client)) == {"decode": 1, "model": 1, "findings": 1, "render": 1, "encode": 1}
    before = scrape(client)
    assert client.post("/api/v1/studies?heatmap=1", data=files(sample_bytes, OTHER_VIEW)).status_code == 200
    assert stage_counts(before, scrape(client)) == {"decode": 2, "model": 2, "findings": 2, "render": 2, "encode": 1}


def test_an_unreadable_upload_times_no_stage(client):
    before = scrape(client)
    assert client.post("/api/v1/predict?heatmap=1", data=files(NOT_AN_IMAGE)).status_code == 400
    assert stage_counts(before, scrape(client)) == {stage: 0 for stage in STAGES}

"""Hospital IT's story: every FRACTURE_* setting is read by its kind, a malformed one stops start-up
with a message naming it, and no word switches a security setting off."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fracture_web import create_app
from fracture_web.config import SETTINGS, SettingsError, from_environ
from helpers import throwaway_reads

TOKEN = "k3y-for-the-test-suite-0123"


def start(**env: str):
    return create_app({"TESTING": True, "LOAD_MODEL": False}, environ=throwaway_reads({f"FRACTURE_{k}": v for k, v in env.items()}))


@pytest.mark.parametrize("word", ["", "0", "false", "False", "null", "none", "off", "true", "no", " "])
def test_an_api_token_that_looks_like_a_switch_is_refused_at_start_up(word):
    # Flask's JSON reading made 0/false/null/"" a "no token" (API open) and true a token never matched.
    with pytest.raises(SettingsError, match="FRACTURE_API_TOKEN") as refused:
        start(API_TOKEN=word)
    assert "unset the variable" in str(refused.value)


@pytest.mark.parametrize("name", ["API_TOKEN", "SECRET_KEY"])
def test_short_secrets_are_refused_with_a_way_to_make_a_good_one(name):
    with pytest.raises(SettingsError, match=f"FRACTURE_{name} must be at least 16 characters") as refused:
        start(**{name: "12345"})  # SECRET_KEY=12345 used to become the number 12345: every page raised
    assert "secrets.token_urlsafe" in str(refused.value)
    assert start(**{name: TOKEN}).config[name] == TOKEN


@pytest.mark.parametrize("text, size", [("32MB", 32_000_000), ("32MiB", 32 << 20), ("1048576", 1 << 20),
                                        ("64 kib", 64 << 10)])
def test_sizes_take_units_or_plain_bytes(text, size):
    assert start(MAX_CONTENT_LENGTH=text).config["MAX_CONTENT_LENGTH"] == size


@pytest.mark.parametrize("text, on", [("off", False), ("false", False), ("0", False), ("no", False),
                                      ("on", True), ("TRUE", True), ("1", True), ("yes", True)])
def test_switches_take_the_usual_words(text, on):
    client = start(METRICS=text).test_client()
    assert client.get("/metrics").status_code == (200 if on else 404)


@pytest.mark.parametrize("name, value", [("METRICS", "disabled"), ("MAX_CONTENT_LENGTH", "32 apples"),
                                         ("MAX_CONTENT_LENGTH", "0"), ("UPLOAD_TIMEOUT", "soon"),
                                         ("UPLOAD_TIMEOUT", "-1"), ("MAX_STUDY_IMAGES", "2.5"),
                                         ("BACKEND", "cuda"), ("SESSION_COOKIE_SECURE", "maybe")])
def test_a_malformed_value_stops_start_up_naming_the_variable(name, value):
    # METRICS=disabled left the metrics on; MAX_CONTENT_LENGTH=32MB answered 500 to every POST.
    with pytest.raises(SettingsError, match=f"^FRACTURE_{name} "):
        start(**{name: value})


@pytest.mark.parametrize("name, value", [
    ("MAX_STUDY_IMAGES", "100"),  # the reads of a study's 100th file could never be recorded
    ("MAX_STUDY_IMAGES", "²"), ("MAX_STUDY_IMAGES", "٣"), ("MAX_STUDY_IMAGES", "9" * 5000),
    ("THREADS", "99999999999999999999"),  # crashed LiteRT with a traceback
    ("API_TOKEN", "café-token-0123456789"), ("API_TOKEN", "abcdefghijklmnop\x01"),  # no HTTP header carries them
    ("DATABASE_URL", "postgresql://user:pw@host:5432x/db"), ("DATABASE_URL", "sqlite://relative.db"),
    ("DATABASE_URL", "sqlite:///"), ("AUDIT_LOG", "/nonexistent/folder/audit.log")])
def test_values_that_crashed_start_up_or_could_never_work_stop_it_naming_the_variable(name, value):
    with pytest.raises(SettingsError, match=f"^FRACTURE_{name} ") as refused:
        start(**{name: value})
    assert "pw@" not in str(refused.value)  # a database password never reaches the message


@pytest.mark.parametrize("value", ["0", "00", "0KiB"])
def test_no_minimum_upload_rate_may_be_written_any_way(value):
    assert start(UPLOAD_MIN_RATE=value).config["UPLOAD_MIN_RATE"] == 0


def test_the_settings_arrive_typed_in_the_apps_config():
    config = start(UPLOAD_TIMEOUT="2.5", THREADS="3", BACKEND="LiteRT", OPERATING_POINT="", METRICS_DRIFT_WINDOW="50").config
    assert (config["UPLOAD_TIMEOUT"], config["THREADS"], config["BACKEND"]) == (2.5, 3, "litert")
    assert (config["OPERATING_POINT"], config["METRICS_DRIFT_WINDOW"]) == (None, 50)


def test_values_from_an_instance_config_or_the_tests_are_checked_too():
    with pytest.raises(SettingsError, match="FRACTURE_API_TOKEN"):
        create_app({"TESTING": True, "LOAD_MODEL": False, "API_TOKEN": "false"})
    assert create_app({"TESTING": True, "LOAD_MODEL": False, "METRICS": "off"}).config["METRICS"] is False


def test_a_misspelt_variable_is_named_in_the_log(caplog):
    start(API_TOKN=TOKEN)
    assert "FRACTURE_API_TOKN is not a setting" in caplog.text
    assert TOKEN not in caplog.text


def test_another_process_can_read_the_same_table():
    table = [setting for setting in SETTINGS if setting.name in ("MODEL_DIR", "THREADS")]
    assert from_environ({"FRACTURE_THREADS": "2", "FRACTURE_API_TOKEN": "false"}, table) == {"THREADS": 2}
    assert all(setting.description for setting in SETTINGS)


def test_gunicorn_stops_with_one_line_for_an_operating_point_the_model_lacks(tiny_model_dir, tmp_path):
    # It exited with a traceback, and gunicorn would have restarted the worker for ever.
    env = os.environ | {"FRACTURE_MODEL_DIR": str(tiny_model_dir), "FRACTURE_OPERATING_POINT": "bogus",
                        "FRACTURE_DATABASE_URL": f"sqlite:///{tmp_path / 'reads.sqlite3'}"}
    done = subprocess.run([sys.executable, "-c", "import fracture_web.wsgi"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 3  # gunicorn's boot error: it stops instead of restarting workers
    assert "cannot start: Unknown operating point 'bogus'" in done.stderr and "Traceback" not in done.stderr


def test_a_database_password_with_a_slash_is_taken_as_the_database_library_reads_it():
    url = "postgresql://app:Xk9/tQ+7wZ==@db.internal:5432/reads"  # generated passwords hold '/' and '+'
    assert from_environ({"FRACTURE_DATABASE_URL": url}, [s for s in SETTINGS if s.name == "DATABASE_URL"]) == \
        {"DATABASE_URL": url}

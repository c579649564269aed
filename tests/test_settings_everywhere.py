"""Hospital IT's story, second part: one settings object for every process. The web app, the DICOM
node, its workers and the command lines read the same FRACTURE_* variables once, by the same kinds,
from one table, the one the docs show; nothing else in the product reads the environment."""
from __future__ import annotations

import ast
import logging
import re
from pathlib import Path

import pytest

from fracture_web import create_app
from fracture_web.config import SETTINGS, Settings, SettingsError
from fracture_web.config.docs import markdown
from fracture_web.dicom_node import server, worker
from fracture_web.dicom_node.config import NodeConfigError, from_environment, node_config
from fracture_web.inference import load_model
from helpers import ROOT, run_script, throwaway_reads

#: What the docs write like a variable without being one: the node's default AE title, typos shown as such.
NOT_VARIABLES = {"FRACTURE_AI", "FRACTURE_API_TOKN", "FRACTURE_DICOM_DEST_HOTS"}
PACS = {"FRACTURE_DICOM_DEST_HOST": "pacs.local", "FRACTURE_DICOM_DEST_AE_TITLE": "PACS"}
#: The one user script that reads the environment: it hands a copy without pip's variables to the
#: installer it checks (a process's environment, not a setting).
LAB = {"offline_install_check.py"}


@pytest.mark.parametrize("name, value", [("DICOM_PORT", "eleven"), ("DICOM_DEST_PORT", "70000"),
                                         ("DICOM_IDLE_SECONDS", "0"), ("DICOM_MAX_ASSOCIATIONS", "-1"),
                                         ("DICOM_AE_TITLE", "A_TITLE_OVER_16_CHARS"), ("DICOM_METRICS_PORT", "x"),
                                         ("DICOM_ALLOWED_HOSTS", "10.0.0.0/8, the-ward"), ("THREADS", "two"),
                                         ("BACKEND", "cuda"), ("BROKER_VISIBILITY_TIMEOUT", "soon"),
                                         ("DICOM_KEEP_STUDIES_DAYS", "a week"), ("DICOM_RETRIES", "0"),
                                         # an empty list would let any host or AE title in
                                         ("DICOM_ALLOWED_HOSTS", ","), ("DICOM_ALLOWED_AE_TITLES", " ")])
def test_a_malformed_node_setting_stops_the_node_naming_the_variable(name, value, caplog):
    # The node parsed its own variables: "A FRACTURE_DICOM_* number or address is malformed: invalid
    # literal for int()", naming none; FRACTURE_BACKEND=cuda went unchecked until the model loaded.
    env = PACS | {f"FRACTURE_{name}": value}
    with pytest.raises(NodeConfigError, match=f"^FRACTURE_{name} "):
        from_environment(env)
    with caplog.at_level(logging.ERROR):
        assert server.main(env) == 2 and worker.main(env) == 2
    assert f"the DICOM node cannot start: FRACTURE_{name} " in caplog.text
    assert f"the worker cannot start: FRACTURE_{name} " in caplog.text


def test_a_misspelt_node_variable_is_named_by_the_node_and_by_the_web_app(caplog):
    # The web app passed over every FRACTURE_DICOM_* name, and the node never looked for typos.
    env = {"FRACTURE_DICOM_DEST_HOTS": "pacs.local", "FRACTURE_DICOM_DEST_AE_TITLE": "PACS"}
    with caplog.at_level(logging.WARNING):
        assert server.main(env) == 2  # no destination: the typo is why
        create_app({"TESTING": True, "LOAD_MODEL": False}, environ=throwaway_reads(env))
    assert caplog.text.count("FRACTURE_DICOM_DEST_HOTS is not a setting") == 2


def test_one_read_of_the_environment_serves_the_web_app_and_the_node(tmp_path):
    settings = Settings.from_environ(throwaway_reads(PACS) | {"FRACTURE_THREADS": "2", "FRACTURE_BACKEND": "LiteRT",
                                             "FRACTURE_DICOM_QUEUE_DIR": str(tmp_path), "FRACTURE_API_TOKN": "x"})
    assert settings.unknown == ("FRACTURE_API_TOKN",)
    app = create_app({"TESTING": True, "LOAD_MODEL": False}, environ={"FRACTURE_THREADS": "7"}, settings=settings)
    config = node_config(settings)
    assert (app.config["THREADS"], app.config["BACKEND"]) == (config.threads, config.backend) == (2, "litert")
    assert config.queue_dir == tmp_path and "DICOM_QUEUE_DIR" not in app.config  # each takes what it reads


def test_the_node_and_its_workers_keep_the_drift_window_of_the_setting(tmp_path):
    # scp.DRIFT_WINDOW was the table's default: FRACTURE_METRICS_DRIFT_WINDOW=50 still gave 200.
    env = PACS | {"FRACTURE_METRICS_DRIFT_WINDOW": "50", "FRACTURE_DICOM_QUEUE_DIR": str(tmp_path),
                  "FRACTURE_MODEL_DIR": str(ROOT / "model"), "FRACTURE_BACKEND": "litert"}
    config = from_environment(env)
    model = load_model(config.model_dir, backend=config.backend)
    assert server.Node(config, model).drift.window == 50
    behind_a_broker = from_environment(env | {"FRACTURE_BROKER_URL": "redis://127.0.0.1:1/0"})
    assert worker.worker_app(behind_a_broker).context.drift.window == 50
    assert from_environment(PACS).drift_window == 200


def test_predict_help_shows_the_real_defaults(monkeypatch):
    # It said "default: $FRACTURE_BACKEND or tensorflow" while the default was auto.
    monkeypatch.delenv("FRACTURE_BACKEND", raising=False)
    shown = " ".join(run_script("predict.py", "--help").stdout.split())
    assert "(default: auto)" in shown and "tensorflow)" not in shown
    monkeypatch.setenv("FRACTURE_BACKEND", "litert")
    assert "(default: litert)" in " ".join(run_script("predict.py", "--help").stdout.split())
    monkeypatch.setenv("FRACTURE_BACKEND", "cuda")
    refused = run_script("predict.py", "--help")
    assert refused.returncode == 2 and "FRACTURE_BACKEND takes one of auto, tensorflow, litert" in refused.stderr


def reads_environment(path: Path) -> list[str]:
    """Where a module reads the process's environment (os.environ, os.getenv, from os import environ)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "environb", "getenv", "getenvb") \
                and isinstance(node.value, ast.Name) and node.value.id == "os":
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} os.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [f"{path.relative_to(ROOT)}:{node.lineno} from os import {alias.name}" for alias in node.names
                      if alias.name in ("environ", "environb", "getenv", "getenvb")]
    return found


def test_nothing_outside_the_settings_reads_the_environment():
    product = [path for path in (ROOT / "fracture_web").rglob("*.py") if "config" not in path.relative_to(ROOT).parts]
    commands = [path for path in (ROOT / "scripts").glob("*.py") if path.name not in LAB]
    assert len(product) > 20 and commands
    assert [read for path in product + commands if path.name not in LAB for read in reads_environment(path)] == []
    assert reads_environment(ROOT / "fracture_web" / "config" / "__init__.py")  # the one that does


def test_the_docs_table_is_the_settings_table():
    docs = (ROOT / "docs" / "operations.md").read_text()
    assert markdown() in docs, "run: python -m fracture_web.config --markdown, and paste it into docs/operations.md"
    named = set(re.findall(r"`(FRACTURE_[A-Z_]+)`", (ROOT / "docs" / "pacs.md").read_text() + docs))
    assert named - NOT_VARIABLES <= {setting.variable for setting in SETTINGS}  # the docs name no other variable


def test_every_setting_says_who_reads_it_and_is_read_by_its_kind():
    for setting in SETTINGS:
        assert setting.readers and setting.description and setting.kind.label
        assert setting.read(setting.default) == setting.default  # the default passes its own kind
    with pytest.raises(SettingsError, match="^FRACTURE_BROKER_URL must start with redis:// or rediss://"):
        Settings.from_environ({"FRACTURE_BROKER_URL": "amqp://broker"})

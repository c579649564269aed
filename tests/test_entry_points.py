"""The commands a user runs are console entry points of the installed package (pyproject.toml's
[project.scripts]): after ``make run``, ``fracture-predict --help`` and the others answer from the run
install alone, and ``python scripts/...`` from a checkout runs the same main."""
from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from helpers import ROOT

#: What pyproject.toml declares: command -> "module:function".
DECLARED = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"].get("scripts", {})
#: Each command, the file of scripts/ that runs the same main, and an option its help shows.
COMMANDS = {"fracture-predict": ("predict.py", "--image"), "fracture-reread": ("reread.py", "--folder"),
            "fracture-evaluate": ("evaluate.py", "--data-dir"),
            "fracture-calibrate": ("calibrate_site.py", "--data-dir"),
            "fracture-train": ("train_model.py", "--limit"),
            "fracture-export-tflite": ("export_tflite.py", "--variants"),
            "fracture-export-onnx": ("export_onnx.py", "--no-int8")}
#: What the run install (requirements.txt) leaves out and the training install adds.
NOT_IN_THE_RUN_INSTALL = ["sklearn", "scipy", "matplotlib"]


def run_entry_point(command: str, *args: str) -> subprocess.CompletedProcess:
    """The installed entry point, called as its console script calls it, with the training install's
    packages unimportable."""
    code = textwrap.dedent(f"""
        import sys
        sys.modules.update(dict.fromkeys({NOT_IN_THE_RUN_INSTALL!r}))  # any import of them raises ImportError
        from importlib.metadata import entry_points
        installed = list(entry_points(group="console_scripts", name={command!r}))
        if not installed:
            sys.exit("{command} is not installed: re-install the package (make run, or pip install --no-deps -e .)")
        main = installed[0].load()
        sys.argv = [{command!r}, *{list(args)!r}]
        sys.exit(main())
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_every_user_command_is_a_console_entry_point():
    assert set(DECLARED) == set(COMMANDS)
    assert all(target.startswith("fracture_web.cli.") for target in DECLARED.values())


def test_the_installed_package_carries_the_entry_points():
    """``make run`` re-installs the package when pyproject.toml changes; these are what it installed."""
    installed = {entry.name: entry.value for entry in importlib.metadata.entry_points(group="console_scripts")
                 if entry.dist is not None and entry.dist.name == "fracture-web"}
    assert installed == DECLARED


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_answers_help_from_the_run_install(command):
    done = run_entry_point(command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {command} ") and COMMANDS[command][1] in done.stdout
    assert "Traceback" not in done.stderr


def test_the_console_script_is_on_the_environments_path():
    done = subprocess.run([str(Path(sys.executable).parent / "fracture-predict"), "--help"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "--image" in done.stdout


def test_training_without_the_training_install_says_which_install_it_needs(tmp_path):
    done = run_entry_point("fracture-train", "--data-dir", str(tmp_path), "--out", str(tmp_path / "model"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "make train-env" in done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_script_of_scripts_runs_the_same_main(command):
    module, _, function = DECLARED[command].partition(":")
    script = ast.parse((ROOT / "scripts" / COMMANDS[command][0]).read_text(encoding="utf-8"))
    imported = {(node.module, alias.name) for node in ast.walk(script) if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    assert (module, function) in imported

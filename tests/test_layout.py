"""Where things live: the product (fracture_web/) never reaches into the lab (bench/: benchmarks, load
generators and their helpers), and scripts/ holds only the commands a user runs."""
from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

#: The commands of scripts/: what a clinic, an ML engineer or an operator runs (the lab's tools are in bench/).
USER_COMMANDS = {"predict", "reread", "evaluate", "calibrate_site", "train_model", "export_tflite",
                 "export_onnx", "offline_install_check"}


def imported_modules(source: Path) -> set[str]:
    """The absolute modules a Python file imports, anywhere in it (lazy imports too)."""
    modules = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def test_nothing_in_the_product_imports_the_lab():
    offenders = [f"{source.relative_to(ROOT)} imports {module}" for source in sorted((ROOT / "fracture_web").rglob("*.py"))
                 for module in imported_modules(source) if module.partition(".")[0] == "bench"]
    assert offenders == []


def test_the_product_calls_no_private_litert_function():
    """Counting a graph's multiply-adds needs LiteRT's private op listing: the lab does that, serving does not."""
    callers = [str(source.relative_to(ROOT)) for source in (ROOT / "fracture_web").rglob("*.py")
               if "_get_ops_details" in source.read_text(encoding="utf-8")]
    assert callers == []


def test_scripts_holds_only_the_commands_a_user_runs():
    assert {source.stem for source in (ROOT / "scripts").glob("*.py")} == USER_COMMANDS

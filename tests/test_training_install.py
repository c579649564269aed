"""The ML engineer's first step: the documented training install holds what training needs, and the
README's training command starts from it. (A real training run is ``test_training.py``'s tiny model.)"""
from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from fracture_web.training.torch_weights import DISTRIBUTION, WEIGHT_FILES

from helpers import ROOT, run_script

TRAINING_CODE = [ROOT / "fracture_web" / "training", ROOT / "fracture_web" / "evaluation"]


def requirements(path: Path) -> dict[str, Requirement]:
    """The pinned requirements of a file and of the files it includes with ``-r``, by canonical name."""
    found: dict[str, Requirement] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            found |= requirements(path.parent / line[3:].strip())
        elif line:
            requirement = Requirement(line)
            found[canonicalize_name(requirement.name)] = requirement
    return found


def included_files(path: Path) -> list[str]:
    return re.findall(r"^-r\s+(\S+)", path.read_text(encoding="utf-8"), re.M)


def third_party_imports(folders: list[Path]) -> set[str]:
    """Top-level modules imported anywhere under the folders, without the standard library and our own."""
    modules: set[str] = set()
    for folder in folders:
        for source in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    modules.update(alias.name.partition(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules.add(node.module.partition(".")[0])
    return modules - set(sys.stdlib_module_names) - {"__future__", "fracture_web"}


def test_the_readmes_training_command_is_the_documented_one():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    model_doc = (ROOT / "docs" / "model.md").read_text(encoding="utf-8")
    for text in (readme, model_doc):
        assert "make train-env" in text
        assert text.index("make train-env") < text.index("scripts/train_model.py --data-dir")


def test_the_readmes_training_command_starts():
    done = run_script("train_model.py", "--help")
    assert done.returncode == 0, done.stderr
    assert "--data-dir" in done.stdout and "--limit" in done.stdout


def test_the_training_install_builds_on_the_run_install_and_the_test_install_on_it():
    assert included_files(ROOT / "requirements-train.txt") == ["requirements.txt"]
    assert included_files(ROOT / "requirements-dev.txt") == ["requirements-train.txt"]


def test_the_training_install_holds_every_package_training_and_evaluation_import():
    pinned = requirements(ROOT / "requirements-train.txt")
    distributions = importlib.metadata.packages_distributions()
    missing = []
    for module in sorted(third_party_imports(TRAINING_CODE)):
        names = {canonicalize_name(name) for name in distributions.get(module, [module])}
        if not names & pinned.keys():
            missing.append(module)
    assert missing == []
    assert {"scikit-learn", "matplotlib", "scipy"} <= pinned.keys()


def test_the_imagenet_weights_the_training_reads_are_pinned_for_it():
    """Found with ``importlib.util.find_spec``, not imported, so the import scan cannot see them."""
    pinned = requirements(ROOT / "requirements-train.txt")
    for variant in WEIGHT_FILES:  # every backbone --backbone offers
        weights = Requirement(DISTRIBUTION.format(variant=variant))
        assert str(pinned[canonicalize_name(weights.name)]) == str(weights)


def test_every_package_is_pinned_to_one_exact_version_across_the_installs():
    versions: dict[str, set[str]] = {}
    for name in ("requirements.txt", "requirements-train.txt", "requirements-dev.txt"):
        for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-r "):
                requirement = Requirement(line)
                assert str(requirement.specifier).startswith("=="), f"{name}: {line}"
                versions.setdefault(canonicalize_name(requirement.name), set()).add(str(requirement.specifier))
    assert {name: pins for name, pins in versions.items() if len(pins) > 1} == {}


def test_make_train_env_installs_the_training_requirements_and_make_test_installs_them_too():
    plan = subprocess.run(["make", "-n", "-B", ".venv/.dev-installed"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60).stdout
    assert plan.index("requirements.txt") < plan.index("requirements-train.txt") < plan.index("requirements-dev.txt")
    plan = subprocess.run(["make", "-n", "-B", "train-env"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60).stdout
    assert "-r requirements-train.txt" in plan and "requirements-dev.txt" not in plan

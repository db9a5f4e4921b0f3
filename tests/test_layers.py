"""The pipeline's layers, and no import cycles: import-linter's contracts in pyproject.toml
(CLI > bridge, firmware, evaluation > training > models, data > contract > plumbing), checked by the command
README documents, `python tests/lint_imports.py`, run here exactly as a contributor runs it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from lint_imports import REPO, not_python, package_folders

COMMAND = [sys.executable, "tests/lint_imports.py"]


def lint(checkout: Path) -> subprocess.CompletedProcess:
    return subprocess.run(COMMAND, cwd=checkout, capture_output=True, text=True)


def python_files(checkout: Path) -> int:
    return sum(len(list((checkout / folder).rglob("*.py"))) for folder in package_folders(checkout).values())


def copy_of_the_checkout(root: Path) -> Path:
    """The files the command reads: pyproject.toml, the packages' Python files and the command."""
    for folder in package_folders().values():
        shutil.copytree(REPO / folder, root / folder, ignore=not_python)
    (root / "tests").mkdir()
    shutil.copy(REPO / "tests" / "lint_imports.py", root / "tests")
    shutil.copy(REPO / "pyproject.toml", root)
    return root


def test_the_layers_hold_and_no_module_imports_in_a_cycle():
    done = lint(REPO)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in done.stdout
    assert f"Analyzed {python_files(REPO)} files" in done.stdout, "every module of every stage is in the graph"


def test_an_upward_import_or_a_cycle_breaks_the_contracts(tmp_path):
    """The contracts are live: in a copy of the checkout, a contract module that reaches up to the
    CLI, a plumbing module that reaches up to the contract, a firmware module that imports the CLI,
    and two data modules that import each other, must all be reported."""
    checkout = copy_of_the_checkout(tmp_path / "checkout")
    (checkout / "vwwtorch" / "contract" / "upward.py").write_text("import vwwtorch.cli\n")
    (checkout / "vwwtorch" / "plumbing" / "upward.py").write_text("import vwwtorch.contract.tflite\n")
    (checkout / "firmware" / "upward.py").write_text("from vwwtorch.cli import main\n")
    (checkout / "vwwtorch" / "data" / "ping.py").write_text("from vwwtorch.data import pong\n")
    (checkout / "vwwtorch" / "data" / "pong.py").write_text("from vwwtorch.data import ping\n")
    done = lint(checkout)
    assert done.returncode != 0
    assert "Contracts: 0 kept, 2 broken." in done.stdout, done.stdout[-4000:]
    assert "vwwtorch.contract.upward -> vwwtorch.cli" in done.stdout
    assert "vwwtorch.plumbing.upward -> vwwtorch.contract.tflite" in done.stdout
    assert "vwwtorch.firmware.upward -> vwwtorch.cli" in done.stdout
    assert "No cycles are allowed in vwwtorch.data" in done.stdout

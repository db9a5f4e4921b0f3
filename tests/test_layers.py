"""The pipeline's layers, and no import cycles: import-linter's `lint-imports` on pyproject.toml's
contracts (CLI > bridge, firmware, evaluation > training > models, data > contract).

import-linter finds modules by walking a package's folder, and the stage packages live in the
top-level folders bridge/, firmware/ and configs/ (pyproject maps them into `vwwtorch`), so the
check runs on the layout a wheel installs: a copy of the Python files with those folders inside
`vwwtorch/`, made from pyproject's own mapping.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def installed_layout(root: Path) -> Path:
    mapping = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in mapping.items():
        target = root.joinpath(*package.split("."))
        shutil.copytree(REPO / folder, target, dirs_exist_ok=True,
                        ignore=lambda _, names: [n for n in names if n == "__pycache__"
                                                 or (not n.endswith(".py") and "." in n)])
    return root


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([LINT_IMPORTS, str(REPO / "pyproject.toml"), "--no-cache"], cwd=root,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)


def test_the_layers_hold_and_no_module_imports_in_a_cycle(tmp_path):
    root = installed_layout(tmp_path / "site")
    done = lint(root)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in done.stdout
    files = len(list((root / "vwwtorch").rglob("*.py")))
    assert f"Analyzed {files} files" in done.stdout, "every module of every stage is in the graph"


def test_an_upward_import_or_a_cycle_breaks_the_contracts(tmp_path):
    """The contracts are live: a contract module that reaches up to the CLI, and two data modules
    that import each other, must both be reported."""
    root = installed_layout(tmp_path / "site")
    (root / "vwwtorch" / "contract" / "upward.py").write_text("import vwwtorch.cli\n")
    (root / "vwwtorch" / "data" / "ping.py").write_text("from vwwtorch.data import pong\n")
    (root / "vwwtorch" / "data" / "pong.py").write_text("from vwwtorch.data import ping\n")
    done = lint(root)
    assert done.returncode != 0
    assert "Contracts: 0 kept, 2 broken." in done.stdout, done.stdout[-4000:]
    assert "vwwtorch.contract.upward -> vwwtorch.cli" in done.stdout
    assert "No cycles are allowed in vwwtorch.data" in done.stdout

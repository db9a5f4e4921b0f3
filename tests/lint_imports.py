"""`python tests/lint_imports.py`: import-linter's `lint-imports` on pyproject.toml's contracts,
run from the checkout (arguments are passed on to lint-imports; its exit status is returned).

import-linter finds a package's modules by walking its folder, and the stages live in the top-level
folders bridge/, firmware/ and configs/ that pyproject maps into `vwwtorch`: run in the checkout,
`lint-imports` stops at "Missing layer 'vwwtorch.firmware'". So this lays the Python files out as a
wheel installs them, from pyproject's own mapping, in a temporary folder, and lints that.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def package_folders(repo: Path = REPO) -> dict[str, str]:
    """pyproject's mapping of package name to the checkout folder it installs from."""
    return tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]


def not_python(folder: str, names: list[str]) -> list[str]:
    """shutil.copytree's ignore: keep Python files and folders, drop everything else."""
    return [n for n in names if n == "__pycache__" or not (n.endswith(".py") or Path(folder, n).is_dir())]


def installed_layout(root: Path, repo: Path = REPO) -> Path:
    """The Python packages of `repo` under `root` as a wheel installs them."""
    for package, folder in package_folders(repo).items():
        shutil.copytree(repo / folder, root.joinpath(*package.split(".")), dirs_exist_ok=True, ignore=not_python)
    return root


def main(args: list[str]) -> int:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    with tempfile.TemporaryDirectory() as tmp:
        root = installed_layout(Path(tmp))
        # The copy comes first on the path, ahead of an editable install of the checkout.
        env = {**os.environ, "PYTHONPATH": str(root)}
        return subprocess.run([str(lint_imports), str(REPO / "pyproject.toml"), "--no-cache", *args],
                              cwd=root, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

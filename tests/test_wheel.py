"""A built wheel is the whole product: configs and firmware sources ship as package data, and an
install outside the checkout runs the quickstart and generates firmware."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(REPO), "-w", str(out)],
                   check=True, capture_output=True, text=True, cwd=out)
    (path,) = out.glob("vwwtorch-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtualenv outside the checkout with the wheel installed; the heavy dependencies come
    from this environment's site-packages (a .pth file), so nothing is downloaded."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    site.mkdir(parents=True, exist_ok=True)
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)  # a pure-Python wheel installs by unpacking it into site-packages
    script = venv / "bin" / "vwwtorch"
    # As pip writes console scripts: the guard matters, since the TFLM runtime's child process is
    # spawned and re-imports the main script.
    script.write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom vwwtorch.cli import main\n"
                      "if __name__ == '__main__':\n    sys.exit(main())\n")
    script.chmod(0o755)
    return venv


def test_the_wheel_carries_the_configs_and_the_firmware_sources(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for config in (REPO / "configs").glob("*.yaml"):
        assert f"vwwtorch/configs/{config.name}" in names
    for source in (REPO / "firmware").rglob("*"):
        if source.is_file() and "__pycache__" not in source.parts:
            assert f"vwwtorch/firmware/{source.relative_to(REPO / 'firmware').as_posix()}" in names, source
    for package in ("bridge", "firmware"):
        assert f"vwwtorch/{package}/__init__.py" in names
    assert not any(name.startswith(("bridge/", "firmware/", "configs/")) for name in names), \
        "the stages install under vwwtorch, not as top-level packages"


def test_an_install_outside_the_checkout_runs_quickstart_and_generates_firmware(installed, tmp_path):
    from firmware_models import write_models

    work = tmp_path / "elsewhere"
    work.mkdir()
    run = lambda *args: subprocess.run([str(installed / "bin" / "vwwtorch"), *map(str, args)], cwd=work,  # noqa: E731
                                       capture_output=True, text=True, env={"PATH": "/usr/bin:/bin",
                                                                            "HOME": str(tmp_path)})
    where = subprocess.run([str(installed / "bin" / "python"), "-c", "import vwwtorch.firmware as f; print(f.__file__)"],
                           capture_output=True, text=True, cwd=work)
    assert str(installed) in where.stdout, where.stdout + where.stderr

    tiny = write_models(tmp_path / "models", only=("tiny_int8",))["tiny_int8"]
    done = run("firmware", "generate", "--tflite", tiny, "--out", work / "fw")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (work / "fw" / "model_data.cc").is_file() and (work / "fw" / "model_settings.cc").is_file()

    done = run("quickstart", "--out", work / "qs", "--epochs", "1", "--train-images", "240", "--no-export")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "quickstart finished" in done.stdout and "vwwtorch/configs/quickstart.yaml" in done.stdout
    assert list((work / "qs" / "runs").rglob("last.ckpt"))


def test_an_install_names_its_shipped_configs_from_any_folder(installed, tmp_path):
    run = lambda *args: subprocess.run([str(installed / "bin" / "vwwtorch"), *args], cwd=tmp_path,  # noqa: E731
                                       capture_output=True, text=True, env={"PATH": "/usr/bin:/bin",
                                                                            "HOME": str(tmp_path)})
    done = run("fit", "--config", "quickstart", "--print_config")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "data_dir: data/synthetic" in done.stdout
    done = run("config", "show", "vww_96_grayscale")
    assert done.stdout == (REPO / "configs" / "vww_96_grayscale.yaml").read_text()
    done = run("fit", "--config", "missing", "--print_config")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "quickstart" in done.stderr, done.stderr

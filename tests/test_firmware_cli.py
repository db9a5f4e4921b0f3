"""`vwwtorch firmware build | run`: user mistakes and missing tools, checked without TFLM.

Each must end in one `vwwtorch: error:` line and exit status 2, saying what to do (for a missing
tool: the apt-get line that installs it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_asserts import assert_one_line_error
from firmware_models import write_models
from PIL import Image
from vwwtorch.firmware.toolchain.compiler import BUILD_INFO
from vwwtorch.firmware.toolchain.images import load_tensors
from vwwtorch.firmware.toolchain.run import parse_output

from vwwtorch.cli import main as cli_main
from vwwtorch.plumbing.errors import UserError


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    models = write_models(tmp_path_factory.mktemp("models"), only=("tiny_int8",))
    out = tmp_path_factory.mktemp("gen") / "tiny"
    assert cli_main(["firmware", "generate", "--tflite", str(models["tiny_int8"]), "--out", str(out)]) == 0
    return out


def refused(capsys, args, *phrases):
    return assert_one_line_error(cli_main(args), capsys.readouterr().err, *phrases)


def path_with_only(tmp_path: Path, *programs: str) -> str:
    """A PATH that offers these programs and nothing else."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for program in programs:
        found = shutil.which(program)
        assert found, f"{program} is needed for this test"
        (folder / program).symlink_to(found)
    return str(folder)


def fake_build(tmp_path: Path, model_dir: Path, board: str) -> Path:
    """A build folder as `firmware build` leaves it, with a stand-in program."""
    out = tmp_path / f"build-{board}"
    out.mkdir()
    program = out / {"qemu_m4": "vww_qemu_m4.elf", "sparkfun_edge": "vww_sparkfun_edge.axf"}.get(board, "vww_host")
    program.write_bytes(b"\x7fELF")
    info = dict(board=board, kernels="reference", program=str(program), model_dir=str(model_dir),
                text=1, data=0, bss=0, model_bytes=1, arena_size=1, stack_bytes=0, flash_bytes=None,
                ram_bytes=None, flash_limit=None, ram_limit=None)
    (out / BUILD_INFO).write_text(json.dumps(info))
    return out


# --- build ------------------------------------------------------------------------------------

def test_build_without_a_model_folder(tmp_path, capsys):
    refused(capsys, ["firmware", "build", "--board", "host", "--model-dir", str(tmp_path / "nope"),
                     "--out", str(tmp_path / "out")], "does not exist", "vwwtorch firmware generate")


def test_build_for_an_unknown_board(model_dir, tmp_path, capsys):
    refused(capsys, ["firmware", "build", "--board", "esp32", "--model-dir", str(model_dir),
                     "--out", str(tmp_path / "out")], "unknown board 'esp32'", "qemu_m4")


def test_build_without_the_cross_compiler(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", path_with_only(tmp_path, "make"))
    refused(capsys, ["firmware", "build", "--board", "qemu_m4", "--model-dir", str(model_dir),
                     "--out", str(tmp_path / "out")], "arm-none-eabi-g++ is not installed",
            "sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi")


def test_build_without_make(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", path_with_only(tmp_path))
    refused(capsys, ["firmware", "build", "--board", "host", "--model-dir", str(model_dir),
                     "--out", str(tmp_path / "out")], "`make` is not installed", "apt-get install")


def test_build_without_the_dependencies(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VWWTORCH_CACHE", str(tmp_path / "empty-cache"))
    refused(capsys, ["firmware", "build", "--board", "host", "--model-dir", str(model_dir),
                     "--out", str(tmp_path / "out")], "tflite-micro", "run `vwwtorch firmware deps`")


def test_build_with_kernels_the_board_lacks(model_dir, tmp_path, capsys):
    refused(capsys, ["firmware", "build", "--board", "host", "--kernels", "cmsis_nn",
                     "--model-dir", str(model_dir), "--out", str(tmp_path / "out")],
            "host builds with kernels reference, not cmsis_nn")


# --- run --------------------------------------------------------------------------------------

def test_run_without_a_build(tmp_path, capsys):
    refused(capsys, ["firmware", "run", "--build", str(tmp_path / "nope"), "--image", "x.png"],
            "does not exist", "vwwtorch firmware build")
    (tmp_path / "empty").mkdir()
    refused(capsys, ["firmware", "run", "--build", str(tmp_path / "empty"), "--image", "x.png"],
            "not a firmware build directory")


def test_run_without_qemu(model_dir, tmp_path, monkeypatch, capsys):
    build = fake_build(tmp_path, model_dir, "qemu_m4")
    raw = tmp_path / "image.bin"
    np.zeros((32, 32, 1), np.int8).tofile(raw)
    monkeypatch.setenv("PATH", path_with_only(tmp_path))
    refused(capsys, ["firmware", "run", "--build", str(build), "--image", str(raw)],
            "qemu-system-arm is not installed", "sudo apt-get install qemu-system-arm")


def test_run_checks_the_board_and_counting(model_dir, tmp_path, capsys):
    build = fake_build(tmp_path, model_dir, "host")
    raw = tmp_path / "image.bin"
    np.zeros((32, 32, 1), np.int8).tofile(raw)
    refused(capsys, ["firmware", "run", "--board", "qemu_m4", "--build", str(build), "--image", str(raw)],
            "was built for host, not qemu_m4")
    refused(capsys, ["firmware", "run", "--build", str(build), "--image", str(raw),
                     "--count-instructions"], "counted under QEMU")


def test_run_refuses_a_board_build_and_points_to_flash_and_monitor(model_dir, tmp_path, capsys):
    # An Apollo3 program cannot run here (executing it would fail with "Exec format error").
    build = fake_build(tmp_path, model_dir, "sparkfun_edge")
    raw = tmp_path / "image.bin"
    np.zeros((32, 32, 1), np.int8).tofile(raw)
    line = refused(capsys, ["firmware", "run", "--build", str(build), "--image", str(raw)],
                   "sparkfun_edge builds run on the board", f"vwwtorch firmware flash --build {build}",
                   "vwwtorch firmware monitor --port")
    assert "Traceback" not in line


def test_help_names_every_board_and_its_dependencies(capsys):
    """The help is made from the board registry: a board added there shows up everywhere."""
    from vwwtorch.firmware.boards import BOARDS

    def help_text(*command):
        with pytest.raises(SystemExit) as exit_info:
            cli_main([*command, "--help"])
        assert exit_info.value.code == 0
        return " ".join(capsys.readouterr().out.split())

    build, deps, overview = help_text("firmware", "build"), help_text("firmware", "deps"), help_text("firmware")
    for board in BOARDS.values():
        assert board.name in build and board.title.split(" (")[0] in build, board.name
        assert board.name in deps and board.name in overview
        for dep in board.extra_deps:
            assert dep in deps, (board.name, dep)


@pytest.mark.parametrize("name, make, phrase", [
    ("big.png", lambda p: Image.new("L", (96, 96)).save(p), "is 96x96; the model takes 32x32"),
    ("odd.bin", lambda p: p.write_bytes(bytes(1000)), "1000 bytes is not a whole number"),
    ("wide.npy", lambda p: np.save(p, np.zeros((32, 33), np.uint8)), "does not hold 32x32x1"),
    ("float.npy", lambda p: np.save(p, np.zeros((32, 32), np.float32)), "array of float32"),
    ("notes.txt", lambda p: p.write_text("hi"), "unknown image type .txt"),
    ("broken.png", lambda p: p.write_bytes(b"not a png"), "cannot read image"),
])
def test_run_refuses_bad_images_before_starting_the_firmware(model_dir, tmp_path, capsys, name,
                                                             make, phrase):
    build = fake_build(tmp_path, model_dir, "host")  # never started: the image is checked first
    image = tmp_path / name
    make(image)
    refused(capsys, ["firmware", "run", "--build", str(build), "--image", str(image)], phrase)


# --- pieces -----------------------------------------------------------------------------------

def test_images_follow_the_camera_convention(tmp_path):
    """Pixels go through the model's byte table (the reference quantization's: b - 128, written out
    here independently), int8 tensors are taken as they are."""
    from vwwtorch.contract.deployment import byte_to_int8

    pixels = np.arange(32 * 32, dtype=np.uint32).reshape(32, 32).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    np.save(tmp_path / "t.npy", np.full((2, 32, 32, 1), -5, np.int8))
    table = byte_to_int8(1 / 127.5, -1)
    tensor = load_tensors(tmp_path / "a.png", 32, 32, 1, table)
    assert tensor.shape == (1, 32, 32, 1) and tensor.dtype == np.int8
    np.testing.assert_array_equal(tensor[0, ..., 0], pixels.astype(np.int16) - 128)
    assert (load_tensors(tmp_path / "t.npy", 32, 32, 1, table) == -5).all()
    with pytest.raises(UserError, match="does not exist"):
        load_tensors(tmp_path / "missing.png", 32, 32, 1, table)


def test_output_parsing():
    text = ("vww: model 300568 B, 5 ops, arena 82308 of 89536 B used\r\n"
            "image 0: scores: 4 -4 -> no_person (25200 us)\r\n"
            "image 1: scores: -128 127 -> person (no timer)\r\n"
            "vww: stack 1004 of 16384 B used\r\n")
    result = parse_output(text)
    assert [(i.scores, i.label, i.inference_us) for i in result.images] == \
        [([4, -4], "no_person", 25200), ([-128, 127], "person", None)]
    assert (result.arena_used, result.stack_used) == (82308, 1004)


@pytest.mark.parametrize("command, explained", [
    ("generate", ("--tflite", "--out", "--board", "(default: sparkfun_edge)", "--labels", "--person-index",
                  "--threshold", "(default: 0.5)", "--arena-size", "op resolver")),
    ("deps", ("--board", "--from-dir", "--tflm-dir", "--flatbuffers-dir", "--gemmlowp-dir", "--cmsis-nn-dir",
              "--cmsis-dir", "--ambiq-sdk-dir", "--sparkfun-bsp-dir", "--allow-unverified", "--force", "--list")),
    ("build", ("--board", "--model-dir", "--out", "--kernels", "{cmsis_nn,reference}", "--jobs", "host",
               "qemu_m4", "sparkfun_edge")),
    ("run", ("--build", "--board", "--image", "--timeout", "(default: 120.0)", "--count-instructions")),
    ("profile", ("--tflite", "--out", "--board", "(default: qemu_m4)", "--kernels", "--images", "(default: 1)",
                 "--jobs", "profile.json", "profile.png")),
])
def test_help(command, explained, capsys):
    """Each firmware command's help explains every option, with its real default."""
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["firmware", command, "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith("usage: vwwtorch firmware " + command)
    for phrase in explained:
        assert phrase in text, (command, phrase)


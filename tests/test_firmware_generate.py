"""`vwwtorch firmware generate`: the generated sources, checked without TFLM.

Models are made here with the TFLite converter; the expected op list comes from TFLite's own
interpreter, not from our parser. The generated C++ is compiled with g++ and arm-none-eabi-g++
(-Wall -Wextra -Werror); model_ops.cc against a stand-in resolver header, since the real one needs
TFLM (tests/test_firmware_targets.py builds against the real TFLM).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
import shutil
import subprocess

import numpy as np
import pytest
from cli_asserts import assert_one_line_error
from firmware_models import with_op_replaced, write_models
from vwwtorch.firmware.codegen.ops import SUPPORTED_OPS

from vwwtorch.cli import main as cli_main


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return write_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def generated(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "tiny"
    assert cli_main(["firmware", "generate", "--tflite", str(models["tiny_int8"]),
                     "--out", str(out)]) == 0
    return out


def tflite_op_names(data: bytes) -> set[str]:
    """Op names as TFLite's own interpreter reports them."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=data)
    return {op["op_name"] for op in interpreter._get_ops_details()}


def run_cli(args, capsys) -> tuple[int, str]:
    code = cli_main(args)
    return code, capsys.readouterr().err


# --- the model array --------------------------------------------------------------------------

def test_model_array_parses_back_to_the_tflite_bytes(models, generated):
    source = (generated / "model_data.cc").read_text()
    body = re.search(r"g_model_data\[\] = \{(.*?)\};", source, re.S).group(1)
    parsed = bytes(int(x, 16) for x in re.findall(r"0x([0-9a-f]{2})", body))
    expected = models["tiny_int8"].read_bytes()
    assert parsed == expected
    assert f"g_model_data_len = {len(expected)}u;" in source
    assert re.search(r"alignas\(16\) const unsigned char g_model_data\[\]", source)
    assert "alignas(16) extern const unsigned char g_model_data[];" in (generated / "model_data.h").read_text()


# --- the op resolver --------------------------------------------------------------------------

def test_resolver_registers_exactly_the_models_ops(models, generated):
    ops = tflite_op_names(models["tiny_int8"].read_bytes())
    assert len(ops) >= 5  # the test model is meant to exercise several kernels
    source = (generated / "model_ops.cc").read_text()
    calls = re.findall(r"resolver\.(Add\w+)\(", source)
    assert sorted(calls) == sorted(SUPPORTED_OPS[op].method for op in ops)
    assert f"constexpr int kNumOps = {len(ops)};" in (generated / "model_ops.h").read_text()
    # Every use of these ops is int8, so the int8-only registrations keep other paths out; the
    # convolutions go through the firmware's fast kernels first (firmware/core/kernels/fast_kernels.h).
    assert "resolver.AddConv2D(vww::FastConv2D(tflite::Register_CONV_2D_INT8()))" in source
    assert "resolver.AddMaxPool2D(tflite::Register_MAX_POOL_2D_INT8())" in source
    assert '#include "fast_kernels.h"' in source
    kernels = re.search(r"MODEL_KERNEL_SRCS := (.*)", (generated / "model.mk").read_text()).group(1)
    for op in ops:
        for file in SUPPORTED_OPS[op].kernels:
            assert file in kernels.split()


# --- settings ---------------------------------------------------------------------------------

def test_settings_match_the_model(models, generated):
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=models["tiny_int8"].read_bytes())
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    header = (generated / "model_settings.h").read_text()

    def constant(name):
        return re.search(rf"constexpr \w+ {name} = ([^;]+);", header).group(1)

    assert (int(constant("kNumRows")), int(constant("kNumCols")), int(constant("kNumChannels"))) \
        == tuple(inp["shape"][1:])
    assert float(constant("kInputScale").rstrip("f")) == pytest.approx(inp["quantization"][0], rel=1e-7)
    assert int(constant("kInputZeroPoint")) == inp["quantization"][1]
    assert float(constant("kOutputScale").rstrip("f")) == pytest.approx(out["quantization"][0], rel=1e-7)
    assert int(constant("kOutputZeroPoint")) == out["quantization"][1]
    assert int(constant("kPersonIndex")) == 1 and int(constant("kNoPersonIndex")) == 0
    assert '{"no_person", "person"}' in (generated / "model_settings.cc").read_text()
    # The int8 threshold is the smallest score whose dequantized value reaches 0.5.
    threshold = int(constant("kPersonThreshold"))
    scale, zero = out["quantization"]
    assert (threshold - zero) * scale >= 0.5 > (threshold - 1 - zero) * scale
    info = json.loads((generated / "model_info.json").read_text())
    assert info["arena_size"] >= info["arena_measured"] > 0
    assert int(constant("kTensorArenaSize")) == info["arena_size"]


def test_arena_measurement_is_the_smallest_that_allocates(models):
    from tflite_micro.python.tflite_micro import runtime

    from vwwtorch.contract.tflm import measure_arena

    data = models["tiny_int8"].read_bytes()
    measured = measure_arena(data)
    runtime.Interpreter.from_bytes(data, arena_size=measured)
    with pytest.raises(RuntimeError):
        runtime.Interpreter.from_bytes(data, arena_size=measured - 16)


def test_labels_and_person_index_options(models, tmp_path):
    out = tmp_path / "gen"
    assert cli_main(["firmware", "generate", "--tflite", str(models["tiny_int8"]), "--out", str(out),
                     "--labels", "person,background", "--threshold", "0.8"]) == 0
    header = (out / "model_settings.h").read_text()
    assert "constexpr int kPersonIndex = 0;" in header
    assert "constexpr int kNoPersonIndex = 1;" in header
    info = json.loads((out / "model_info.json").read_text())
    scale, zero = info["output_scale"], info["output_zero_point"]
    assert (info["threshold_int8"] - zero) * scale >= 0.8 > (info["threshold_int8"] - 1 - zero) * scale


# --- compiling the generated sources ----------------------------------------------------------

STUB_RESOLVER = """
#ifndef STUB_RESOLVER_H_
#define STUB_RESOLVER_H_
// Stand-in for TFLM's MicroMutableOpResolver: the same method names, for compile checks only.
#include "tensorflow/lite/micro/micro_common.h"
namespace tflite {
%(registrations)s
template <unsigned N>
class MicroMutableOpResolver {
 public:
%(methods)s
};
}  // namespace tflite
#endif
"""


STUB_COMMON = """
#ifndef STUB_COMMON_H_
#define STUB_COMMON_H_
typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
struct TFLMRegistration {};
#endif
"""


def _stub_tree(root):
    methods = "\n".join(f"  TfLiteStatus {s.method}(const TFLMRegistration& = TFLMRegistration()) "
                        "{ return kTfLiteOk; }" for s in SUPPORTED_OPS.values())
    registrations = "\n".join(f"inline TFLMRegistration {s.int8_registration}() {{ return {{}}; }}"
                              for s in SUPPORTED_OPS.values() if s.int8_registration)
    header = root / "tensorflow" / "lite" / "micro" / "micro_mutable_op_resolver.h"
    header.parent.mkdir(parents=True)
    header.write_text(STUB_RESOLVER % {"methods": methods, "registrations": registrations})
    (header.parent / "micro_common.h").write_text(STUB_COMMON)
    for support in SUPPORTED_OPS.values():
        if support.header:
            (header.parent / "kernels").mkdir(exist_ok=True)
            (header.parent / "kernels" / support.header).write_text("")
    return root


@pytest.mark.parametrize("compiler", ["g++", "arm-none-eabi-g++"])
def test_generated_sources_compile_without_warnings(generated, tmp_path, compiler):
    assert shutil.which(compiler), (
        f"{compiler} is missing: apt-get install g++ gcc-arm-none-eabi libnewlib-arm-none-eabi "
        "libstdc++-arm-none-eabi-newlib")
    stubs = _stub_tree(tmp_path / "stubs")
    kernels = Path(__file__).resolve().parents[1] / "firmware" / "core" / "kernels"  # fast_kernels.h, as the build has it
    flags = ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-c", f"-I{generated}", f"-I{kernels}", f"-I{stubs}"]
    if compiler.startswith("arm-"):
        flags += ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard",
                  "-fno-exceptions", "-fno-rtti"]
    for source in ("model_data.cc", "model_settings.cc", "model_ops.cc", "model_kernels.cc"):
        done = subprocess.run([compiler, *flags, str(generated / source), "-o",
                               str(tmp_path / (source + ".o"))], capture_output=True, text=True)
        assert done.returncode == 0, f"{compiler} {source}:\n{done.stderr}"
    if compiler.startswith("arm-"):
        # The array really is 16-byte aligned in the object file.
        symbols = subprocess.run(["arm-none-eabi-objdump", "-h", str(tmp_path / "model_data.cc.o")],
                                 capture_output=True, text=True).stdout
        assert re.search(r"\.rodata\S*\s+\S+\s+\S+\s+\S+\s+\S+\s+2\*\*4", symbols), symbols


# --- refusals ---------------------------------------------------------------------------------

def test_refuses_a_float_model_and_writes_nothing(models, tmp_path, capsys):
    out = tmp_path / "gen"
    code, err = run_cli(["firmware", "generate", "--tflite", str(models["tiny_float"]),
                         "--out", str(out)], capsys)
    assert_one_line_error(code, err, "FLOAT32 input", "int8")
    assert not out.exists()


def test_refuses_an_op_the_firmware_lacks(models, tmp_path, capsys):
    data = with_op_replaced(models["tiny_int8"].read_bytes(), "MEAN", "REDUCE_PROD")
    path = tmp_path / "odd.tflite"
    path.write_bytes(data)
    code, err = run_cli(["firmware", "generate", "--tflite", str(path), "--out",
                         str(tmp_path / "gen")], capsys)
    assert_one_line_error(code, err, "REDUCE_PROD", "does not support")


@pytest.mark.parametrize("model, phrase", [("big_activations", "RAM"), ("big_weights", "flash")])
def test_refuses_a_model_too_big_for_the_board(models, tmp_path, capsys, model, phrase):
    code, err = run_cli(["firmware", "generate", "--tflite", str(models[model]), "--out",
                         str(tmp_path / "gen"), "--board", "sparkfun_edge"], capsys)
    assert_one_line_error(code, err, "too big for sparkfun_edge", phrase)
    # The host has no such limits.
    assert cli_main(["firmware", "generate", "--tflite", str(models[model]), "--out",
                     str(tmp_path / "host"), "--board", "host"]) == 0


def test_static_ram_is_counted_per_board(models, tmp_path, capsys):
    """The Edge keeps the camera frame (79 KB) and its HAL in RAM besides the arena and the stack,
    qemu_m4 only a few KB: an arena that fits the emulator's RAM can be too big for the board."""
    from vwwtorch.firmware.boards import APOLLO3_SRAM, BOARDS

    qemu, edge = BOARDS["qemu_m4"], BOARDS["sparkfun_edge"]
    assert edge.static_ram_estimate >= 79 * 1024 + 10 * 1024 > qemu.static_ram_estimate
    arena = APOLLO3_SRAM - qemu.stack_bytes - qemu.static_ram_estimate - 1024
    args = ["firmware", "generate", "--tflite", str(models["tiny_int8"]), "--arena-size", str(arena)]
    assert cli_main([*args, "--out", str(tmp_path / "qemu"), "--board", "qemu_m4"]) == 0
    code, err = run_cli([*args, "--out", str(tmp_path / "edge"), "--board", "sparkfun_edge"], capsys)
    assert_one_line_error(code, err, "too big for sparkfun_edge", f"~{edge.static_ram_estimate:,} B static data")
    assert not (tmp_path / "edge").exists()


def test_flash_limit_is_what_the_bootloader_can_flash():
    """An image flashed over the UART bootloader is staged at 0x20000 (OTA header + app) and must
    end below the OTA descriptor page at 0xFE000: less than the 1 MB - 48 KB application region."""
    from vwwtorch.firmware.boards import BOARDS, check_fits

    from vwwtorch.plumbing.errors import UserError

    # The numbers, worked out from the Apollo3 memory map rather than read from the code:
    # 0xFE000 - 0x20000 - 128 B of OTA header = 909,184 B; then the code each board reserves.
    for name, code_estimate in (("qemu_m4", 120 * 1024), ("sparkfun_edge", 120 * 1024)):
        board = BOARDS[name]
        assert board.flash_bytes == 909_184
        fits = 909_184 - code_estimate
        check_fits(board, fits, 1024)
        with pytest.raises(UserError, match=f"too big for {name}.*909,184 B of flash"):
            check_fits(board, fits + 1, 1024)


def test_refuses_files_that_are_not_models(tmp_path, capsys):
    path = tmp_path / "model.tflite"
    path.write_bytes(np.arange(64, dtype=np.uint8).tobytes())
    code, err = run_cli(["firmware", "generate", "--tflite", str(path), "--out",
                         str(tmp_path / "gen")], capsys)
    assert_one_line_error(code, err, "not a TFLite model")
    code, err = run_cli(["firmware", "generate", "--tflite", str(tmp_path / "missing.tflite"),
                         "--out", str(tmp_path / "gen")], capsys)
    assert_one_line_error(code, err, "does not exist")


def test_never_overwrites_a_folder_it_did_not_write(models, generated, tmp_path, capsys):
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("keep me")
    code, err = run_cli(["firmware", "generate", "--tflite", str(models["tiny_int8"]),
                         "--out", str(foreign)], capsys)
    assert_one_line_error(code, err, "not a `firmware generate` folder")
    assert (foreign / "todo.txt").read_text() == "keep me"
    # Its own output is replaced as a whole.
    copy = tmp_path / "again"
    shutil.copytree(generated, copy)
    (copy / "stale.cc").write_text("old")
    assert cli_main(["firmware", "generate", "--tflite", str(models["tiny_int8"]),
                     "--out", str(copy)]) == 0
    assert not (copy / "stale.cc").exists()
    assert (copy / "model_data.cc").read_text() == (generated / "model_data.cc").read_text()


def test_wrong_label_count_is_refused(models, tmp_path, capsys):
    code, err = run_cli(["firmware", "generate", "--tflite", str(models["tiny_int8"]), "--out",
                         str(tmp_path / "gen"), "--labels", "a,b,c"], capsys)
    assert_one_line_error(code, err, "3 labels", "2 outputs")

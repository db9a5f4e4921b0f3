"""The firmware on its two runnable targets: the host program and the emulated Cortex-M4F (QEMU).

Every score the firmware prints must equal, bit for bit, what the `tflite_micro` Python runtime
gives on the same int8 input: for TFLM's own person_detect.tflite (a model vwwtorch did not make)
and for a small model with other ops; on the host, and under QEMU with the CMSIS-NN and with the
reference kernels. Also checked: instruction counts and memory on the device build, incremental
builds that compile TFLM once, and the build's refusals.

Needs the pinned TFLM sources in the cache (`vwwtorch firmware deps`); skipped without them. The
first run compiles TFLM for each board and kernel set into the cache (a few minutes on 2 cores);
later runs only compile the application and the model.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from cli_asserts import assert_one_line_error
from firmware_models import (
    camera_bytes_to_int8,
    convert_keras,
    reference_scores,
    require_firmware_deps,
    require_tools,
    tiny_classifier,
    write_models,
)
from PIL import Image
from vwwtorch.firmware.codegen.generate import generate, load_settings
from vwwtorch.firmware.codegen.model_sources import render_makefile, render_ops
from vwwtorch.firmware.codegen.ops import SUPPORTED_OPS, kernel_sources
from vwwtorch.firmware.toolchain.compiler import build, load_build
from vwwtorch.firmware.toolchain.run import parse_output, run_tensors

from vwwtorch.cli import main as cli_main
from vwwtorch.plumbing.errors import UserError

JOBS = 2
TARGETS = [("host", "reference"), ("qemu_m4", "cmsis_nn"), ("qemu_m4", "reference")]
# Acceptance targets for a 0.25/96x96x1 MobileNetV1 (TFLM's person_detect.tflite on this build).
MAX_INSTRUCTIONS_CMSIS_NN = 23.0e6
MAX_CODE_FLASH = 95 * 1024
MAX_ARENA_REFERENCE = 82_292


@pytest.fixture(scope="module")
def deps():
    require_tools("g++", "make", "arm-none-eabi-g++", "qemu-system-arm")
    return require_firmware_deps("qemu_m4")


@pytest.fixture(scope="module")
def person_detect(deps):
    tflm = deps["tflite-micro"] / "tensorflow" / "lite" / "micro"
    model = tflm / "models" / "person_detect.tflite"
    testdata = tflm / "examples" / "person_detection" / "testdata"
    photos = {name: np.asarray(Image.open(testdata / f"{name}.bmp"), dtype=np.uint8)
              for name in ("person", "no_person")}
    return model, photos


@pytest.fixture(scope="module")
def test_models(deps, tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    paths = write_models(folder)
    rgb = folder / "tiny_rgb_int8.tflite"
    rgb.write_bytes(convert_keras(tiny_classifier(size=24, channels=3), (24, 24, 3), int8=True))
    paths["tiny_rgb_int8"] = rgb
    return paths


def inputs_for(shape, photos=None, count=6, seed=0):
    """Random images, the two extremes, and the photos both as camera bytes and raw-reinterpreted
    (TFLM's own person_detection test feeds the BMP bytes as int8 without the -128 shift)."""
    rng = np.random.default_rng(seed)
    tensors = [camera_bytes_to_int8(rng.integers(0, 256, size=shape, dtype=np.uint8))
               for _ in range(count)]
    tensors += [np.full(shape, -128, np.int8), np.full(shape, 127, np.int8)]
    for pixels in (photos or {}).values():
        tensors.append(camera_bytes_to_int8(pixels).reshape(shape))
        tensors.append(pixels.view(np.int8).reshape(shape))
    return np.stack(tensors)


@dataclass
class Firmware:
    """Generates each model once and builds each (model, board, kernels) once per test module."""
    root: Path
    models: dict
    builds: dict

    def model_dir(self, name: str) -> Path:
        out = self.root / "gen" / name
        if not out.exists():
            generate(self.models[name], out, board="host")
        return out

    def build(self, name: str, board: str, kernels: str):
        key = (name, board, kernels)
        if key not in self.builds:
            out = self.root / "build" / f"{name}-{board}-{kernels}"
            self.builds[key] = build(board, self.model_dir(name), out, kernels=kernels, jobs=JOBS,
                                     quiet=True)
        return self.builds[key]


@pytest.fixture(scope="module")
def firmware(person_detect, test_models, tmp_path_factory):
    models = dict(test_models)
    models["person_detect"] = person_detect[0]
    return Firmware(tmp_path_factory.mktemp("firmware"), models, {})


def model_inputs(name, firmware, person_detect):
    settings = load_settings(firmware.model_dir(name))
    shape = (settings.rows, settings.cols, settings.channels)
    return inputs_for(shape, person_detect[1] if name == "person_detect" else None)


# --- scores -----------------------------------------------------------------------------------

@pytest.mark.parametrize("board, kernels", TARGETS)
@pytest.mark.parametrize("name", ["person_detect", "tiny_int8"])
def test_scores_equal_the_tflm_runtime(firmware, person_detect, name, board, kernels):
    tensors = model_inputs(name, firmware, person_detect)
    built = firmware.build(name, board, kernels)
    result = run_tensors(Path(built.program).parent, tensors, timeout=300)
    expected = reference_scores(Path(firmware.models[name]).read_bytes(), tensors)
    np.testing.assert_array_equal(np.array([r.scores for r in result.images]), expected)
    # The decision follows the scores and the generated threshold.
    settings = load_settings(firmware.model_dir(name))
    for image, row in zip(result.images, expected):
        person = row[settings.person_index] >= settings.threshold_int8
        assert image.label == settings.labels[settings.person_index if person else settings.no_person_index]


def test_rgb_model_on_the_host(firmware, person_detect):
    tensors = model_inputs("tiny_rgb_int8", firmware, person_detect)
    built = firmware.build("tiny_rgb_int8", "host", "reference")
    result = run_tensors(Path(built.program).parent, tensors)
    expected = reference_scores(Path(firmware.models["tiny_rgb_int8"]).read_bytes(), tensors)
    np.testing.assert_array_equal(np.array([r.scores for r in result.images]), expected)


def test_firmware_run_command_on_image_files(firmware, person_detect, tmp_path, capsys):
    """The CLI path: BMP/PNG/.npy files in, one scores line per image out, on both targets."""
    photos = person_detect[1]
    files = [tmp_path / "person.png", tmp_path / "no_person.bmp", tmp_path / "both.npy"]
    Image.fromarray(photos["person"]).save(files[0])
    Image.fromarray(photos["no_person"]).save(files[1])
    np.save(files[2], np.stack([photos["person"], photos["no_person"]])[..., None])
    tensors = camera_bytes_to_int8(np.stack([photos["person"], photos["no_person"]] * 2))[..., None]
    expected = reference_scores(Path(firmware.models["person_detect"]).read_bytes(), tensors)
    for board, kernels in TARGETS[:2]:
        build_dir = Path(firmware.build("person_detect", board, kernels).program).parent
        assert cli_main(["firmware", "run", "--board", board, "--build", str(build_dir),
                         "--image", *map(str, files)]) == 0
        lines = [line for line in capsys.readouterr().out.splitlines() if ": scores: " in line]
        assert [line.split(": scores: ")[0] for line in lines] == \
            [str(files[0]), str(files[1]), f"{files[2]}#0", f"{files[2]}#1"]
        printed = [[int(x) for x in line.split(": scores: ")[1].split(" -> ")[0].split()]
                   for line in lines]
        np.testing.assert_array_equal(printed, expected)
        assert all(line.endswith(" us)") for line in lines)  # the inference time


# --- the device build -------------------------------------------------------------------------

def test_cmsis_nn_is_much_cheaper_than_reference_kernels(firmware, person_detect):
    """Identical scores, and the instruction counts the acceptance asks for (person_detect is the
    same 0.25/96x96x1 MobileNetV1 as vwwtorch's default model)."""
    tensors = model_inputs("person_detect", firmware, person_detect)[:3]
    runs = {}
    for kernels in ("cmsis_nn", "reference"):
        built = firmware.build("person_detect", "qemu_m4", kernels)
        runs[kernels] = run_tensors(Path(built.program).parent, tensors, timeout=300,
                                    count_instructions=True)
    for ours, theirs in zip(runs["cmsis_nn"].images, runs["reference"].images):
        assert ours.scores == theirs.scores
    cmsis = max(image.instructions for image in runs["cmsis_nn"].images)
    reference = min(image.instructions for image in runs["reference"].images)
    assert 0 < cmsis <= MAX_INSTRUCTIONS_CMSIS_NN, cmsis
    assert reference / cmsis > 15, (reference, cmsis)  # about 23x on this model


def test_device_memory(firmware, person_detect):
    tensors = model_inputs("person_detect", firmware, person_detect)[:1]
    settings = load_settings(firmware.model_dir("person_detect"))
    for kernels in ("cmsis_nn", "reference"):
        built = firmware.build("person_detect", "qemu_m4", kernels)
        assert built.code_bytes <= MAX_CODE_FLASH, built.code_bytes
        assert built.model_bytes == Path(firmware.models["person_detect"]).stat().st_size
        assert built.flash_bytes <= built.flash_limit and built.ram_bytes <= built.ram_limit
        # The whole arena is in RAM (bss), next to the stack.
        assert built.ram_bytes >= settings.arena_size + built.stack_bytes
        result = run_tensors(Path(built.program).parent, tensors)
        # The arena measured on x86-64 (64-bit pointers) bounds what the 32-bit device uses.
        assert 0 < result.arena_used <= settings.arena_measured < settings.arena_size
        assert 0 < result.stack_used < built.stack_bytes
        if kernels == "reference":
            assert result.arena_used <= MAX_ARENA_REFERENCE


def test_every_supported_op_links(firmware, tmp_path):
    """The op table (firmware/codegen/ops.py) names real resolver methods and kernel sources: a
    resolver registering every op builds and still runs the model right."""
    model_dir = tmp_path / "all_ops"
    generate(firmware.models["tiny_int8"], model_dir, board="host")
    settings = load_settings(model_dir)
    settings.ops = sorted(SUPPORTED_OPS)
    settings.resolver = [SUPPORTED_OPS[op].call or f"resolver.{SUPPORTED_OPS[op].method}()" for op in settings.ops]
    settings.kernel_sources = kernel_sources(settings.ops)
    header, source = render_ops(settings)
    (model_dir / "model_ops.h").write_text(header)
    (model_dir / "model_ops.cc").write_text(source)
    (model_dir / "model.mk").write_text(render_makefile(settings))
    tensors = inputs_for((32, 32, 1), count=2)
    expected = reference_scores(Path(firmware.models["tiny_int8"]).read_bytes(), tensors)
    for board, kernels in TARGETS[:2]:
        built = build(board, model_dir, tmp_path / f"out-{board}", kernels=kernels, jobs=JOBS,
                      quiet=True)
        result = run_tensors(Path(built.program).parent, tensors, timeout=300)
        np.testing.assert_array_equal(np.array([r.scores for r in result.images]), expected)


# --- builds -----------------------------------------------------------------------------------

def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*.o")}


def test_builds_are_incremental_and_share_tflm(firmware, test_models, tmp_path):
    first = firmware.build("tiny_int8", "qemu_m4", "cmsis_nn")
    out = Path(first.program).parent
    config = json.loads((out / "build_config.json").read_text())
    tflm = Path(config["tflm_build"])
    before = _mtimes(tflm)
    assert before, "TFLM objects live in the shared cache folder"

    again = build("qemu_m4", firmware.model_dir("tiny_int8"), out, jobs=JOBS, quiet=True)
    assert " -c " not in (out / "build.log").read_text()  # nothing recompiled
    assert again.text == first.text

    # Another model, another output folder: only the app and model are compiled; TFLM is reused.
    generate(test_models["tiny_rgb_int8"], tmp_path / "rgb", board="host")
    build("qemu_m4", tmp_path / "rgb", tmp_path / "out", jobs=JOBS, quiet=True)
    compiled = [line for line in (tmp_path / "out" / "build.log").read_text().splitlines()
                if " -c " in line]
    assert compiled and not any(str(tflm) in line.split(" -o ")[-1] for line in compiled)
    after = _mtimes(tflm)
    assert {k: after[k] for k in before} == before


def test_a_model_too_big_for_the_device_is_refused_by_the_linker(test_models, deps, tmp_path, capsys):
    # Generated for the host (no limits), then built for the Apollo3-sized emulator.
    generate(test_models["big_activations"], tmp_path / "gen", board="host")
    code = cli_main(["firmware", "build", "--board", "qemu_m4", "--model-dir", str(tmp_path / "gen"),
                     "--out", str(tmp_path / "out"), "-j", str(JOBS)])
    assert_one_line_error(code, capsys.readouterr().err, "model too big for qemu_m4: RAM overflowed by")
    with pytest.raises(UserError):
        load_build(tmp_path / "out")  # no runnable build is left behind


def test_run_refuses_an_image_of_the_wrong_size(firmware, tmp_path, capsys):
    build_dir = Path(firmware.build("tiny_int8", "host", "reference").program).parent
    image = tmp_path / "big.png"
    Image.new("L", (96, 96)).save(image)
    code = cli_main(["firmware", "run", "--build", str(build_dir), "--image", str(image)])
    assert_one_line_error(code, capsys.readouterr().err, "is 96x96; the model takes 32x32")


def test_host_program_reads_image_files_itself(firmware, person_detect, tmp_path):
    """`vww_host FILE...` without the Python side: BMP and PGM photos, read by the C++ core."""
    built = firmware.build("person_detect", "host", "reference")
    photos = person_detect[1]
    files = [tmp_path / "person.bmp", tmp_path / "no_person.pgm"]
    Image.fromarray(photos["person"]).save(files[0])
    Image.fromarray(photos["no_person"]).save(files[1])
    done = subprocess.run([built.program, *map(str, files)], capture_output=True, text=True,
                          check=True)
    scores = [image.scores for image in parse_output(done.stdout).images]
    tensors = camera_bytes_to_int8(np.stack([photos["person"], photos["no_person"]]))[..., None]
    np.testing.assert_array_equal(scores, reference_scores(
        Path(firmware.models["person_detect"]).read_bytes(), tensors))


def test_profile_attributes_every_instruction_to_its_operator(firmware, person_detect, tmp_path, capsys):
    """`firmware profile`: one count (and cycle estimate) per operator of the model, summing to the
    inference's count but for the interpreter's own loop; MACs equal the PyTorch model's; identical
    layers cost the same."""
    from PIL import Image as PILImage
    from vwwtorch.firmware.toolchain.profile import PROFILE_JSON, PROFILE_PNG
    from vwwtorch.contract.tflite import load_tflite
    from vwwtorch.models.mobilenet_v1 import MobileNetV1
    from vwwtorch.models.stats import model_stats

    model = firmware.models["person_detect"]
    out = tmp_path / "profile"
    assert cli_main(["firmware", "profile", "--tflite", str(model), "--out", str(out), "--jobs", "2"]) == 0
    printed = capsys.readouterr().out
    profile = json.loads((out / PROFILE_JSON).read_text())
    _, info = load_tflite(model)
    ops = profile["ops"]
    assert [o["op"] for o in ops] == info.ops and all(o["instructions"] > 0 for o in ops)
    overhead = profile["instructions_per_inference"] - sum(o["instructions"] for o in ops)
    assert 0 <= overhead < 100 * len(ops), overhead  # the loop between operators, a few dozen each
    # Estimated cycles: loads take 2 and taken branches refill, so never fewer than the instructions.
    assert all(o["cycles"] >= o["instructions"] for o in ops)
    assert 0 <= profile["cycles_per_inference"] - profile["cycles_in_ops"] < 200 * len(ops)
    # The same count as `firmware run --count-instructions` on the same build (within the marker calls).
    tensors = np.random.default_rng(0).integers(-128, 128, (1, 96, 96, 1), dtype=np.int8)
    whole = run_tensors(out / "build", tensors, timeout=300, count_instructions=True).images[0].instructions
    assert abs(whole - profile["instructions_per_inference"]) <= 0.001 * whole
    assert profile["macs"] == model_stats(MobileNetV1(), (1, 96, 96)).macs  # the same slim 0.25/96 network
    # ops 14, 16, 18, 20, 22: five identical 1x1 convolutions on 6x6x128 -> identical counts.
    assert len({ops[i]["instructions"] for i in (14, 16, 18, 20, 22)}) == 1
    assert ops[14]["instructions"] != ops[12]["instructions"]  # a different layer costs something else
    assert "CONV_2D" in printed and "total" in printed
    assert PILImage.open(out / PROFILE_PNG).size[0] == 800

"""The firmware stage `vwwtorch quickstart` runs: always generate; build and run when it can."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from firmware_models import require_firmware_deps, require_tools, write_models
from vwwtorch.firmware.quickstart_stage import dataset_pixels, firmware_stage

# torchvision must be loaded before TensorFlow's converter runs in this process: the other order
# aborts with "LLVM ERROR: inconsistency in registered CommandLine options".
from vwwtorch.contract.tflite import unpack
from vwwtorch.data.format import open_split
from vwwtorch.data.transforms import eval_transform


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_models(tmp_path_factory.mktemp("models"), only=("tiny_int8",))["tiny_int8"]


def c_array(source: str, name: str) -> list[int]:
    """The values of a generated C array `name[...] = { ... };`."""
    body = re.search(rf"{name}\[\w*\] = \{{(.*?)\}};", source, re.S)
    assert body, f"{name} not found"
    return [int(v, 0) for v in re.findall(r"-?(?:0x)?[0-9a-f]+", body.group(1))]


def test_without_dependencies_it_generates_and_says_what_to_run(tiny, tmp_path, monkeypatch):
    """The sources hold the model's own bytes, its input table and its ops; each board is skipped
    with the command that fetches what it lacks, and nothing is built."""
    from vwwtorch.contract.deployment import byte_to_int8
    from vwwtorch.contract.tflite import load_tflite, operator_names

    monkeypatch.setenv("VWWTORCH_CACHE", str(tmp_path / "empty-cache"))
    pixels = np.zeros((2, 32, 32, 1), np.uint8)
    outcome = firmware_stage(tiny, tmp_path / "fw", pixels)
    model = outcome.model_dir
    data, info = load_tflite(tiny)
    source = (model / "model_data.cc").read_text()
    assert bytes(c_array(source, "g_model_data")) == data
    assert f"g_model_data_len = {len(data)}u;" in source
    table = c_array((model / "model_settings.cc").read_text(), "kByteToInput")
    assert table == byte_to_int8(info.input.scale, info.input.zero_point).tolist()
    settings = (model / "model_settings.h").read_text()
    assert all(f"{name} = {value};" in settings for name, value in
               (("kNumRows", 32), ("kNumCols", 32), ("kNumChannels", 1)))
    ops = re.search(r"// Ops: (.*)\.", (model / "model_ops.h").read_text()).group(1).split(", ")
    assert sorted(ops) == sorted(set(operator_names(unpack(data))))

    assert [b.board for b in outcome.boards] == ["host", "qemu_m4"]
    for board in outcome.boards:
        assert board.scores_match is None and not board.failed and board.build_dir is None
        assert "`vwwtorch firmware deps" in board.note and board.note.endswith("to build and run it")
        assert not (tmp_path / "fw" / board.board).exists()
    lines = outcome.lines()
    assert lines[0] == f"firmware sources  {model}"
    assert [line.split(":")[0] for line in lines[1:]] == ["firmware host     skipped", "firmware qemu_m4  skipped"]
    assert outcome.problems() == []


def test_a_failed_build_is_reported_not_raised(tiny, tmp_path, monkeypatch):
    import vwwtorch.firmware.toolchain.compiler
    import vwwtorch.firmware.toolchain.deps
    import vwwtorch.firmware.quickstart_stage

    from vwwtorch.plumbing.errors import UserError

    def broken_build(board, *args, **kwargs):
        raise UserError(f"firmware build failed: {board} compiler crashed")

    monkeypatch.setattr(vwwtorch.firmware.toolchain.deps, "installed", lambda dep, root=None: {"commit": dep.commit})
    monkeypatch.setattr(vwwtorch.firmware.quickstart_stage, "_missing_tool", lambda board: None)
    monkeypatch.setattr(vwwtorch.firmware.toolchain.compiler, "build", broken_build)
    outcome = firmware_stage(tiny, tmp_path / "fw", np.zeros((1, 32, 32, 1), np.uint8))
    assert (outcome.model_dir / "model_data.cc").is_file()
    assert all(b.failed and b.scores_match is None for b in outcome.boards)
    assert outcome.problems() == ["host: firmware build failed: host compiler crashed",
                                  "qemu_m4: firmware build failed: qemu_m4 compiler crashed"]
    assert "firmware host     FAILED: firmware build failed" in "\n".join(outcome.lines())


def test_with_dependencies_the_host_build_matches_the_runtime(tiny, tmp_path):
    """The stage's verdict against an independent reference: TFLite's reference kernels (bit-exact
    with TFLM's) on the camera convention written out here, b - 128."""
    from vwwtorch.firmware.toolchain.run import run_tensors

    from vwwtorch.contract.litert import TFLiteModel

    require_tools("g++", "make")
    require_firmware_deps("host")
    pixels = np.random.default_rng(1).integers(0, 256, size=(3, 32, 32, 1), dtype=np.uint8)
    outcome = firmware_stage(tiny, tmp_path / "fw", pixels, boards=("host",), jobs=2)
    (host,) = outcome.boards
    assert host.scores_match is True and (host.build_dir / "build.json").is_file()
    assert "scores equal the TFLM runtime" in "\n".join(outcome.lines())
    tensors = (pixels.astype(np.int16) - 128).astype(np.int8)
    reference = TFLiteModel(tiny, reference_kernels=True).raw_outputs(tensors)
    firmware = np.array([image.scores for image in run_tensors(host.build_dir, tensors).images])
    np.testing.assert_array_equal(firmware, reference)


def test_dataset_pixels_follow_the_eval_preprocessing(synthetic_small):
    pixels = dataset_pixels(synthetic_small, 3, 96, 1)
    assert pixels.shape == (3, 96, 96, 1) and pixels.dtype == np.uint8
    image = torch.from_numpy(np.array(open_split(synthetic_small, "val").images[2])).permute(2, 0, 1)
    unit = eval_transform(96, 1)(image).permute(1, 2, 0).numpy()
    # Back in the model's float input space, the bytes are within half a quantization step.
    assert np.abs(pixels[2] / 127.5 - 1.0 - unit).max() <= 0.5 / 127.5 + 1e-6

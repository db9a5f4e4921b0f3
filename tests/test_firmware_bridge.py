"""End to end: a vwwtorch checkpoint through the bridge (`vwwtorch export`) and through the firmware.

The int8 model the bridge writes must give the same scores on the host program and under QEMU
(CMSIS-NN and reference kernels) as the `tflite_micro` runtime, on validation images prepared the
way the camera path prepares them; and the default model (MobileNetV1 0.25, 96x96x1) must meet the
device targets: flash for TFLM + app, instructions per inference, tensor arena.

Needs the firmware dependencies (`vwwtorch firmware deps`); skipped without them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch  # noqa: F401  (before TensorFlow: see tests/test_firmware_pipeline.py)

from firmware_models import camera_bytes_to_int8, reference_scores, require_firmware_deps, require_tools
from vwwtorch.firmware.toolchain.compiler import build
from vwwtorch.firmware.codegen.generate import load_settings
from vwwtorch.firmware.quickstart_stage import dataset_pixels, firmware_stage
from vwwtorch.firmware.toolchain.run import run_tensors

pytestmark = pytest.mark.slow

MOBILENET_OPS = ["AVERAGE_POOL_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "RESHAPE", "SOFTMAX"]


@pytest.fixture(scope="session")  # session scope: set up before the session-scoped training fixtures
def firmware_ready():
    require_tools("g++", "make", "arm-none-eabi-g++", "qemu-system-arm")
    return require_firmware_deps("qemu_m4")


@pytest.fixture(scope="module")
def exported(firmware_ready, trained_checkpoint, synthetic_small, tmp_path_factory):
    # firmware_ready comes first: without the dependencies, skip before training anything.
    from vwwtorch.plumbing.errors import GateFailed
    from vwwtorch.bridge.export_run import ExportOptions, export

    out = tmp_path_factory.mktemp("export") / "model"
    try:
        export(ExportOptions(ckpt=trained_checkpoint, data=Path(synthetic_small), out=out,
                             num_calibration=32, num_parity=32, progress=False))
    except GateFailed:
        pass  # a few-step model may miss the accuracy gates; its int8 file is complete all the same
    return out / "model_int8.tflite"


def test_bridge_model_runs_identically_on_every_target(exported, synthetic_small, tmp_path):
    pixels = dataset_pixels(synthetic_small, 6, 96, 1)
    outcome = firmware_stage(exported, tmp_path / "fw", pixels, jobs=2)
    assert [b.board for b in outcome.boards] == ["host", "qemu_m4"]
    for board in outcome.boards:
        assert board.scores_match is True, outcome.lines()
    settings = load_settings(outcome.model_dir)
    assert settings.ops == MOBILENET_OPS
    assert (settings.rows, settings.cols, settings.channels) == (96, 96, 1)

    # The reference kernels agree too, and CMSIS-NN meets the device targets.
    tensors = camera_bytes_to_int8(pixels)[:2]
    expected = reference_scores(exported.read_bytes(), tensors)
    counts = {}
    for kernels in ("cmsis_nn", "reference"):
        built = build("qemu_m4", outcome.model_dir, tmp_path / kernels, kernels=kernels, jobs=2, quiet=True)
        result = run_tensors(tmp_path / kernels, tensors, timeout=300, count_instructions=True)
        np.testing.assert_array_equal([i.scores for i in result.images], expected)
        counts[kernels] = max(i.instructions for i in result.images)
        assert built.code_bytes <= 95 * 1024
        assert result.arena_used <= settings.arena_measured
        if kernels == "reference":
            assert result.arena_used <= 82_292
    # TFLM's person_detect.tflite takes 22.93 M on this build. Its first layer is a
    # DEPTHWISE_CONV_2D with depth multiplier 8; the same layer as a CONV_2D with one input channel
    # gives identical scores but costs CMSIS-NN about 0.45 M instructions more.
    assert counts["cmsis_nn"] <= 23.0e6, (
        f"{counts['cmsis_nn']:,} instructions per inference with CMSIS-NN; first op: "
        f"{_first_op(exported)} (export a one-input-channel first conv as DEPTHWISE_CONV_2D)")
    assert counts["reference"] / counts["cmsis_nn"] > 15


def _first_op(tflite: Path) -> str:
    from vwwtorch.contract.tflite import read_tflite as read_model

    return read_model(tflite.read_bytes()).operators[0].op

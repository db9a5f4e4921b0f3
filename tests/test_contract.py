"""The deployment contract (`vwwtorch.contract`): each rule against an independent reference."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import torch

from vwwtorch.contract.deployment import (SYMMETRIC, UNIT, byte_to_int8, eval_bytes, input_bytes,
                                          matching_normalization)
from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.hashing import sha256_bytes, sha256_file


def test_files_are_hashed_in_chunks(tmp_path):
    data = os.urandom(100_000)
    path = tmp_path / "blob.tar.gz"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_file(path, chunk=4096) == sha256_file(path) == sha256_bytes(data) == expected


@pytest.mark.parametrize("scale, zero_point", [(1 / 127.5, -1), (float(np.float32(1 / 127.5)), -1),
                                               (1 / 255, -128), (float(np.float32(1 / 255)), -128)])
def test_the_usual_quantizations_map_a_byte_b_to_b_minus_128(scale, zero_point):
    """TFLM's camera convention, written out independently: int8 = b - 128, for slim's [-1, 1] models
    (person_detect, vwwtorch) and MLPerf's [0, 1] ones."""
    pixels = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(byte_to_int8(scale, zero_point), pixels.astype(np.int16) - 128)


def test_the_table_is_the_rounded_quantization_of_the_normalized_byte():
    """For a quantization that is not byte-aligned, each entry is round(real / scale + zero point)."""
    scale, zero_point = 2.0 / 254, -1                 # [-1, 1] in 254 steps: close enough to map bytes
    table = byte_to_int8(scale, zero_point)
    real = np.arange(256) / 127.5 - 1
    np.testing.assert_array_equal(table, np.clip(np.floor(real / scale + zero_point + 0.5), -128, 127))
    assert matching_normalization(scale, zero_point) is SYMMETRIC
    assert matching_normalization(1 / 255, -128) is UNIT


@pytest.mark.parametrize("scale, zero_point", [(0.02, 5), (1 / 127.5, 60), (0.0, 0), (1 / 1000, 0)])
def test_a_quantization_without_a_byte_mapping_is_refused(scale, zero_point):
    with pytest.raises(UserError, match="cannot feed it camera bytes"):
        byte_to_int8(scale, zero_point, "m.tflite")


def test_normalizations_are_trainings_float32_arithmetic():
    pixels = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(SYMMETRIC.real(pixels), pixels.to(torch.float32) / 127.5 - 1.0)
    assert np.array_equal(UNIT.real(pixels.numpy()), pixels.numpy().astype(np.float32) / np.float32(255))


def test_eval_bytes_sees_only_the_central_seven_eighths():
    """Pixels outside the central 87.5% square must not change the result; pixels inside must."""
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.integers(0, 256, (1, 128, 160), dtype=np.uint8))
    crop = round(128 * 0.875)                          # 112: a square on the short side
    top, left = (128 - crop) // 2, (160 - crop) // 2
    outside = image.clone()
    outside[..., :top, :] = 0
    outside[..., :, :left] = 255
    inside = image.clone()
    inside[..., 64, 80] = 255 - inside[..., 64, 80]
    base = eval_bytes(image, 32, 1)
    assert base.dtype == torch.uint8 and tuple(base.shape) == (1, 32, 32)
    assert torch.equal(eval_bytes(outside, 32, 1), base)
    assert not torch.equal(eval_bytes(inside, 32, 1), base)


def test_channels_follow_the_model():
    rgb = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, 40, 40), dtype=np.uint8))
    gray = eval_bytes(rgb, 32, 1)
    expected = eval_bytes(rgb, 32, 3).to(torch.float32)
    luma = (0.299 * expected[0] + 0.587 * expected[1] + 0.114 * expected[2])
    assert gray.shape[0] == 1 and (gray[0].to(torch.float32) - luma).abs().max() <= 1.5  # uint8 rounding


def test_a_frame_already_at_the_model_size_is_taken_as_it_is():
    frame = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (1, 32, 32), dtype=np.uint8))
    assert torch.equal(input_bytes(frame, 32, 1), frame)
    bigger = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (1, 64, 64), dtype=np.uint8))
    assert torch.equal(input_bytes(bigger, 32, 1), eval_bytes(bigger, 32, 1))


def test_a_runtime_crash_in_the_child_is_one_line_and_the_next_call_works():
    """A native runtime that aborts (what malformed models make TFLM and LiteRT do) is a UserError, and
    a new child takes the next call."""
    from vwwtorch.plumbing.isolation import run_isolated

    with pytest.raises(UserError, match="crashed on this model"):
        run_isolated("the test runtime", os.abort, timeout=60)
    assert run_isolated("the test runtime", os.getpid, timeout=60) != os.getpid()
    with pytest.raises(UserError, match="raised in the child"):
        run_isolated("the test runtime", _raise_user_error, timeout=60)


def test_a_runtime_that_does_not_finish_is_stopped():
    import time

    from vwwtorch.plumbing.isolation import run_isolated

    started = time.monotonic()
    with pytest.raises(UserError, match="did not finish within 1 s"):
        run_isolated("the test runtime", time.sleep, 600, timeout=1)
    assert time.monotonic() - started < 30
    assert run_isolated("the test runtime", os.getpid, timeout=60) != os.getpid()


def _raise_user_error():
    raise UserError("raised in the child")


def test_printable_escapes_what_would_drive_a_terminal():
    from vwwtorch.plumbing.names import printable

    assert printable("a\x1b[31mb\nc\u202ed") == "a\\x1b[31mb\\x0ac\\u202ed"
    assert printable(os.fsdecode(b"caf\xe9")) == "caf\\xe9"
    assert printable("caf\u00e9") == "caf\u00e9"

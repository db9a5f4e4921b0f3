"""The packed-weight layout is written in Python (firmware/codegen/packed_weights.py) and read in C++
(firmware/core/kernels/packed_weights.h, fast_kernels.cc): kinds, forms, limits and word counts must
agree. This test reads the C++ sources so that the two copies cannot drift.
"""

from __future__ import annotations

import re

import pytest
from test_chain_wire_format import _constant

from vwwtorch.firmware.codegen import packed_weights as pw
from vwwtorch.firmware.toolchain.compiler import firmware_dir

KERNELS = firmware_dir() / "core" / "kernels"


@pytest.fixture(scope="module")
def header() -> str:
    return (KERNELS / "packed_weights.h").read_text()


@pytest.fixture(scope="module")
def kernels() -> str:
    return (KERNELS / "fast_kernels.cc").read_text()


def test_kinds_and_forms_agree(header):
    assert [_constant(header, f"kPacked{n}") for n in ("Pointwise", "Im2col", "Depthwise")] == \
        [pw.POINTWISE, pw.IM2COL, pw.DEPTHWISE]
    assert [_constant(header, f"kPacked{n}") for n in ("Fast", "Exact", "General")] == \
        [pw.FAST, pw.EXACT, pw.GENERAL]


def test_limits_and_word_counts_agree(kernels):
    assert _constant(kernels, "kMaxPackedOutputs") == pw.MAX_OUTPUTS
    assert _constant(kernels, "kMaxTransposedPairs") == pw.DEPTHWISE_MAX_PAIRS
    assert _constant(kernels, "kDepthwiseWords") == pw.DEPTHWISE_WORDS
    # PackedConstants(form): the fast form's word count, then the others'.
    match = re.search(r"PackedConstants\(int32_t form\) \{ return form == kPackedFast \? (\d+) : (\d+); \}", kernels)
    assert match, "PackedConstants not found in fast_kernels.cc"
    fast, other = map(int, match.groups())
    assert pw.CONSTANTS == {pw.FAST: fast, pw.EXACT: other, pw.GENERAL: other}


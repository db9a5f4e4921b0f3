"""The VWW_CONV_CHAIN options are written in Python (firmware/codegen/memory_plan/chain_op.py) and read in
C++ (firmware/core/kernels/conv_chain.cc): the two must agree on the version, the layer limit, the header
and every field of a layer, in order. This test reads the C++ source so that the copies cannot drift.
"""

from __future__ import annotations

import re

import pytest

from vwwtorch.firmware.codegen.memory_plan import chain_op
from vwwtorch.firmware.toolchain.compiler import firmware_dir

SOURCE = firmware_dir() / "core" / "kernels" / "conv_chain.cc"


def _constant(source: str, name: str) -> int:
    match = re.search(rf"constexpr\s+\w+\s+{name}\s*=\s*(-?\d+)\s*;", source)
    assert match, f"{name} not found in {SOURCE.name}"
    return int(match.group(1))


def struct_fields(source: str, name: str) -> list[tuple[str, str]]:
    """(type, field) of a plain C++ struct, in declaration order; comments dropped."""
    match = re.search(rf"struct\s+{name}\s*\{{(.*?)\}};", source, re.S)
    assert match, f"struct {name} not found"
    body = re.sub(r"//[^\n]*", "", match.group(1))
    fields = []
    for declaration in filter(None, (d.strip() for d in body.split(";"))):
        type_name, names = declaration.split(None, 1)
        fields += [(type_name, n.strip()) for n in names.split(",")]
    return fields


@pytest.fixture(scope="module")
def source() -> str:
    return SOURCE.read_text()


def test_version_and_layer_limit_agree(source):
    assert _constant(source, "kVersion") == chain_op.OPTIONS_VERSION
    assert _constant(source, "kMaxLayers") == chain_op.MAX_CHAIN_LAYERS


def test_chain_layer_fields_agree_in_order_and_size(source):
    fields = struct_fields(source, "ChainLayer")
    assert {t for t, _ in fields} == {"int32_t"}, "the options are int32 words, one per field"
    assert [n for _, n in fields] == [*chain_op.Layer.__dataclass_fields__, "window_rows"]


def test_header_is_version_then_count(source):
    layer = chain_op.Layer(*range(len(chain_op.Layer.__dataclass_fields__)))
    words = layer.words(window_rows=99)
    options = b"".join(w.to_bytes(4, "little", signed=True)
                       for w in [chain_op.OPTIONS_VERSION, 1, *words])
    assert _constant(source, "kHeaderWords") == 2
    assert chain_op.chain_layers(options) == [(layer, 99)]


def test_the_parser_sees_a_drift():
    drifted = "struct ChainLayer {\n  int32_t depthwise;\n  int16_t in_h, in_w;  // rows\n};"
    assert struct_fields(drifted, "ChainLayer") == [("int32_t", "depthwise"), ("int16_t", "in_h"),
                                                    ("int16_t", "in_w")]

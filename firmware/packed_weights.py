"""1x1 convolutions' weights re-laid out for firmware/core/fast_kernels.cc, at `firmware generate` time.

The Cortex-M4's SMLAD multiplies two pairs of 16-bit values. The firmware's 1x1 kernel computes 4
output channels for 2 pixels at once, each loaded weight pair used twice and each input pair four
times; for that it wants every layer's weights as 16-bit pairs in the order its loop reads them,
with each group of 4 channels led by their requantization constants. Widening int8 to 16 bits at
run time would cost an instruction per pair in the innermost loop, so it is done here, into flash:
2 bytes per weight beside the model's own int8 copy (which TFLM still reads), plus 16 bytes per
output channel. `--flash-budget` caps the total; the layers that gain most per byte (the most
pixels per weight) are packed first, and the others keep their int8 kernels.

Layout, in int32 words, per group of 4 output channels o..o+3: their biases; then for each step
k of in_c / 2, the 4 channels' weights of input pair k as (low, high) 16-bit halves; then each
channel's requantization constants. The input pairs follow SXTAB16: within each 4 input channels
4q..4q+3, step 2q pairs channels (4q, 4q + 2) and step 2q + 1 pairs (4q + 1, 4q + 3). A layer takes
one of two forms, both exactly TFLM's arithmetic (MultiplyByQuantizedMultiplier: a doubling high
multiply, then a rounding right shift; or a left shift first):
  FAST, when every shift is right (1 to 22) and no accumulator can reach 2^30: biases and weights
    doubled, so one SMMLAR makes the doubling high multiply and adds the constant `rounding` =
    2^(right - 1) + output offset x 2^right; constants {multiplier, rounding, right}.
  EXACT, for any other layer (left shifts, shifts past 22, accumulators near 2^31, as in MLPerf's
    vww_96_int8, whose later layers carry biases of 2^30): the biases and weights as they are, the
    product taken to 64 bits (SMLAL) with a 64-bit constant that holds both roundings; constants
    {multiplier, constant low word, constant high word, left | shift after the high word << 8 |
    (1 when it rounds a right shift) << 16}; the output offset is added at run time.

The firmware finds a layer's words by its filter's address in the model and uses them only after
checking the constants against TFLM's own, so a stale or foreign table costs speed, not exactness.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vwwtorch.contract.tflite import operator_names, schema, unpack

GROUP = 4                                  # output channels computed together
PACKED_INPUTS = (8, 16, 32, 64, 128, 256)  # input channel counts the kernel is built for
FAST, EXACT = 0, 1                         # the two forms (PackedPointwise::form)
CONSTANTS = {FAST: 3, EXACT: 4}            # words per output channel after the weights
MAX_FAST_RIGHT_SHIFT = 22                  # FAST: the rounding constant stays below 2^30
PRODUCT_BOUND = 256 * 128                  # |(input + offset) x weight| < 2^15
SYMBOL = "g_model_packed_weights"          # the words' array in the generated model_kernels.cc


@dataclass
class PackedLayer:
    name: str            # "op 10 CONV_2D", "op 3 VWW_CONV_CHAIN layer 2"
    filter_offset: int   # where the layer's int8 filter starts in the model: the firmware's key
    in_c: int
    out_c: int
    pixels: int
    form: int            # FAST or EXACT
    words: np.ndarray    # int32

    @property
    def nbytes(self) -> int:
        return 4 * len(self.words)

    @property
    def macs(self) -> int:
        return self.pixels * self.in_c * self.out_c


@dataclass
class Packing:
    budget: int | None          # flash bytes the packed words may take (None: no limit)
    layers: list[PackedLayer] = field(default_factory=list)
    left_out: list[PackedLayer] = field(default_factory=list)  # would pack, but over the budget

    @property
    def nbytes(self) -> int:
        return sum(layer.nbytes for layer in self.layers)

    def summary(self) -> dict:
        return {"budget": self.budget, "bytes": self.nbytes,
                "layers": [{"layer": layer.name, "bytes": layer.nbytes, "macs": layer.macs,
                            "form": "fast" if layer.form == FAST else "exact"} for layer in self.layers],
                "left_out": [{"layer": layer.name, "bytes": layer.nbytes, "macs": layer.macs}
                             for layer in self.left_out]}


def _buffer_offsets(data: bytes) -> dict[int, int]:
    """Byte offset in the flatbuffer of each buffer's data, by buffer index."""
    model = schema().Model.GetRootAs(data, 0)
    offsets = {}
    for i in range(model.BuffersLength()):
        buffer = model.Buffers(i)
        field_offset = buffer._tab.Offset(4)  # Buffer.data
        if field_offset:
            offsets[i] = buffer._tab.Vector(field_offset)
    return offsets


def _int32_values(model, graph, index: int) -> np.ndarray | None:
    if index < 0:
        return None
    buffer = model.buffers[graph.tensors[index].buffer]
    return None if buffer.data is None else np.frombuffer(bytes(bytearray(buffer.data)), dtype="<i4")


def _pointwise_layers(data: bytes):
    """(name, layer, filter tensor, bias, multipliers, shifts, filter buffer) of every int8 convolution
    in the model, standalone or inside a VWW_CONV_CHAIN op."""
    from vwwtorch.firmware.memory_plan.chain_op import CHAIN_OP_NAME, chain_layers, layer_of
    from vwwtorch.firmware.memory_plan.requantization import channel_multipliers

    model = unpack(data)
    graph = model.subgraphs[0]
    names = operator_names(model)
    for index, op in enumerate(graph.operators):
        name = names[op.opcodeIndex]
        if name == CHAIN_OP_NAME:
            for j, (layer, _) in enumerate(chain_layers(op)):
                first = 1 + 4 * j
                filter_tensor = graph.tensors[int(op.inputs[first])]
                yield (f"op {index} {name.split(':')[-1]} layer {j}", layer, filter_tensor,
                       _int32_values(model, graph, int(op.inputs[first + 1])),
                       _int32_values(model, graph, int(op.inputs[first + 2])),
                       _int32_values(model, graph, int(op.inputs[first + 3])),
                       model.buffers[filter_tensor.buffer], filter_tensor.buffer)
            continue
        layer = layer_of(model, graph, op, name)
        if layer is None:
            continue
        x, w, y = (graph.tensors[int(i)] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
        multipliers, shifts = channel_multipliers(x.quantization.scale[0], w.quantization.scale,
                                                  y.quantization.scale[0], layer.out_c)
        bias = _int32_values(model, graph, int(op.inputs[2])) if len(op.inputs) > 2 else None
        yield (f"op {index} {name}", layer, w, bias, multipliers, shifts, model.buffers[w.buffer], w.buffer)


def _accumulator_bound(layer, bias) -> np.ndarray:
    """Per output channel, the largest |accumulator|: |bias| + in_c products."""
    biases = np.zeros(layer.out_c, np.int64) if bias is None else np.abs(bias.astype(np.int64))
    return biases + layer.in_c * PRODUCT_BOUND


def packed_form(layer, bias, multipliers, shifts) -> int | None:
    """FAST or EXACT when the firmware's packed 1x1 kernel runs this layer, else None
    (fast_kernels.cc checks the same)."""
    if layer.depthwise or (layer.kh, layer.kw, layer.stride_h, layer.stride_w, layer.pad_h, layer.pad_w) != \
            (1, 1, 1, 1, 0, 0):
        return None
    if layer.in_c not in PACKED_INPUTS or layer.out_c % GROUP or (layer.in_h, layer.in_w) != (layer.out_h, layer.out_w):
        return None
    if multipliers is None or shifts is None or np.any(multipliers < 0) or np.any(shifts < -31) or np.any(shifts > 30):
        return None
    bound = _accumulator_bound(layer, bias)
    if np.any(bound >= 1 << 31):
        return None
    shifts = shifts.astype(np.int64)
    if np.all((shifts <= -1) & (shifts >= -MAX_FAST_RIGHT_SHIFT)) and np.all(bound < 1 << 30):
        return FAST
    # EXACT: a channel without a right shift doubles its accumulator, shifted left, into 32 bits.
    unshifted = (shifts >= 0) & (multipliers != 0)
    if np.any(bound[unshifted] >= np.right_shift(1 << 30, np.maximum(shifts[unshifted], 0))):
        return None
    return EXACT


def _constants(form: int, layer, multipliers, shifts) -> np.ndarray:
    """[out_c, CONSTANTS[form]] int64."""
    m = multipliers.astype(np.int64)
    shifts = shifts.astype(np.int64)
    right = np.maximum(-shifts, 0)
    if form == FAST:
        rounding = np.left_shift(1, right - 1) + np.left_shift(np.int64(layer.output_offset), right)
        return np.stack([m, rounding, right], axis=1)
    # EXACT: high word of x * m + constant, shifted right by `after`:
    #   right shift r >= 1: x = acc, constant 2^30 + 2^(30 + r) (less 2^31 when x < 0), after r - 1:
    #     floor((floor((x m + 2^30) / 2^31) + 2^(r - 1) - (x < 0)) / 2^r), TFLM's two roundings;
    #   no right shift: x = acc << (left + 1), constant 2^31, after 0: floor((x m / 2 + 2^30) / 2^31);
    #   multiplier 0: 0.
    rounds = right > 0
    left = np.where(rounds | (m == 0), 0, shifts + 1)
    constant = np.where(rounds, (1 << 30) + np.left_shift(np.int64(1), 30 + right), np.where(m == 0, 0, 1 << 31))
    after = np.where(rounds, right - 1, 0)
    return np.stack([m, constant & 0xFFFFFFFF, constant >> 32, left | (after << 8) | (rounds.astype(np.int64) << 16)],
                    axis=1)


def pack_layer(form: int, layer, weights: np.ndarray, bias, multipliers, shifts) -> np.ndarray:
    """The int32 words of one layer (weights: [out_c, in_c] int8)."""
    out_c, in_c = layer.out_c, layer.in_c
    scale = 2 if form == FAST else 1
    biases = scale * (np.zeros(out_c, np.int64) if bias is None else bias.astype(np.int64))
    constants = _constants(form, layer, multipliers, shifts)
    # Input channel pairs of each step: (4q, 4q + 2), (4q + 1, 4q + 3), ...
    quads = np.arange(in_c // 4) * 4
    low = np.stack([quads, quads + 1], axis=1).reshape(-1)
    scaled = scale * weights.astype(np.int64)                                 # [out_c, in_c]
    pairs = (scaled[:, low] & 0xFFFF) | ((scaled[:, low + 2] & 0xFFFF) << 16)  # [out_c, steps]
    words = []
    for o in range(0, out_c, GROUP):
        words.append(biases[o:o + GROUP])
        words.append(pairs[o:o + GROUP].T.reshape(-1))  # step-major: 4 channels per step
        words.append(constants[o:o + GROUP].reshape(-1))
    return np.concatenate(words).astype(np.uint32).view(np.int32)


def pack_model(data: bytes, budget: int | None) -> Packing:
    """Every 1x1 convolution the packed kernel can run, packed, as many as fit `budget` bytes: those
    with the most MACs per packed byte first."""
    offsets = _buffer_offsets(data)
    candidates = []
    for name, layer, filter_tensor, bias, multipliers, shifts, buffer, buffer_index in _pointwise_layers(data):
        form = packed_form(layer, bias, multipliers, shifts)
        if buffer.data is None or buffer_index not in offsets or form is None:
            continue
        weights = np.frombuffer(bytes(bytearray(buffer.data)), dtype=np.int8).reshape(layer.out_c, layer.in_c)
        candidates.append(PackedLayer(name, int(offsets[buffer_index]), int(layer.in_c), int(layer.out_c),
                                      int(layer.out_h * layer.out_w), form,
                                      pack_layer(form, layer, weights, bias, multipliers, shifts)))
    packing = Packing(budget)
    seen = set()
    for layer in sorted(candidates, key=lambda p: -p.macs / p.nbytes):
        if layer.filter_offset in seen:  # one filter shared by two layers: packed once, found by either
            continue
        if budget is not None and packing.nbytes + layer.nbytes > budget:
            packing.left_out.append(layer)
            continue
        seen.add(layer.filter_offset)
        packing.layers.append(layer)
    packing.layers.sort(key=lambda p: p.filter_offset)
    return packing


def render(packing: Packing, generated_by: str, words_per_line: int = 8) -> str:
    """model_kernels.cc: the words and the table the firmware looks layers up in."""
    blocks, entries, position = [], [], 0
    for layer in packing.layers:
        values = layer.words.tolist()
        lines = ",\n".join("    " + ", ".join(str(v) for v in values[i:i + words_per_line])
                           for i in range(0, len(values), words_per_line))
        blocks.append(f"    // {layer.name}: {layer.in_c} -> {layer.out_c} channels, {layer.pixels} pixels\n{lines},")
        entries.append(f"    {{g_model_data + {layer.filter_offset}, {SYMBOL} + {position}, {layer.in_c}, "
                       f"{layer.out_c}, {layer.form}}},  // {layer.name}")
        position += len(values)
    words = "\n".join(blocks) if blocks else "    0,"
    table = "\n".join(entries) if entries else "    {nullptr, nullptr, 0, 0, 0},"
    return f"""// {generated_by}
// 1x1 convolutions' weights packed for firmware/core/fast_kernels.cc (vwwtorch/firmware/packed_weights.py):
// {len(packing.layers)} layers, {packing.nbytes:,} B{'' if packing.budget is None else f' (flash budget {packing.budget:,} B)'}.
#include <cstdint>

#include "model_data.h"
#include "packed_weights.h"

alignas(4) const int32_t {SYMBOL}[] = {{
{words}
}};

namespace vww {{

const PackedPointwise kPackedPointwise[] = {{
{table}
}};
const int kNumPackedPointwise = {len(packing.layers)};

}}  // namespace vww
"""

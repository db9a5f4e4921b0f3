"""Convolution weights re-laid out for firmware/core/kernels/fast_kernels.cc, at `firmware generate` time.

The Cortex-M4's SMLAD multiplies two pairs of 16-bit values. The firmware's packed kernel computes
4 output channels for 2 pixels at once, each loaded weight pair used twice and each input pair four
times; for that it wants a layer's weights as 16-bit pairs in the order its loop reads them, with
each group of 4 channels led by its biases and followed by its requantization constants. Widening
int8 to 16 bits at run time would cost an instruction per pair in the innermost loop, so it is done
here, into flash: 2 bytes per weight beside the model's own int8 copy (which TFLM still reads), plus
16 to 20 bytes per output channel. `--flash-budget` caps the total; the layers that gain most per
byte (the most pixels per weight) are packed first, and the others keep their int8 kernels.

Two kinds of layer are packed: 1x1 convolutions (POINTWISE, the inputs of a pixel are its
channels) and 3x3 convolutions over 1 or 3 input channels, the first layer of the VWW models
(IM2COL: a CONV_2D over RGB, or a DEPTHWISE_CONV_2D over one gray channel with a depth multiplier;
the inputs of a pixel are its 27 or 9 taps, gathered from the input rows). A third kind,
DEPTHWISE, holds no widened weights the firmware could not make itself: the transposed depthwise
3x3 kernel derives its constants from the model per group of 4 channels whenever it runs, which a
layer of a streamed chain (--memory-budget) does once per output row, so for those layers the
constants are written here instead (`pack_depthwise`, 40 bytes per channel).

Layout, in int32 words, per group of 4 output channels o..o+3: their biases; then for each step k
of the input pairs, the 4 channels' weights of pair k as (low, high) 16-bit halves; then each
channel's requantization constants. The pairs follow SXTAB16 (`step_pairs`): within every 4
consecutive input bytes b..b+3, one step pairs (b, b + 2) and the next (b + 1, b + 3); IM2COL
takes each tap row's bytes in words so, and pairs the bytes left over after the last whole word of
each row across rows, the last with zero. A layer takes
one of three forms, all exactly TFLM's arithmetic (MultiplyByQuantizedMultiplier: a doubling high
multiply, then a rounding right shift; or a left shift first):
  FAST, when every shift is right (1 to 22) and no accumulator can reach 2^30: biases and weights
    doubled, so one SMMLAR makes the doubling high multiply and adds the constant `rounding` =
    2^(right - 1) + output offset x 2^right; constants {multiplier, rounding, right}.
  EXACT, when every shift is right, or the multiplier 0 (as in MLPerf's vww_96_int8, whose later
    layers carry biases of 2^30 and shifts to -31): the product taken to 64 bits (SMLAL) with a
    64-bit constant that holds both roundings; constants {multiplier, constant low word, constant
    high word, shift after the high word | output offset << 16}.
  GENERAL, for the rest (left shifts): as EXACT with the accumulator shifted left first, computed
    in C; constants {multiplier, constant low word, constant high word, left | shift after << 8 |
    (1 when it rounds a right shift) << 16}, the output offset added at run time.

The firmware finds a layer's words by its filter's address in the model and uses them only after
checking the constants against TFLM's own, so a stale or foreign table costs speed, not exactness.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vwwtorch.contract.tflite import operator_names, schema, unpack

GROUP = 4                                  # output channels computed together
PACKED_INPUTS = (8, 16, 32, 64, 128, 256)  # POINTWISE: input channel counts the kernel is built for
IM2COL_ROW_BYTES = (3, 9)                  # IM2COL: 3x3 taps over 1 or 3 input channels
MAX_OUTPUTS = 256                          # output channels a kernel call buffers (kMaxPackedOutputs)
POINTWISE, IM2COL, DEPTHWISE = 0, 1, 2     # the kinds (PackedConv::kind)
DEPTHWISE_CHANNELS = (8, 16, 32, 64, 128)  # DEPTHWISE: channel counts the transposed kernel is built for
DEPTHWISE_MAX_PAIRS = 64                   # DEPTHWISE: column pairs of its row buffer (kMaxTransposedPairs)
DEPTHWISE_WORDS = 10                       # DEPTHWISE: words per channel (kDepthwiseWords)
FAST, EXACT, GENERAL = 0, 1, 2             # the forms (PackedConv::form)
CONSTANTS = {FAST: 3, EXACT: 4, GENERAL: 4}  # words per output channel after the weights
MAX_FAST_RIGHT_SHIFT = 22                  # FAST: the rounding constant stays below 2^30
PRODUCT_BOUND = 256 * 128                  # |(input + offset) x weight| < 2^15
SYMBOL = "g_model_packed_weights"          # the words' array in the generated model_kernels.cc


@dataclass
class PackedLayer:
    name: str            # "op 10 CONV_2D", "op 3 VWW_CONV_CHAIN layer 2"
    filter_offset: int   # where the layer's int8 filter starts in the model: the firmware's key
    kind: int            # POINTWISE, IM2COL or DEPTHWISE
    in_c: int
    out_c: int
    taps: int            # multiply-accumulates per output
    pixels: int
    form: int            # FAST or EXACT
    words: np.ndarray    # int32

    @property
    def nbytes(self) -> int:
        return 4 * len(self.words)

    @property
    def macs(self) -> int:
        return self.pixels * self.taps * self.out_c


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
                            "form": ("fast", "exact", "general")[layer.form]} for layer in self.layers],
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


def _conv_layers(data: bytes):
    """(name, layer, filter tensor, bias, multipliers, shifts, filter buffer, buffer index, streamed)
    of every int8 convolution in the model, standalone or inside a VWW_CONV_CHAIN op (streamed: in a
    chain of several layers, which runs row by row)."""
    from vwwtorch.firmware.codegen.memory_plan.chain_op import CHAIN_OP_NAME, chain_layers, layer_of
    from vwwtorch.contract.int8_arithmetic import channel_multipliers

    model = unpack(data)
    graph = model.subgraphs[0]
    names = operator_names(model)
    for index, op in enumerate(graph.operators):
        name = names[op.opcodeIndex]
        if name == CHAIN_OP_NAME:
            layers = chain_layers(op)
            for j, (layer, _) in enumerate(layers):
                first = 1 + 4 * j
                filter_tensor = graph.tensors[int(op.inputs[first])]
                yield (f"op {index} {name.split(':')[-1]} layer {j}", layer, filter_tensor,
                       _int32_values(model, graph, int(op.inputs[first + 1])),
                       _int32_values(model, graph, int(op.inputs[first + 2])),
                       _int32_values(model, graph, int(op.inputs[first + 3])),
                       model.buffers[filter_tensor.buffer], filter_tensor.buffer, len(layers) > 1)
            continue
        layer = layer_of(model, graph, op, name)
        if layer is None:
            continue
        x, w, y = (graph.tensors[int(i)] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
        multipliers, shifts = channel_multipliers(x.quantization.scale[0], w.quantization.scale,
                                                  y.quantization.scale[0], layer.out_c)
        bias = _int32_values(model, graph, int(op.inputs[2])) if len(op.inputs) > 2 else None
        yield (f"op {index} {name}", layer, w, bias, multipliers, shifts, model.buffers[w.buffer], w.buffer, False)


def transposed_pairs(layer) -> int:
    """Column pairs of the transposed depthwise kernel's row buffer (fast_kernels.cc's `pairs`)."""
    half = (layer.out_w + 1) // 2
    return half + 1 if layer.stride_w == 1 else 2 * half + 1


def packed_kind(layer, streamed: bool = False) -> int | None:
    """POINTWISE or IM2COL when a packed kernel has this layer's shape; DEPTHWISE when the
    transposed depthwise kernel does and the layer runs row by row (`streamed`); else None."""
    if layer.out_c % GROUP or layer.out_c > MAX_OUTPUTS:
        return None
    if streamed and layer.depthwise and (layer.kh, layer.kw) == (3, 3) and layer.stride_h == layer.stride_w in (1, 2) \
            and layer.in_c == layer.out_c in DEPTHWISE_CHANNELS and layer.depth_multiplier == 1 and \
            layer.pad_h <= 1 and layer.pad_w <= 1 and layer.out_w >= 4 and transposed_pairs(layer) <= DEPTHWISE_MAX_PAIRS:
        return DEPTHWISE
    if not layer.depthwise and (layer.kh, layer.kw, layer.stride_h, layer.stride_w, layer.pad_h, layer.pad_w) == \
            (1, 1, 1, 1, 0, 0) and layer.in_c in PACKED_INPUTS and (layer.in_h, layer.in_w) == (layer.out_h, layer.out_w):
        return POINTWISE
    one_input = layer.depthwise and layer.in_c == 1 and layer.depth_multiplier == layer.out_c
    if (layer.kh, layer.kw) == (3, 3) and layer.stride_h in (1, 2) and layer.stride_w in (1, 2) and \
            layer.pad_h <= 1 and layer.pad_w <= 1 and (one_input or not layer.depthwise) and \
            layer.kw * layer.in_c in IM2COL_ROW_BYTES:
        return IM2COL
    return None


def taps(layer) -> int:
    """Multiply-accumulates per output."""
    return layer.kh * layer.kw * (1 if layer.depthwise else layer.in_c)


def step_pairs(kind: int, layer) -> np.ndarray:
    """[steps, 2]: the flat weight indices (within one output channel's weights, in OHWI order) that
    each step pairs; -1 for the zero that completes the last IM2COL pair."""
    row = layer.kw * layer.in_c if kind == IM2COL else layer.in_c
    rows = layer.kh if kind == IM2COL else 1
    pairs, leftover = [], []
    for r in range(rows):
        for b in range(r * row, r * row + row // 4 * 4, 4):
            pairs += [(b, b + 2), (b + 1, b + 3)]
        leftover += list(range(r * row + row // 4 * 4, (r + 1) * row))
    leftover += [-1] * (len(leftover) % 2)
    pairs += list(zip(leftover[::2], leftover[1::2]))
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def _accumulator_bound(layer, bias) -> np.ndarray:
    """Per output channel, the largest |accumulator|: |bias| + the products."""
    biases = np.zeros(layer.out_c, np.int64) if bias is None else np.abs(bias.astype(np.int64))
    return biases + taps(layer) * PRODUCT_BOUND


def packed_form(layer, bias, multipliers, shifts, streamed: bool = False) -> int | None:
    """The form when a packed kernel runs this layer, else None (fast_kernels.cc checks the same);
    DEPTHWISE layers take only the FAST form."""
    kind = packed_kind(layer, streamed)
    if kind is None:
        return None
    if multipliers is None or shifts is None or np.any(multipliers < 0) or np.any(shifts < -31) or np.any(shifts > 30):
        return None
    bound = _accumulator_bound(layer, bias)
    if np.any(bound >= 1 << 31):
        return None
    shifts = shifts.astype(np.int64)
    if np.all((shifts <= -1) & (shifts >= -MAX_FAST_RIGHT_SHIFT)) and np.all(bound < 1 << 30):
        return FAST
    if kind == DEPTHWISE:
        return None
    unshifted = (shifts >= 0) & (multipliers != 0)
    if not np.any(unshifted):
        return EXACT
    # GENERAL: a channel without a right shift doubles its accumulator, shifted left, into 32 bits.
    if np.any(bound[unshifted] >= np.right_shift(1 << 30, np.maximum(shifts[unshifted], 0))):
        return None
    return GENERAL


def _constants(form: int, layer, multipliers, shifts) -> np.ndarray:
    """[out_c, CONSTANTS[form]] int64."""
    m = multipliers.astype(np.int64)
    shifts = shifts.astype(np.int64)
    right = np.maximum(-shifts, 0)
    if form == FAST:
        rounding = np.left_shift(1, right - 1) + np.left_shift(np.int64(layer.output_offset), right)
        return np.stack([m, rounding, right], axis=1)
    if form == EXACT:
        # The high word of acc * m + constant, less 2^31 when acc < 0, shifted right by r - 1:
        # floor((floor((acc m + 2^30) / 2^31) + 2^(r - 1) - (acc < 0)) / 2^r), TFLM's two roundings;
        # a multiplier 0 takes r = 1 (its output is the offset whatever the shift).
        right = np.where(m == 0, 1, right)
        constant = (1 << 30) + np.left_shift(np.int64(1), 30 + right)
        return np.stack([m, constant & 0xFFFFFFFF, constant >> 32,
                         (right - 1) | np.left_shift(np.int64(layer.output_offset), 16)], axis=1)
    # GENERAL: high word of x * m + constant, shifted right by `after`:
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


def flat_weights(layer, weights: np.ndarray) -> np.ndarray:
    """[out_c, taps]: each output channel's weights in OHWI order (a DEPTHWISE filter is [1, kh, kw, out_c])."""
    if layer.depthwise:
        return weights.reshape(-1, layer.out_c).T
    return weights.reshape(layer.out_c, -1)


def pack_layer(kind: int, form: int, layer, weights: np.ndarray, bias, multipliers, shifts) -> np.ndarray:
    """The int32 words of one layer (weights: the filter tensor's int8 values, flat)."""
    out_c = layer.out_c
    scale = 2 if form == FAST else 1
    biases = scale * (np.zeros(out_c, np.int64) if bias is None else bias.astype(np.int64))
    constants = _constants(form, layer, multipliers, shifts)
    scaled = scale * np.concatenate([flat_weights(layer, weights).astype(np.int64), np.zeros((out_c, 1), np.int64)],
                                    axis=1)  # [out_c, taps + 1]: index -1 is the zero
    order = step_pairs(kind, layer)
    pairs = (scaled[:, order[:, 0]] & 0xFFFF) | ((scaled[:, order[:, 1]] & 0xFFFF) << 16)  # [out_c, steps]
    words = []
    for o in range(0, out_c, GROUP):
        words.append(biases[o:o + GROUP])
        words.append(pairs[o:o + GROUP].T.reshape(-1))  # step-major: 4 channels per step
        words.append(constants[o:o + GROUP].reshape(-1))
    return np.concatenate(words).astype(np.uint32).view(np.int32)


def pack_depthwise(layer, weights: np.ndarray, bias, multipliers, shifts) -> np.ndarray:
    """The int32 words of a DEPTHWISE layer: per channel, its FAST constants {multiplier, rounding,
    right shift, doubled bias}, then for each tap row r its doubled weights as the pairs
    A = (w[r][0], w[r][1]) and B = (w[r][1], w[r][2]) (low, high halves)."""
    out_c = layer.out_c
    taps = 2 * flat_weights(layer, weights).astype(np.int64)  # [out_c, 9], row-major taps
    biases = np.zeros(out_c, np.int64) if bias is None else bias.astype(np.int64)
    words = np.concatenate([_constants(FAST, layer, multipliers, shifts), 2 * biases[:, None]], axis=1)
    pair = lambda lo, hi: (taps[:, lo] & 0xFFFF) | ((taps[:, hi] & 0xFFFF) << 16)  # noqa: E731
    rows = [np.stack([pair(3 * r, 3 * r + 1), pair(3 * r + 1, 3 * r + 2)], axis=1) for r in range(3)]
    words = np.concatenate([words, *rows], axis=1)  # [out_c, DEPTHWISE_WORDS]
    return words.reshape(-1).astype(np.uint32).view(np.int32)


def pack_model(data: bytes, budget: int | None) -> Packing:
    """Every convolution a packed kernel can run, packed, as many as fit `budget` bytes: those with
    the most MACs per packed byte first."""
    offsets = _buffer_offsets(data)
    candidates = []
    for name, layer, filter_tensor, bias, multipliers, shifts, buffer, buffer_index, streamed in _conv_layers(data):
        form = packed_form(layer, bias, multipliers, shifts, streamed)
        if buffer.data is None or buffer_index not in offsets or form is None:
            continue
        kind = packed_kind(layer, streamed)
        weights = np.frombuffer(bytes(bytearray(buffer.data)), dtype=np.int8)
        words = pack_depthwise(layer, weights, bias, multipliers, shifts) if kind == DEPTHWISE else \
            pack_layer(kind, form, layer, weights, bias, multipliers, shifts)
        candidates.append(PackedLayer(name, int(offsets[buffer_index]), kind, int(layer.in_c), int(layer.out_c),
                                      int(taps(layer)), int(layer.out_h * layer.out_w), form, words))
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
        blocks.append(f"    // {layer.name}: {layer.in_c} -> {layer.out_c} channels, {layer.taps} taps, "
                      f"{layer.pixels} pixels\n{lines},")
        entries.append(f"    {{g_model_data + {layer.filter_offset}, {SYMBOL} + {position}, {layer.kind}, {layer.in_c}, "
                       f"{layer.out_c}, {layer.form}}},  // {layer.name}")
        position += len(values)
    words = "\n".join(blocks) if blocks else "    0,"
    table = "\n".join(entries) if entries else "    {nullptr, nullptr, 0, 0, 0, 0},"
    return f"""// {generated_by}
// Convolution weights packed for firmware/core/kernels/fast_kernels.cc (firmware/codegen/packed_weights.py):
// {len(packing.layers)} layers, {packing.nbytes:,} B{'' if packing.budget is None else f' (flash budget {packing.budget:,} B)'}.
#include <cstdint>

#include "model_data.h"
#include "packed_weights.h"

alignas(4) const int32_t {SYMBOL}[] = {{
{words}
}};

namespace vww {{

const PackedConv kPackedConvs[] = {{
{table}
}};
const int kNumPackedConvs = {len(packing.layers)};

}}  // namespace vww
"""

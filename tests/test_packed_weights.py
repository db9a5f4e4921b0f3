"""firmware/codegen/packed_weights.py: the weights and constants `firmware generate` packs for the Cortex-M4
kernels, checked without the firmware (CI has no TFLM cache; the bit-exactness of the kernels
themselves is tests/test_fast_kernels.py's).

Each form's constants, evaluated the way firmware/core/kernels/fast_kernels.cc uses them, must reproduce
TFLM's MultiplyByQuantizedMultiplier written out here from gemmlowp's definition (a saturating
rounding doubling high multiply with its truncating division, then a rounding divide by a power of
two comparing the remainder with a threshold), not from the floor reformulations that the firmware
and vwwtorch.contract.int8_arithmetic share, on random and tie accumulators; the weight layout must put each weight where the kernel's loop reads it; the flash
budget must pack the most pixels per byte first and never exceed itself.
"""

from __future__ import annotations

import numpy as np
import pytest
from firmware_models import convert_keras

from vwwtorch.plumbing.errors import UserError
from vwwtorch.firmware.codegen import packed_weights as pw
from vwwtorch.firmware.codegen.memory_plan.chain_op import Layer


# --- TFLM's requantization, from its definition -------------------------------------------------

def _doubling_high_multiply(a: int, b: int) -> int:
    if a == b == -2**31:
        return 2**31 - 1
    product = a * b
    nudged = product + (2**30 if product >= 0 else 1 - 2**30)
    return abs(nudged) // 2**31 * (1 if nudged >= 0 else -1)  # C++ division truncates


def _rounding_divide(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if (x & mask) > threshold else 0)


def tflm(acc: int, multiplier: int, shift: int, offset: int) -> int:
    left, right = max(shift, 0), max(-shift, 0)
    shifted = ((acc * (1 << left) + 2**31) % 2**32) - 2**31
    value = _rounding_divide(_doubling_high_multiply(shifted, multiplier), right) + offset
    return max(-128, min(127, value))


# --- the firmware's arithmetic on the packed constants --------------------------------------------

def _s32(v: int) -> int:
    return ((int(v) + 2**31) % 2**32) - 2**31


def firmware(form: int, acc: int, k: np.ndarray, offset: int) -> int:
    """One output as fast_kernels.cc computes it from a channel's packed constants `k` (acc is the
    undoubled accumulator; FAST doubles it through its doubled weights and bias)."""
    if form == pw.FAST:  # SMMLAR(2 acc, m, rounding + (acc < 0 ? -1 : 0)) >> right, SSAT
        multiplier, rounding, right = (int(v) for v in k)
        high = (2 * acc * multiplier + 2**31 + (rounding - (acc < 0)) * 2**32) >> 32
        return max(-128, min(127, _s32(high) >> right))
    multiplier, low, high_word, f = (_s32(v) for v in k)
    constant = (high_word << 32) | (low & 0xFFFFFFFF)
    if form == pw.EXACT:  # SMLAL with the constant less 2^31 for acc < 0, then >> shift, + offset
        product = acc * multiplier + constant - (2**31 if acc < 0 else 0)
        value = _s32(product >> 32) >> (f & 0xFF)
        return max(-128, min(127, value + (f >> 16)))
    x = _s32(acc << (f & 0xFF))  # GENERAL
    product = x * multiplier + constant - (2**31 if x < 0 and (f >> 16) & 1 else 0)
    return max(-128, min(127, (_s32(product >> 32) >> ((f >> 8) & 0xFF)) + offset))


def layer(in_c: int = 8, out_c: int = 4, offset: int = -5, **fields) -> Layer:
    base = dict(depthwise=0, in_h=2, in_w=3, in_c=in_c, out_h=2, out_w=3, out_c=out_c, kh=1, kw=1, stride_h=1,
                stride_w=1, pad_h=0, pad_w=0, depth_multiplier=1, input_offset=128, output_offset=offset,
                act_min=-128, act_max=127)
    base.update(fields)
    return Layer(**base)


CASES = {  # (multipliers, shifts, biases) of 4 channels, and the form the packer must choose
    "fast": ([1 << 30, 1518500250, 2**31 - 1, 1234567890], [-1, -7, -22, -12], [0, -9000, 120000, 77], pw.FAST),
    "exact: shifts past 22, biases of 2^30": ([1 << 30, 1518500250, 2**31 - 1, 0], [-31, -23, -27, 0],
                                              [(1 << 30) + 128, -(1 << 30), 1 << 29, (1 << 30) + 5], pw.EXACT),
    "general: left shifts": ([1 << 30, 1518500250, 2**31 - 1, 1234567890], [3, -7, 0, 1], [10, -9000, 120, 7],
                             pw.GENERAL),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_form_is_tflm_requantization(case):
    multipliers, shifts, biases, expected_form = CASES[case]
    lay = layer()
    m, s, b = (np.array(v, dtype=np.int64) for v in (multipliers, shifts, biases))
    form = pw.packed_form(lay, b.astype(np.int32), m.astype(np.int32), s.astype(np.int32))
    assert form == expected_form
    weights = np.zeros((lay.out_c, lay.in_c), np.int8)
    words = pw.pack_layer(pw.POINTWISE, form, lay, weights, b.astype(np.int32), m.astype(np.int32),
                          s.astype(np.int32))
    steps = lay.in_c // 2
    constants = words[4 + 4 * steps:].reshape(4, pw.CONSTANTS[form])
    scale = 2 if form == pw.FAST else 1
    np.testing.assert_array_equal(words[:4], scale * b)  # biases first
    rng = np.random.default_rng(0)
    bound = int(np.max(np.abs(b))) + lay.in_c * pw.PRODUCT_BOUND
    for c in range(4):
        # A channel's accumulators: its bias plus any sum of products, and the rounding ties of its
        # shift (where half away from zero and a floor differ).
        sums = list(rng.integers(-lay.in_c * pw.PRODUCT_BOUND, lay.in_c * pw.PRODUCT_BOUND, 3000))
        accs = [int(b[c]) + int(v) for v in sums]
        right = max(-int(s[c]), 0)
        if right and m[c]:
            for h in range(-40, 40):  # accumulators whose high product lands on ... + 0.5
                target = (2 * h + 1) << (right - 1)
                accs.append(int(round(target * 2**31 / int(m[c]))))
        for acc in accs:
            if abs(acc) >= (1 << 30 if form == pw.FAST else bound + 1):
                continue
            assert firmware(form, acc, constants[c], lay.output_offset) == \
                tflm(acc, int(m[c]), int(s[c]), lay.output_offset), (case, c, acc)


def test_a_wrong_constant_is_noticed():
    """The check above can fail: the FAST rounding without its -1 for negatives is caught."""
    multipliers, shifts, biases, _ = CASES["fast"]
    k = pw._constants(pw.FAST, layer(), np.array(multipliers), np.array(shifts))[1]
    wrong = [acc for acc in range(-2000, 0) if
             max(-128, min(127, _s32((2 * acc * int(k[0]) + 2**31 + int(k[1]) * 2**32) >> 32) >> int(k[2])))
             != tflm(acc, multipliers[1], shifts[1], -5)]
    assert wrong


def test_pointwise_pairs_follow_sxtab16():
    """Step 2q pairs input channels (4q, 4q + 2), step 2q + 1 (4q + 1, 4q + 3); per step the 4
    output channels' pairs in order, each weight doubled (FAST) in its half."""
    lay = layer(in_c=8, out_c=4)
    weights = np.arange(32, dtype=np.int8).reshape(4, 8) - 16
    np.testing.assert_array_equal(pw.step_pairs(pw.POINTWISE, lay), [[0, 2], [1, 3], [4, 6], [5, 7]])
    words = pw.pack_layer(pw.POINTWISE, pw.FAST, lay, weights, None, np.full(4, 1 << 30, np.int32),
                          np.full(4, -8, np.int32)).view(np.uint32)
    for step, (a, b) in enumerate([(0, 2), (1, 3), (4, 6), (5, 7)]):
        for o in range(4):
            word = int(words[4 + 4 * step + o])
            low, high = np.array([word & 0xFFFF, word >> 16], np.uint16).view(np.int16)
            assert (low, high) == (2 * weights[o, a], 2 * weights[o, b])


def test_im2col_pairs_rows_then_leftovers():
    """A 3x3 convolution over RGB: each tap row's 9 bytes as 2 words in SXTAB16 order, then the 3
    ninth bytes paired across rows, the last with 0 (-1); over one channel 9 taps in 5 pairs."""
    rgb = layer(in_c=3, out_c=8, kh=3, kw=3, stride_h=2, stride_w=2, in_h=9, in_w=9, out_h=5, out_w=5, pad_h=0,
                pad_w=0)
    assert pw.packed_kind(rgb) == pw.IM2COL and pw.taps(rgb) == 27
    pairs = pw.step_pairs(pw.IM2COL, rgb)
    assert pairs.tolist() == [[0, 2], [1, 3], [4, 6], [5, 7], [9, 11], [10, 12], [13, 15], [14, 16],
                              [18, 20], [19, 21], [22, 24], [23, 25], [8, 17], [26, -1]]
    gray = layer(in_c=1, out_c=8, kh=3, kw=3, depthwise=1, depth_multiplier=8, stride_h=2, stride_w=2)
    assert pw.step_pairs(pw.IM2COL, gray).tolist() == [[0, 1], [2, 3], [4, 5], [6, 7], [8, -1]]
    # A depthwise filter is [1, 3, 3, out_c]: channel c's taps are every out_c-th value.
    filter_values = np.arange(72, dtype=np.int8)
    np.testing.assert_array_equal(pw.flat_weights(gray, filter_values)[3], filter_values[3::8])


def test_shapes_the_kernels_do_not_run_are_not_packed():
    assert pw.packed_kind(layer(in_c=12)) is None            # no 12-input 1x1 kernel
    assert pw.packed_kind(layer(out_c=6)) is None            # groups of 4 outputs
    assert pw.packed_kind(layer(out_c=512)) is None          # more outputs than a call buffers
    assert pw.packed_kind(layer(in_c=16, kh=3, kw=3)) is None  # 3x3 over many channels: not im2col
    bound = np.array([(1 << 31) - 8 * pw.PRODUCT_BOUND + 1] * 4, np.int32)  # an accumulator could overflow
    assert pw.packed_form(layer(), bound, np.full(4, 1 << 30, np.int32), np.full(4, -8, np.int32)) is None


def _depthwise(**fields) -> Layer:
    base = dict(depthwise=1, in_h=8, in_w=8, in_c=8, out_h=8, out_w=8, out_c=8, kh=3, kw=3, pad_h=1, pad_w=1)
    base.update(fields)
    return layer(**base)


def test_depthwise_words_are_the_row_loops_constants_and_weight_pairs():
    """Per channel: its FAST constants, its doubled bias, then per tap row A = (w0, w1) and
    B = (w1, w2) as 16-bit halves. The row loop's four multiply-accumulates of two neighbouring
    outputs over input pairs P0 = (x0, x1), P1 = (x2, x3), evaluated on the packed words, must give
    twice the 3-tap dot products of each output: out0 = SMLAD(P0, A) + SMLABT(P1, B),
    out1 = SMLATB(P0, A) + SMLAD(P1, B)."""
    lay = _depthwise(out_c=8)
    rng = np.random.default_rng(4)
    filter_values = rng.integers(-128, 128, 9 * 8).astype(np.int8)  # [1, 3, 3, 8]
    bias = rng.integers(-5000, 5000, 8).astype(np.int32)
    multipliers = rng.integers(1 << 30, 2**31 - 1, 8).astype(np.int32)
    shifts = -rng.integers(1, 23, 8).astype(np.int32)
    assert pw.packed_form(lay, bias, multipliers, shifts, streamed=True) == pw.FAST
    words = pw.pack_depthwise(lay, filter_values, bias, multipliers, shifts).reshape(8, pw.DEPTHWISE_WORDS)
    np.testing.assert_array_equal(words[:, :3], pw._constants(pw.FAST, lay, multipliers, shifts))
    np.testing.assert_array_equal(words[:, 3], 2 * bias.astype(np.int64))
    halves = lambda w: tuple(np.array([int(w) & 0xFFFF, (int(w) >> 16) & 0xFFFF], np.uint16).view(np.int16))  # noqa: E731
    taps = filter_values.reshape(3, 3, 8)
    for c in range(8):
        for r in range(3):
            x = rng.integers(-128, 129, 4)
            (a_lo, a_hi), (b_lo, b_hi) = halves(words[c, 4 + 2 * r]), halves(words[c, 5 + 2 * r])
            out0 = x[0] * a_lo + x[1] * a_hi + x[2] * b_hi
            out1 = x[1] * a_lo + x[2] * b_lo + x[3] * b_hi
            w = taps[r, :, c].astype(np.int64)
            assert (out0, out1) == (2 * int(x[:3] @ w), 2 * int(x[1:] @ w)), (c, r)


def test_depthwise_is_packed_only_where_the_transposed_kernel_runs_row_by_row():
    assert pw.packed_kind(_depthwise(), streamed=True) == pw.DEPTHWISE
    assert pw.packed_kind(_depthwise()) is None                                   # a whole map at once
    assert pw.packed_kind(_depthwise(in_c=12, out_c=12), streamed=True) is None   # no 12-channel kernel
    assert pw.packed_kind(_depthwise(out_w=3), streamed=True) is None             # rows under 4 outputs
    assert pw.packed_kind(_depthwise(in_c=4, depth_multiplier=2), streamed=True) is None
    assert pw.packed_kind(_depthwise(stride_h=2, stride_w=1), streamed=True) is None
    lay = _depthwise()
    m, b = np.full(8, 1 << 30, np.int32), np.zeros(8, np.int32)
    assert pw.packed_form(lay, b, m, np.full(8, -23, np.int32), streamed=True) is None  # FAST only
    assert pw.packed_form(lay, b, m, np.full(8, 1, np.int32), streamed=True) is None


def test_a_streamed_chain_packs_its_depthwise_layers(small_model):
    from vwwtorch.firmware.codegen.memory_plan.chain_op import rewrite

    assert all(p.kind != pw.DEPTHWISE for p in pw.pack_model(small_model, None).layers)
    streamed = pw.pack_model(rewrite(small_model, 4), None)
    depthwise = [p for p in streamed.layers if p.kind == pw.DEPTHWISE]
    assert len(depthwise) == 1 and depthwise[0].nbytes == 16 * 4 * pw.DEPTHWISE_WORDS
    assert "layer 2" in depthwise[0].name and depthwise[0].form == pw.FAST


@pytest.fixture(scope="module")
def small_model() -> bytes:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(3)
    layers = tf.keras.layers
    inputs = tf.keras.Input((16, 16, 3), batch_size=1)
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inputs)  # IM2COL
    x = layers.Conv2D(16, 1, activation="relu")(x)                                   # 8x8, 8 inputs
    x = layers.DepthwiseConv2D(3, strides=2, padding="same")(x)                      # DEPTHWISE when streamed
    x = layers.Conv2D(32, 1)(x)                                                      # 4x4, 16 inputs
    return convert_keras(tf.keras.Model(inputs, layers.Flatten()(x)), (16, 16, 3), int8=True)


def test_the_budget_packs_the_most_pixels_per_byte_first(small_model):
    everything = pw.pack_model(small_model, None)
    assert [p.kind for p in everything.layers].count(pw.IM2COL) == 1 and len(everything.layers) == 3
    by_value = sorted(everything.layers, key=lambda p: -p.macs / p.nbytes)
    budget = sum(p.nbytes for p in by_value[:2])
    packing = pw.pack_model(small_model, budget)
    assert packing.nbytes <= budget
    assert {p.filter_offset for p in packing.layers} == {p.filter_offset for p in by_value[:2]}
    assert [p.filter_offset for p in packing.left_out] == [by_value[2].filter_offset]
    assert pw.pack_model(small_model, 0).layers == []


def test_each_key_is_its_filter_in_the_model(small_model):
    """The firmware finds a layer by its filter's address: the offset must be where those bytes are."""
    from vwwtorch.contract.tflite import read_tflite

    filters = {t.values().tobytes() for o in read_tflite(small_model).operators
               if o.op in ("CONV_2D", "DEPTHWISE_CONV_2D") for t in o.inputs[1:2]}
    for p in pw.pack_model(small_model, None).layers:
        assert small_model[p.filter_offset:p.filter_offset + p.out_c * p.taps] in filters
    source = pw.render(pw.pack_model(small_model, None), "test")
    assert "kNumPackedConvs = 3;" in source and "g_model_data +" in source


def test_a_flash_budget_above_the_board_is_one_line(small_model, tmp_path):
    from vwwtorch.firmware.codegen.generate import generate

    tflite = tmp_path / "m.tflite"
    tflite.write_bytes(small_model)
    with pytest.raises(UserError, match="--flash-budget"):
        generate(tflite, tmp_path / "out", board="qemu_m4", labels=[f"s{i}" for i in range(512)],
                 flash_budget=2 << 20)

#include "fast_kernels.h"

#if defined(CMSIS_NN) && defined(__ARM_FEATURE_DSP) && (__ARM_FEATURE_DSP == 1) && !defined(VWW_STOCK_KERNELS)
#define VWW_FAST_KERNELS 1
#else
#define VWW_FAST_KERNELS 0
#endif

#if VWW_FAST_KERNELS
#include <arm_acle.h>

#include <cstdint>
#include <cstring>

#include "Include/arm_nnsupportfunctions.h"
#include "packed_weights.h"
#include "tensorflow/lite/c/builtin_op_data.h"
#include "tensorflow/lite/micro/kernels/conv.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#endif

namespace vww {

#if VWW_FAST_KERNELS
namespace {

#define VWW_INLINE inline __attribute__((always_inline))

using InvokeFn = TfLiteStatus (*)(TfLiteContext*, TfLiteNode*);
InvokeFn depthwise_base = nullptr;
InvokeFn conv_base = nullptr;

VWW_INLINE uint32_t Read4(const int8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);  // one LDR: the M4 allows unaligned word loads
  return v;
}

// Requantization of one output channel, exactly as TFLM's MultiplyByQuantizedMultiplier (and
// CMSIS-NN's arm_nn_requantize) does it: the accumulator shifted left by max(shift, 0), the
// rounding doubling high multiply (a * m + 2^30) >> 31, which SMMULR computes as
// (2a * m + 2^31) >> 32 when |a| < 2^30, then a right shift by r = max(-shift, 0) rounding half
// away from zero: (h + 2^(r-1) - (h < 0)) >> r. The kernels check that no accumulator can reach
// 2^30 (`Requantizable`) and leave other layers to CMSIS-NN.
struct ChannelQ {
  int32_t multiplier;
  int32_t left;    // 1 + max(shift, 0): the doubling is part of the left shift
  int32_t round;   // 2^(r - 1), or 0 when r = 0
  int32_t negfix;  // -1 when r > 0 (one less for negatives), else 0
  int32_t right;   // r
};

constexpr int32_t kMaxAccumulator = 1 << 30;

VWW_INLINE int32_t Smmulr(int32_t a, int32_t b) {  // (a * b + 2^31) >> 32
  int32_t result;
  __asm__("smmulr %0, %1, %2" : "=r"(result) : "r"(a), "r"(b));
  return result;
}

VWW_INLINE int32_t Smmlar(int32_t a, int32_t b, int32_t c) {  // c + ((a * b + 2^31) >> 32), exactly
  int32_t result;
  __asm__("smmlar %0, %1, %2, %3" : "=r"(result) : "r"(a), "r"(b), "r"(c));
  return result;
}

// Four int8 values (each already saturated, in the low byte) -> one word, b0 lowest.
VWW_INLINE uint32_t Bytes4(int32_t b0, int32_t b1, int32_t b2, int32_t b3) {
  uint32_t word = static_cast<uint32_t>(b0);
  __asm__("bfi %0, %1, #8, #8\n\tbfi %0, %2, #16, #8\n\tbfi %0, %3, #24, #8" : "+&r"(word) : "r"(b1), "r"(b2), "r"(b3));
  return word;
}

VWW_INLINE int32_t Requantize(int32_t acc, const ChannelQ& q) {
  const int32_t high = Smmulr(acc << q.left, q.multiplier);
  return (high + q.round + ((high >> 31) & q.negfix)) >> q.right;
}

// The same when the shift is negative (left = 1, negfix = -1): the common case, 3 instructions less.
VWW_INLINE int32_t RequantizeRight(int32_t acc, const ChannelQ& q) {
  const int32_t high = Smmulr(acc << 1, q.multiplier);
  return (high + q.round + (high >> 31)) >> q.right;
}

bool AllRight(const ChannelQ* q, int count) {
  for (int i = 0; i < count; ++i) {
    if (q[i].right == 0) return false;
  }
  return true;
}

// Whether no channel's accumulator, shifted left, can reach 2^30: |bias| plus the largest sum of
// `taps` products of a 9-bit input (byte + offset) and an 8-bit weight.
bool Requantizable(const int32_t* shift, const int32_t* bias, int channels, int taps) {
  for (int c = 0; c < channels; ++c) {
    if (shift[c] < -31 || shift[c] > 20) return false;
    const int32_t left = shift[c] > 0 ? shift[c] : 0;
    const int32_t headroom = (kMaxAccumulator >> left) - taps * 256 * 128;
    if (headroom <= 0) return false;
    if (bias != nullptr && (bias[c] >= headroom || bias[c] <= -headroom)) return false;
  }
  return true;
}

ChannelQ MakeQ(int32_t multiplier, int32_t shift) {
  const int32_t right = shift < 0 ? -shift : 0;
  return {multiplier, 1 + (shift > 0 ? shift : 0), right > 0 ? 1 << (right - 1) : 0, right > 0 ? -1 : 0, right};
}

struct Output {
  int32_t offset;
  uint32_t min4, max4;  // the activation range, each as 4 packed bytes
  bool clamp;           // false when the range is all of int8 (SSAT alone clamps)
};

Output MakeOutput(int32_t offset, int32_t act_min, int32_t act_max) {
  return {offset, (static_cast<uint32_t>(act_min) & 0xFFu) * 0x01010101u,
          (static_cast<uint32_t>(act_max) & 0xFFu) * 0x01010101u, act_min > -128 || act_max < 127};
}

// Four int8 in a word clamped to the activation range bytewise (SSUB8 sets the GE flags, SEL picks).
VWW_INLINE uint32_t ClampBytes(uint32_t packed, const Output& o) {
  const int32_t min4 = static_cast<int32_t>(o.min4), max4 = static_cast<int32_t>(o.max4);
  __ssub8(static_cast<int32_t>(packed), min4);  // GE per byte: packed >= min
  const int32_t above_min = __sel(static_cast<int32_t>(packed), min4);
  __ssub8(above_min, max4);  // GE per byte: value >= max
  return static_cast<uint32_t>(__sel(max4, above_min));
}

// Four requantized channels (offset not yet added) -> 4 int8 in one word, offset added, clamped to
// int8 (SSAT) and to the activation range.
VWW_INLINE uint32_t Pack4(int32_t r0, int32_t r1, int32_t r2, int32_t r3, const Output& o) {
  const uint32_t packed = Bytes4(__ssat(r0 + o.offset, 8), __ssat(r1 + o.offset, 8), __ssat(r2 + o.offset, 8),
                                 __ssat(r3 + o.offset, 8));
  return o.clamp ? ClampBytes(packed, o) : packed;
}

VWW_INLINE void Write4(int8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

// Two 16-bit values in one word (lo in the bottom half), the operand layout of SMLAD and SXTAB16.
VWW_INLINE uint32_t Pair16(int32_t lo, int32_t hi) {
  return (static_cast<uint32_t>(lo) & 0xFFFFu) | (static_cast<uint32_t>(hi) << 16);
}

// Four accumulators of channels q[0..3] -> 4 int8 in one word.
VWW_INLINE uint32_t Finish4(int32_t a0, int32_t a1, int32_t a2, int32_t a3, const ChannelQ* q, bool all_right,
                            const Output& o) {
  if (all_right) {
    return Pack4(RequantizeRight(a0, q[0]), RequantizeRight(a1, q[1]), RequantizeRight(a2, q[2]),
                 RequantizeRight(a3, q[3]), o);
  }
  return Pack4(Requantize(a0, q[0]), Requantize(a1, q[1]), Requantize(a2, q[2]), Requantize(a3, q[3]), o);
}

struct Tensor4 {  // an NHWC int8 tensor with N = 1
  int8_t* data;
  int h, w, c;
};

Tensor4 Shape(const TfLiteEvalTensor* t) {
  const TfLiteIntArray* d = t->dims;
  return {const_cast<int8_t*>(tflite::micro::GetTensorData<int8_t>(t)), d->data[1], d->data[2], d->data[3]};
}

bool IsNhwcInt8(const TfLiteEvalTensor* t) {
  return t != nullptr && t->type == kTfLiteInt8 && t->dims->size == 4 && t->dims->data[0] == 1;
}

const TfLiteEvalTensor* Bias(TfLiteContext* context, TfLiteNode* node) {
  if (node->inputs->size < 3 || node->inputs->data[2] < 0) return nullptr;
  const TfLiteEvalTensor* bias = tflite::micro::GetEvalInput(context, node, 2);
  return bias != nullptr && bias->type == kTfLiteInt32 ? bias : nullptr;
}

// --- depthwise 3x3 ------------------------------------------------------------------------------

struct Depthwise {
  Tensor4 in, out;
  const int8_t* filter;  // [1, 3, 3, out.c]
  const int32_t* bias;   // [out.c] or null
  int stride_h, stride_w, pad_h, pad_w;
  int32_t input_offset;
  const int32_t* multiplier;
  const int32_t* shift;
  Output output;
};

// Weights of 4 channels at one tap, sign-extended: channels (0, 2) and (1, 3) as 16-bit pairs.
struct Tap4 {
  uint32_t w02, w13;
};

// Accumulates one tap of 4 channels: the input bytes sign-extended with the offset added (SXTAB16),
// one 16x16 multiply-accumulate per channel.
#define VWW_DW_TAP(IN, T)                                           \
  do {                                                              \
    const uint32_t xv = Read4(IN);                                  \
    const Tap4 tap_ = (T);                                          \
    const uint32_t x02 = SXTAB16(offset2, xv);                      \
    const uint32_t x13 = SXTAB16_RORn(offset2, xv, 8);              \
    a0 = SMLABB(x02, tap_.w02, a0);                                 \
    a2 = SMLATT(x02, tap_.w02, a2);                                 \
    a1 = SMLABB(x13, tap_.w13, a1);                                 \
    a3 = SMLATT(x13, tap_.w13, a3);                                 \
  } while (0)

// One input channel per output channel (depth multiplier 1), kC channels. Channels go 4 at a time
// in the outer loop, so their weights and constants stay put over the image; kC as a constant makes
// every tap's channel stride an immediate offset.
template <int kC>
__attribute__((noinline)) void DepthwisePerChannel(const Depthwise& d) {
  constexpr int C = kC;
  const int row = d.in.w * C;
  const uint32_t offset2 = Pair16(d.input_offset, d.input_offset);
  const Output o = d.output;
  for (int c = 0; c < C; c += 4) {
    Tap4 taps[9];
    for (int t = 0; t < 9; ++t) {
      const uint32_t wv = Read4(d.filter + t * C + c);
      taps[t] = {SXTB16(wv), SXTB16_RORn(wv, 8)};
    }
    const ChannelQ q[4] = {MakeQ(d.multiplier[c], d.shift[c]), MakeQ(d.multiplier[c + 1], d.shift[c + 1]),
                           MakeQ(d.multiplier[c + 2], d.shift[c + 2]), MakeQ(d.multiplier[c + 3], d.shift[c + 3])};
    const bool all_right = AllRight(q, 4);
    const int32_t b0 = d.bias ? d.bias[c] : 0, b1 = d.bias ? d.bias[c + 1] : 0;
    const int32_t b2 = d.bias ? d.bias[c + 2] : 0, b3 = d.bias ? d.bias[c + 3] : 0;
    int8_t* out = d.out.data + c;
    for (int oy = 0; oy < d.out.h; ++oy) {
      const int iy0 = oy * d.stride_h - d.pad_h;
      const int ky0 = iy0 < 0 ? -iy0 : 0;
      const int ky1 = d.in.h - iy0 < 3 ? d.in.h - iy0 : 3;
      const bool rows_inside = ky0 == 0 && ky1 == 3;
      const int8_t* x = d.in.data + iy0 * row - d.pad_w * C + c;  // tap (0, 0) of ox = 0
      for (int ox = 0; ox < d.out.w; ++ox, x += d.stride_w * C) {
        const int ix0 = ox * d.stride_w - d.pad_w;
        int32_t a0 = b0, a1 = b1, a2 = b2, a3 = b3;
        if (rows_inside && ix0 >= 0 && ix0 + 3 <= d.in.w) {
          const int8_t* x1 = x + row;
          const int8_t* x2 = x1 + row;
          VWW_DW_TAP(x, taps[0]);
          VWW_DW_TAP(x + C, taps[1]);
          VWW_DW_TAP(x + 2 * C, taps[2]);
          VWW_DW_TAP(x1, taps[3]);
          VWW_DW_TAP(x1 + C, taps[4]);
          VWW_DW_TAP(x1 + 2 * C, taps[5]);
          VWW_DW_TAP(x2, taps[6]);
          VWW_DW_TAP(x2 + C, taps[7]);
          VWW_DW_TAP(x2 + 2 * C, taps[8]);
        } else {  // padded taps hold the input zero point: (zp + offset) * w = 0, so skip them
          const int kx0 = ix0 < 0 ? -ix0 : 0;
          const int kx1 = d.in.w - ix0 < 3 ? d.in.w - ix0 : 3;
          for (int ky = ky0; ky < ky1; ++ky) {
            for (int kx = kx0; kx < kx1; ++kx) {
              VWW_DW_TAP(x + ky * row + kx * C, taps[ky * 3 + kx]);
            }
          }
        }
        Write4(out, Finish4(a0, a1, a2, a3, q, all_right, o));
        out += C;
      }
    }
  }
}

constexpr int kMaxOneInputChannels = 64;

// One input channel feeding every output channel (the first layer: a 3x3 conv over a gray image).
// The 9 taps go as 16-bit pairs through SMLAD: (x0, x1) . (w0, w1), ..., (x8, 0) . (w8, 0).
void DepthwiseOneInput(const Depthwise& d) {
  const int M = d.out.c;
  uint32_t wpairs[kMaxOneInputChannels][5];
  ChannelQ q[kMaxOneInputChannels];
  int32_t bias[kMaxOneInputChannels];
  for (int c = 0; c < M; ++c) {
    int32_t w[10];
    for (int t = 0; t < 9; ++t) w[t] = d.filter[t * M + c];
    w[9] = 0;
    for (int k = 0; k < 5; ++k) {
      wpairs[c][k] = Pair16(w[2 * k], w[2 * k + 1]);
    }
    q[c] = MakeQ(d.multiplier[c], d.shift[c]);
    bias[c] = d.bias != nullptr ? d.bias[c] : 0;
  }
  bool all_right[kMaxOneInputChannels / 4];
  for (int c = 0; c < M; c += 4) all_right[c / 4] = AllRight(q + c, 4);
  const Output o = d.output;
  int8_t* out = d.out.data;
  for (int oy = 0; oy < d.out.h; ++oy) {
    const int iy0 = oy * d.stride_h - d.pad_h;
    for (int ox = 0; ox < d.out.w; ++ox) {
      const int ix0 = ox * d.stride_w - d.pad_w;
      // The 9 inputs with the offset, 0 for padding ((zp + offset) = 0), as 16-bit pairs.
      int32_t v[10];
      if (iy0 >= 0 && iy0 + 3 <= d.in.h && ix0 >= 0 && ix0 + 3 <= d.in.w) {
        const int8_t* x = d.in.data + iy0 * d.in.w + ix0;
#pragma GCC unroll 3
        for (int ky = 0; ky < 3; ++ky, x += d.in.w) {
          v[ky * 3] = x[0] + d.input_offset;
          v[ky * 3 + 1] = x[1] + d.input_offset;
          v[ky * 3 + 2] = x[2] + d.input_offset;
        }
      } else {
        for (int ky = 0; ky < 3; ++ky) {
          const int iy = iy0 + ky;
          for (int kx = 0; kx < 3; ++kx) {
            const int ix = ix0 + kx;
            const bool inside = iy >= 0 && iy < d.in.h && ix >= 0 && ix < d.in.w;
            v[ky * 3 + kx] = inside ? d.in.data[iy * d.in.w + ix] + d.input_offset : 0;
          }
        }
      }
      v[9] = 0;
      uint32_t p[5];
#pragma GCC unroll 5
      for (int k = 0; k < 5; ++k) {
        p[k] = Pair16(v[2 * k], v[2 * k + 1]);
      }
      for (int c = 0; c < M; c += 4) {
        int32_t a[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
          const uint32_t* w = wpairs[c + j];
          int32_t acc = bias[c + j];
          acc = SMLAD(p[0], w[0], acc);
          acc = SMLAD(p[1], w[1], acc);
          acc = SMLAD(p[2], w[2], acc);
          acc = SMLAD(p[3], w[3], acc);
          a[j] = SMLAD(p[4], w[4], acc);
        }
        Write4(out + c, Finish4(a[0], a[1], a[2], a[3], q + c, all_right[c / 4], o));
      }
      out += M;
    }
  }
}

// --- 1x1 convolution over few input channels ----------------------------------------------------

constexpr int kMaxPointwiseOutputs = 64;
constexpr int kMaxPointwiseWords = 1024;  // out_c x in_c / 2 weights as 16-bit pairs
// Sign-extended weights of a layer with 32 inputs (up to 4 KB): static, to keep them off the stack.
uint32_t wide_pointwise_weights[kMaxPointwiseWords];

struct Pointwise {
  Tensor4 in, out;
  const int8_t* filter;  // [out.c, 1, 1, in.c]
  const int32_t* bias;
  int32_t input_offset;
  const int32_t* multiplier;
  const int32_t* shift;
  Output output;
};

// kIn input channels (8, 16 or 32): each pixel's inputs become kIn/2 words of 16-bit pairs (offset
// added), each output channel kIn/2 SMLADs against its weights extended the same way.
template <int kIn>
void PointwiseFewInputs(const Pointwise& d, uint32_t* __restrict w, ChannelQ* __restrict q,
                        int32_t* __restrict bias) {
  constexpr int kWords = kIn / 2;
  const int M = d.out.c;
  for (int oc = 0; oc < M; ++oc) {
    for (int i = 0; i < kIn; i += 4) {
      const uint32_t wv = Read4(d.filter + oc * kIn + i);
      w[oc * kWords + i / 2] = SXTB16(wv);              // channels i, i + 2
      w[oc * kWords + i / 2 + 1] = SXTB16_RORn(wv, 8);  // channels i + 1, i + 3
    }
    q[oc] = MakeQ(d.multiplier[oc], d.shift[oc]);
    bias[oc] = d.bias != nullptr ? d.bias[oc] : 0;
  }
  bool all_right[kMaxPointwiseOutputs / 4];
  for (int oc = 0; oc < M; oc += 4) all_right[oc / 4] = AllRight(q + oc, 4);
  const uint32_t offset2 = Pair16(d.input_offset, d.input_offset);
  const Output o = d.output;
  const int pixels = d.in.h * d.in.w;
  const int8_t* x = d.in.data;
  int8_t* out = d.out.data;
  for (int p = 0; p < pixels; ++p, x += kIn, out += M) {
    uint32_t xs[kWords];
#pragma GCC unroll 8
    for (int i = 0; i < kIn; i += 4) {
      const uint32_t xv = Read4(x + i);
      xs[i / 2] = SXTAB16(offset2, xv);
      xs[i / 2 + 1] = SXTAB16_RORn(offset2, xv, 8);
    }
    const uint32_t* wc = w;
    for (int oc = 0; oc < M; oc += 4) {
      int32_t a[4];
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j, wc += kWords) {
        int32_t acc = bias[oc + j];
#pragma GCC unroll 16
        for (int k = 0; k < kWords; ++k) acc = SMLAD(xs[k], wc[k], acc);
        a[j] = acc;
      }
      Write4(out + oc, Finish4(a[0], a[1], a[2], a[3], q + oc, all_right[oc / 4], o));
    }
  }
}

// --- 1x1 convolution with packed weights -------------------------------------------------------
//
// Weights widened to 16-bit pairs and laid out in flash in the order this loop reads them, by
// `firmware generate` (packed_weights.py describes the layout and its two forms). Each group of 4
// output channels is computed for 2 pixels at once in 8 accumulators, so each loaded weight pair
// serves 2 SMLADs and each input pair 4. The 2 pixels' inputs are widened once into a small buffer
// (offset added, SXTAB16 order).

constexpr int kMaxPackedOutputs = 1024;
constexpr int kMaxPackedChecked = 64;
// Per table entry: 0 not yet checked, 1 its constants are exactly TFLM's for the layer, 2 they
// differ (the table belongs to another model or version: not used).
uint8_t packed_checked[kMaxPackedChecked];

constexpr int PackedConstants(int32_t form) { return form == kPackedFast ? 3 : 4; }
constexpr int PackedGroupWords(int steps, int32_t form) { return 4 + 4 * steps + 4 * PackedConstants(form); }

// One group's biases and multiply-accumulates: kSteps input pairs of 2 pixels (xs: [step][pixel])
// against the 4 channels' weight pairs (w: [step][channel], after the 4 biases; w is left at the
// constants). Fully unrolled with immediate offsets in 14 registers (8 accumulators, 2 inputs, 2
// weights, 2 pointers); each step's loads go in pairs, which the M4 pipelines (4 loads in 5 cycles,
// 2 in 3): 16 cycles for 16 MACs. The first step takes pixel 1's bias from pixel 0's register.
template <int kSteps>
VWW_INLINE void BiasMac4x2(const uint32_t* xs, const int32_t*& w, int32_t (&a)[8]) {
  uint32_t x0, x1, wa, wb;
  __asm__ volatile(
      "ldrd %[a00], %[a10], [%[w]], #8\n\t"  // LDM would load in register order, not this one
      "ldrd %[a20], %[a30], [%[w]], #8\n\t"
      "ldr %[x0], [%[xs]]\n\t"
      "ldr %[x1], [%[xs], #4]\n\t"
      "ldr %[wa], [%[w]]\n\t"
      "ldr %[wb], [%[w], #4]\n\t"
      "smlad %[a01], %[x1], %[wa], %[a00]\n\t"
      "smlad %[a00], %[x0], %[wa], %[a00]\n\t"
      "smlad %[a11], %[x1], %[wb], %[a10]\n\t"
      "smlad %[a10], %[x0], %[wb], %[a10]\n\t"
      "ldr %[wa], [%[w], #8]\n\t"
      "ldr %[wb], [%[w], #12]\n\t"
      "smlad %[a21], %[x1], %[wa], %[a20]\n\t"
      "smlad %[a20], %[x0], %[wa], %[a20]\n\t"
      "smlad %[a31], %[x1], %[wb], %[a30]\n\t"
      "smlad %[a30], %[x0], %[wb], %[a30]\n\t"
      ".set vww_k, 1\n\t"
      ".rept %c[steps] - 1\n\t"
      "ldr %[x0], [%[xs], #(vww_k * 8)]\n\t"
      "ldr %[x1], [%[xs], #(vww_k * 8 + 4)]\n\t"
      "ldr %[wa], [%[w], #(vww_k * 16)]\n\t"
      "ldr %[wb], [%[w], #(vww_k * 16 + 4)]\n\t"
      "smlad %[a00], %[x0], %[wa], %[a00]\n\t"
      "smlad %[a01], %[x1], %[wa], %[a01]\n\t"
      "smlad %[a10], %[x0], %[wb], %[a10]\n\t"
      "smlad %[a11], %[x1], %[wb], %[a11]\n\t"
      "ldr %[wa], [%[w], #(vww_k * 16 + 8)]\n\t"
      "ldr %[wb], [%[w], #(vww_k * 16 + 12)]\n\t"
      "smlad %[a20], %[x0], %[wa], %[a20]\n\t"
      "smlad %[a21], %[x1], %[wa], %[a21]\n\t"
      "smlad %[a30], %[x0], %[wb], %[a30]\n\t"
      "smlad %[a31], %[x1], %[wb], %[a31]\n\t"
      ".set vww_k, vww_k + 1\n\t"
      ".endr\n\t"
      "add %[w], %[w], #(%c[steps] * 16)"
      : [a00] "=&r"(a[0]), [a01] "=&r"(a[1]), [a10] "=&r"(a[2]), [a11] "=&r"(a[3]), [a20] "=&r"(a[4]),
        [a21] "=&r"(a[5]), [a30] "=&r"(a[6]), [a31] "=&r"(a[7]), [x0] "=&r"(x0), [x1] "=&r"(x1), [wa] "=&r"(wa),
        [wb] "=&r"(wb), [w] "+r"(w)
      : [xs] "r"(xs), [steps] "i"(kSteps)
      : "memory");
}

// FAST form: the group's 8 outputs as 2 words of 4 int8 (pixel 0's in a[0], pixel 1's in a[1]); w
// walks over the 4 channels' constants {multiplier, rounding, right shift}. The accumulators are
// doubled, so SMMLAR's product is TFLM's doubling high multiply, and it adds `rounding`, which holds
// the right shift's 2^(r-1) and the output offset x 2^r: TFLM's ((high + 2^(r-1) - (high < 0)) >> r)
// + offset, saturated, where the sign of the accumulator stands for the sign of `high` (they differ
// only when high is 0, where the -1 cannot change the result). 13 cycles a channel.
#define VWW_REQUANT_CHANNEL(A0, A1)                        \
  "ldrd %[m], %[k], [%[w]], #8\n\t"                        \
  "ldr %[r], [%[w]], #4\n\t"                               \
  "add %[t], %[k], %[" A0 "], asr #31\n\t"                 \
  "smmlar %[" A0 "], %[" A0 "], %[m], %[t]\n\t"            \
  "asr %[" A0 "], %[" A0 "], %[r]\n\t"                     \
  "ssat %[" A0 "], #8, %[" A0 "]\n\t"                      \
  "add %[t], %[k], %[" A1 "], asr #31\n\t"                 \
  "smmlar %[" A1 "], %[" A1 "], %[m], %[t]\n\t"            \
  "asr %[" A1 "], %[" A1 "], %[r]\n\t"                     \
  "ssat %[" A1 "], #8, %[" A1 "]\n\t"

VWW_INLINE void RequantizeFast8(int32_t (&a)[8], const int32_t*& w) {
  int32_t m, k, r, t;
  __asm__ volatile(
      VWW_REQUANT_CHANNEL("a00", "a01")
      VWW_REQUANT_CHANNEL("a10", "a11")
      "bfi %[a00], %[a10], #8, #8\n\t"
      "bfi %[a01], %[a11], #8, #8\n\t"
      VWW_REQUANT_CHANNEL("a20", "a21")
      "bfi %[a00], %[a20], #16, #8\n\t"
      "bfi %[a01], %[a21], #16, #8\n\t"
      VWW_REQUANT_CHANNEL("a30", "a31")
      "bfi %[a00], %[a30], #24, #8\n\t"
      "bfi %[a01], %[a31], #24, #8"
      : [a00] "+r"(a[0]), [a01] "+r"(a[1]), [a10] "+r"(a[2]), [a11] "+r"(a[3]), [a20] "+r"(a[4]),
        [a21] "+r"(a[5]), [a30] "+r"(a[6]), [a31] "+r"(a[7]), [m] "=&r"(m), [k] "=&r"(k), [r] "=&r"(r),
        [t] "=&r"(t), [w] "+r"(w)
      :
      : "memory");
}
#undef VWW_REQUANT_CHANNEL

// EXACT form, one output: the high word of x * multiplier + a 64-bit constant (SMLAL) holds TFLM's
// doubling high multiply and its rounding right shift at once, for any accumulator (packed_weights.py
// derives the constant); `f` = left | shift after the high word << 8 | (1 when it rounds a right
// shift) << 16, and a right shift of a negative x takes 2^31 off the constant.
VWW_INLINE int32_t RequantizeExact(int32_t acc, const int32_t* k, int32_t offset) {
  const uint32_t f = static_cast<uint32_t>(k[3]);
  const int32_t x = static_cast<int32_t>(static_cast<uint32_t>(acc) << (f & 0xFFu));
  const uint32_t negative = static_cast<uint32_t>(x) & ((f << 15) & 0x80000000u);
  const int64_t constant =
      static_cast<int64_t>((static_cast<uint64_t>(static_cast<uint32_t>(k[2])) << 32) | static_cast<uint32_t>(k[1])) -
      negative;
  const int32_t high = static_cast<int32_t>((static_cast<int64_t>(x) * k[0] + constant) >> 32);
  return __ssat((high >> ((f >> 8) & 0xFFu)) + offset, 8);
}

VWW_INLINE void RequantizeExact8(int32_t (&a)[8], const int32_t*& w, int32_t offset) {
  int32_t v[8];
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    v[2 * j] = RequantizeExact(a[2 * j], w + 4 * j, offset);
    v[2 * j + 1] = RequantizeExact(a[2 * j + 1], w + 4 * j, offset);
  }
  w += 16;
  a[0] = static_cast<int32_t>(Bytes4(v[0], v[2], v[4], v[6]));
  a[1] = static_cast<int32_t>(Bytes4(v[1], v[3], v[5], v[7]));
}

// Two pixels' kIn inputs, offset added, as 16-bit pairs in the order the packed weights use: per 4
// channels c..c+3, (c, c + 2) then (c + 1, c + 3), each pair for pixel 0 then pixel 1.
template <int kIn>
struct PointwiseGather {
  static constexpr int kSteps = kIn / 2;
  VWW_INLINE void operator()(const ConvLayer& l, int pixel, bool second, uint32_t offset2, uint32_t* xs) const {
    const int8_t* x0 = l.in + pixel * kIn;
    const int8_t* x1 = second ? x0 + kIn : x0;
#pragma GCC unroll 8
    for (int c = 0; c < kIn; c += 4, xs += 4) {
      const uint32_t v0 = Read4(x0 + c), v1 = Read4(x1 + c);
      xs[0] = SXTAB16(offset2, v0);
      xs[1] = SXTAB16(offset2, v1);
      xs[2] = SXTAB16_RORn(offset2, v0, 8);
      xs[3] = SXTAB16_RORn(offset2, v1, 8);
    }
  }
};

// The 3x3 taps of a pixel over 1 or 3 input channels (kRowBytes = 3 x channels bytes per tap row), in
// the order packed_weights.py's step_pairs gives: each tap row's whole words as SXTAB16 pairs, then
// the bytes left over in each row paired across rows, the last with 0. Padding is 0 (the input zero
// point plus the offset). One pixel's pairs go to xs[0], xs[2], ...
template <int kRowBytes>
struct Im2colGather {
  static constexpr int kWords = kRowBytes / 4, kLeft = kRowBytes % 4;
  static constexpr int kSteps = 3 * 2 * kWords + (3 * kLeft + 1) / 2;

  VWW_INLINE void Pixel(const ConvLayer& l, int pixel, uint32_t offset2, uint32_t* xs) const {
    const int oy = pixel / l.out_w, ox = pixel - oy * l.out_w;
    const int iy0 = oy * l.stride_h - l.pad_h, ix0 = ox * l.stride_w - l.pad_w;
    const int row_bytes = l.in_w * l.in_c;
    int32_t left[3 * kLeft + 1];
    if (iy0 >= 0 && iy0 + 3 <= l.in_h && ix0 >= 0 && ix0 + 3 <= l.in_w) {
      const int8_t* p = l.in + iy0 * row_bytes + ix0 * l.in_c;
#pragma GCC unroll 3
      for (int r = 0; r < 3; ++r, p += row_bytes) {
#pragma GCC unroll 2
        for (int q = 0; q < kWords; ++q) {
          const uint32_t v = Read4(p + 4 * q);
          xs[2 * (2 * (r * kWords + q))] = SXTAB16(offset2, v);
          xs[2 * (2 * (r * kWords + q) + 1)] = SXTAB16_RORn(offset2, v, 8);
        }
#pragma GCC unroll 3
        for (int b = 0; b < kLeft; ++b) left[r * kLeft + b] = p[4 * kWords + b] + l.input_offset;
      }
    } else {
      int32_t v[3][kRowBytes];
      for (int r = 0; r < 3; ++r) {
        const int iy = iy0 + r;
        for (int b = 0; b < kRowBytes; ++b) {
          const int ix = ix0 + b / l.in_c;
          const bool inside = iy >= 0 && iy < l.in_h && ix >= 0 && ix < l.in_w;
          v[r][b] = inside ? l.in[iy * row_bytes + ix * l.in_c + b % l.in_c] + l.input_offset : 0;
        }
        for (int q = 0; q < kWords; ++q) {
          xs[2 * (2 * (r * kWords + q))] = Pair16(v[r][4 * q], v[r][4 * q + 2]);
          xs[2 * (2 * (r * kWords + q) + 1)] = Pair16(v[r][4 * q + 1], v[r][4 * q + 3]);
        }
        for (int b = 0; b < kLeft; ++b) left[r * kLeft + b] = v[r][4 * kWords + b];
      }
    }
    left[3 * kLeft] = 0;
#pragma GCC unroll 5
    for (int k = 0; k < (3 * kLeft + 1) / 2; ++k) {
      xs[2 * (3 * 2 * kWords + k)] = Pair16(left[2 * k], left[2 * k + 1]);
    }
  }

  VWW_INLINE void operator()(const ConvLayer& l, int pixel, bool second, uint32_t offset2, uint32_t* xs) const {
    Pixel(l, pixel, offset2, xs);
    Pixel(l, second ? pixel + 1 : pixel, offset2, xs + 1);
  }
};

// Every output pixel pair: its inputs gathered as 16-bit pairs ([step][pixel]), then each group of 4
// output channels.
template <typename Gather>
__attribute__((noinline)) void PackedConvRun(const ConvLayer& l, const PackedConv& p) {
  constexpr int kSteps = Gather::kSteps;
  uint32_t xs[2 * kSteps];
  int8_t spare[kMaxPackedOutputs];  // where an odd last pixel's copy goes
  const uint32_t offset2 = Pair16(l.input_offset, l.input_offset);
  const Output o = MakeOutput(l.output_offset, l.act_min, l.act_max);
  const bool fast = p.form == kPackedFast;
  const int pixels = l.out_h * l.out_w, out_c = l.out_c;
  const Gather gather;
  for (int i = 0; i < pixels; i += 2) {
    int8_t* out = l.out + i * out_c;
    int8_t* const end = out + out_c;
    const bool second = i + 1 < pixels;  // an odd last pixel pairs with itself
    const int other_offset = second ? out_c : static_cast<int>(spare - out);
    gather(l, i, second, offset2, xs);
    const int32_t* w = p.words;
    for (; out != end; out += 4) {
      int32_t a[8];
      BiasMac4x2<kSteps>(xs, w, a);
      if (fast) {
        RequantizeFast8(a, w);
      } else {
        RequantizeExact8(a, w, l.output_offset);
      }
      uint32_t first = static_cast<uint32_t>(a[0]), other = static_cast<uint32_t>(a[1]);
      if (o.clamp) {
        first = ClampBytes(first, o);
        other = ClampBytes(other, o);
      }
      Write4(out, first);
      Write4(out + other_offset, other);
    }
  }
}

// The table entry of `filter`. Every entry is compared, so that every layer pays the same lookup.
const PackedConv* FindPacked(const int8_t* filter) {
  const auto* key = reinterpret_cast<const unsigned char*>(filter);
  const PackedConv* found = nullptr;
  for (int i = 0; i < kNumPackedConvs; ++i) {
    if (kPackedConvs[i].filter == key) found = &kPackedConvs[i];
  }
  return found;
}

// The kind of packed kernel a layer's shape fits, or -1.
int32_t PackedKind(const ConvLayer& l) {
  if (l.out_c % 4 != 0 || l.out_c > kMaxPackedOutputs) return -1;
  if (!l.depthwise && l.kh == 1 && l.kw == 1 && l.stride_h == 1 && l.stride_w == 1 && l.pad_h == 0 &&
      l.pad_w == 0 && l.in_h == l.out_h && l.in_w == l.out_w &&
      (l.in_c == 8 || l.in_c == 16 || l.in_c == 32 || l.in_c == 64 || l.in_c == 128 || l.in_c == 256)) {
    return kPackedPointwise;
  }
  const bool one_input = l.depthwise && l.in_c == 1 && l.depth_multiplier == l.out_c;
  if (l.kh == 3 && l.kw == 3 && (l.stride_h == 1 || l.stride_h == 2) && (l.stride_w == 1 || l.stride_w == 2) &&
      l.pad_h <= 1 && l.pad_w <= 1 && (one_input || !l.depthwise) && (l.in_c == 1 || l.in_c == 3)) {
    return kPackedIm2col;
  }
  return -1;
}

// Whether the table's words are exactly what TFLM computes for this layer: the biases, and each
// channel's constants derived here again from TFLM's multiplier and shift (packed_weights.py's
// formulas), with the accumulator bounds each form relies on.
bool PackedMatches(const PackedConv& p, const ConvLayer& l) {
  if (p.kind != PackedKind(l) || p.in_c != l.in_c || p.out_c != l.out_c ||
      (p.form != kPackedFast && p.form != kPackedExact)) {
    return false;
  }
  const int taps = l.kh * l.kw * (l.depthwise ? 1 : l.in_c);
  const int steps = p.kind == kPackedPointwise ? l.in_c / 2 : l.in_c == 3 ? Im2colGather<9>::kSteps : Im2colGather<3>::kSteps;
  const int64_t products = int64_t{taps} * 256 * 128;
  for (int c = 0; c < l.out_c; ++c) {
    const int32_t* group = p.words + (c / 4) * PackedGroupWords(steps, p.form);
    const int32_t* k = group + 4 + 4 * steps + (c % 4) * PackedConstants(p.form);
    const int32_t shift = l.shift[c], multiplier = l.multiplier[c];
    const int64_t bias = l.bias != nullptr ? l.bias[c] : 0;
    const int64_t bound = (bias < 0 ? -bias : bias) + products;
    if (multiplier < 0 || shift < -31 || shift > 30 || bound >= (int64_t{1} << 31) || k[0] != multiplier) return false;
    const int32_t right = shift < 0 ? -shift : 0;
    if (p.form == kPackedFast) {
      const int64_t rounding = (int64_t{1} << (right - 1)) + l.output_offset * (int64_t{1} << right);
      if (right < 1 || right > 22 || bound >= (int64_t{1} << 30) || group[c % 4] != 2 * bias || k[1] != rounding ||
          k[2] != right) {
        return false;
      }
    } else {
      const bool rounds = right > 0;
      const int32_t left = rounds || multiplier == 0 ? 0 : shift + 1;
      if (!rounds && multiplier != 0 && bound >= (int64_t{1} << (30 - shift))) return false;
      const uint64_t constant = rounds ? (uint64_t{1} << 30) + (uint64_t{1} << (30 + right))
                                       : multiplier == 0 ? 0 : uint64_t{1} << 31;
      const uint32_t f = static_cast<uint32_t>(left) | static_cast<uint32_t>(rounds ? right - 1 : 0) << 8 |
                         static_cast<uint32_t>(rounds) << 16;
      if (group[c % 4] != bias || static_cast<uint32_t>(k[1]) != static_cast<uint32_t>(constant) ||
          static_cast<uint32_t>(k[2]) != static_cast<uint32_t>(constant >> 32) || static_cast<uint32_t>(k[3]) != f) {
        return false;
      }
    }
  }
  return true;
}

// The packed words of `l` when the table has them and they check out.
const PackedConv* UsablePacked(const ConvLayer& l) {
  const PackedConv* p = FindPacked(l.filter);
  if (p == nullptr) return nullptr;
  const int index = static_cast<int>(p - kPackedConvs);
  uint8_t state = index < kMaxPackedChecked ? packed_checked[index] : 0;
  if (state == 0) {
    state = PackedMatches(*p, l) ? 1 : 2;
    if (index < kMaxPackedChecked) packed_checked[index] = state;
  }
  return state == 1 ? p : nullptr;
}

bool PackedCovers(const ConvLayer& l) { return PackedKind(l) >= 0 && UsablePacked(l) != nullptr; }

void PackedRun(const ConvLayer& l) {
  const PackedConv& p = *UsablePacked(l);
  if (p.kind == kPackedIm2col) {
    if (l.in_c == 3) {
      PackedConvRun<Im2colGather<9>>(l, p);
    } else {
      PackedConvRun<Im2colGather<3>>(l, p);
    }
    return;
  }
  switch (l.in_c) {
    case 8: PackedConvRun<PointwiseGather<8>>(l, p); break;
    case 16: PackedConvRun<PointwiseGather<16>>(l, p); break;
    case 32: PackedConvRun<PointwiseGather<32>>(l, p); break;
    case 64: PackedConvRun<PointwiseGather<64>>(l, p); break;
    case 128: PackedConvRun<PointwiseGather<128>>(l, p); break;
    default: PackedConvRun<PointwiseGather<256>>(l, p); break;
  }
}

bool DepthwiseCovers(const ConvLayer& l) {
  if (l.kh != 3 || l.kw != 3 || (l.stride_h != 1 && l.stride_h != 2) || (l.stride_w != 1 && l.stride_w != 2)) {
    return false;
  }
  // Channel counts of MobileNetV1 0.25-0.5 up to 128 (an immediate stride each); with more channels
  // the maps are 3x3 and smaller, where CMSIS-NN is as quick.
  const bool per_channel = l.in_c == l.out_c && l.depth_multiplier == 1 &&
                           (l.in_c == 8 || l.in_c == 16 || l.in_c == 32 || l.in_c == 64 || l.in_c == 128);
  const bool one_input = l.in_c == 1 && l.out_c % 4 == 0 && l.out_c <= kMaxOneInputChannels &&
                         l.depth_multiplier == l.out_c;
  return (per_channel || one_input) && Requantizable(l.shift, l.bias, l.out_c, 9);
}

void DepthwiseRun(const ConvLayer& l) {
  const Depthwise d{{const_cast<int8_t*>(l.in), l.in_h, l.in_w, l.in_c}, {l.out, l.out_h, l.out_w, l.out_c},
                    l.filter, l.bias, l.stride_h, l.stride_w, l.pad_h, l.pad_w, l.input_offset,
                    l.multiplier, l.shift, MakeOutput(l.output_offset, l.act_min, l.act_max)};
  if (l.in_c == 1) {
    DepthwiseOneInput(d);
  } else if (l.in_c == 8) {
    DepthwisePerChannel<8>(d);
  } else if (l.in_c == 16) {
    DepthwisePerChannel<16>(d);
  } else if (l.in_c == 32) {
    DepthwisePerChannel<32>(d);
  } else if (l.in_c == 64) {
    DepthwisePerChannel<64>(d);
  } else {
    DepthwisePerChannel<128>(d);
  }
}

bool PointwiseCovers(const ConvLayer& l) {
  return l.kh == 1 && l.kw == 1 && l.stride_h == 1 && l.stride_w == 1 && l.pad_h == 0 && l.pad_w == 0 &&
         (l.in_c == 8 || l.in_c == 16 || l.in_c == 32) && l.out_c % 4 == 0 && l.out_c <= kMaxPointwiseOutputs &&
         l.out_c * l.in_c / 2 <= kMaxPointwiseWords && l.in_h == l.out_h && l.in_w == l.out_w &&
         Requantizable(l.shift, l.bias, l.out_c, l.in_c);
}

void PointwiseRun(const ConvLayer& l) {
  const Pointwise d{{const_cast<int8_t*>(l.in), l.in_h, l.in_w, l.in_c}, {l.out, l.out_h, l.out_w, l.out_c},
                    l.filter, l.bias, l.input_offset, l.multiplier, l.shift,
                    MakeOutput(l.output_offset, l.act_min, l.act_max)};
  ChannelQ q[kMaxPointwiseOutputs];
  int32_t bias_copy[kMaxPointwiseOutputs];
  if (l.in_c == 8) {
    uint32_t w[kMaxPointwiseOutputs * 4];
    PointwiseFewInputs<8>(d, w, q, bias_copy);
  } else if (l.in_c == 16) {
    uint32_t w[kMaxPointwiseOutputs * 8];
    PointwiseFewInputs<16>(d, w, q, bias_copy);
  } else {
    PointwiseFewInputs<32>(d, wide_pointwise_weights, q, bias_copy);
  }
}

// The layer a TFLM node describes, or false when it is not an int8 NHWC layer with dilation 1.
bool NodeLayer(TfLiteContext* context, TfLiteNode* node, bool depthwise, ConvLayer* layer) {
  // CMSIS-NN's and the reference kernel's op data both start with OpDataConv.
  const auto& data = *static_cast<const tflite::OpDataConv*>(node->user_data);
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, 0);
  const TfLiteEvalTensor* filter = tflite::micro::GetEvalInput(context, node, 1);
  TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, 0);
  if (!IsNhwcInt8(input) || filter == nullptr || filter->type != kTfLiteInt8 || filter->dims->size != 4 ||
      !IsNhwcInt8(output)) {
    return false;
  }
  int stride_h, stride_w, dilation_h, dilation_w, multiplier = 1;
  if (depthwise) {
    const auto& params = *static_cast<const TfLiteDepthwiseConvParams*>(node->builtin_data);
    stride_h = params.stride_height, stride_w = params.stride_width;
    dilation_h = params.dilation_height_factor, dilation_w = params.dilation_width_factor;
    multiplier = params.depth_multiplier;
  } else {
    const auto& params = *static_cast<const TfLiteConvParams*>(node->builtin_data);
    stride_h = params.stride_height, stride_w = params.stride_width;
    dilation_h = params.dilation_height_factor, dilation_w = params.dilation_width_factor;
  }
  if (dilation_h != 1 || dilation_w != 1) return false;
  const Tensor4 in = Shape(input), out = Shape(output);
  if (!depthwise && (filter->dims->data[0] != out.c || filter->dims->data[3] != in.c)) return false;
  const TfLiteEvalTensor* bias = Bias(context, node);
  *layer = {depthwise, in.data, in.h, in.w, in.c, out.data, out.h, out.w, out.c,
            tflite::micro::GetTensorData<int8_t>(filter),
            bias != nullptr ? tflite::micro::GetTensorData<int32_t>(bias) : nullptr,
            filter->dims->data[1], filter->dims->data[2], stride_h, stride_w, data.padding.height,
            data.padding.width, multiplier, -data.input_zero_point, data.output_zero_point,
            data.output_activation_min, data.output_activation_max, data.per_channel_output_multiplier,
            data.per_channel_output_shift};
  return true;
}

bool DepthwiseAnyCovers(const ConvLayer& l) { return PackedCovers(l) || DepthwiseCovers(l); }

void DepthwiseAnyRun(const ConvLayer& l) {
  if (PackedCovers(l)) {
    PackedRun(l);
  } else {
    DepthwiseRun(l);
  }
}

TfLiteStatus DepthwiseInvoke(TfLiteContext* context, TfLiteNode* node) {
  ConvLayer layer;
  if (NodeLayer(context, node, true, &layer) && DepthwiseAnyCovers(layer)) {
    DepthwiseAnyRun(layer);
    return kTfLiteOk;
  }
  return depthwise_base(context, node);
}

bool ConvCovers(const ConvLayer& l) { return PackedCovers(l) || PointwiseCovers(l); }

void ConvRun(const ConvLayer& l) {
  if (PackedCovers(l)) {
    PackedRun(l);
  } else {
    PointwiseRun(l);
  }
}

TfLiteStatus ConvInvoke(TfLiteContext* context, TfLiteNode* node) {
  ConvLayer layer;
  if (NodeLayer(context, node, false, &layer) && ConvCovers(layer)) {
    ConvRun(layer);
    return kTfLiteOk;
  }
  return conv_base(context, node);
}

}  // namespace

TFLMRegistration FastDepthwiseConv2D(TFLMRegistration base) {
  depthwise_base = base.invoke;
  base.invoke = DepthwiseInvoke;
  return base;
}

TFLMRegistration FastConv2D(TFLMRegistration base) {
  conv_base = base.invoke;
  base.invoke = ConvInvoke;
  return base;
}

bool FastKernelCovers(const ConvLayer& layer) {
  return layer.depthwise ? DepthwiseAnyCovers(layer) : ConvCovers(layer);
}

void RunCoveredFastKernel(const ConvLayer& layer) {
  if (layer.depthwise) {
    DepthwiseAnyRun(layer);
  } else {
    ConvRun(layer);
  }
}

#else  // no CMSIS-NN or no DSP extension: the registrations as they are

TFLMRegistration FastDepthwiseConv2D(TFLMRegistration base) { return base; }
TFLMRegistration FastConv2D(TFLMRegistration base) { return base; }
bool FastKernelCovers(const ConvLayer&) { return false; }
void RunCoveredFastKernel(const ConvLayer&) {}

#endif  // VWW_FAST_KERNELS

}  // namespace vww

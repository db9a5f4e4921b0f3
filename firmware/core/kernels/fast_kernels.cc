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
InvokeFn depthwise_base = nullptr, depthwise_prepare = nullptr;
InvokeFn conv_base = nullptr, conv_prepare = nullptr;

VWW_INLINE uint32_t Read4(const int8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);  // one LDR: the M4 allows unaligned word loads
  return v;
}

constexpr int32_t kMaxAccumulator = 1 << 30;

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

struct Output {
  uint32_t min4, max4;  // the activation range, each as 4 packed bytes
  bool clamp;           // false when the range is all of int8 (SSAT alone clamps)
};

Output MakeOutput(int32_t act_min, int32_t act_max) {
  return {(static_cast<uint32_t>(act_min) & 0xFFu) * 0x01010101u, (static_cast<uint32_t>(act_max) & 0xFFu) * 0x01010101u,
          act_min > -128 || act_max < 127};
}

// Four int8 in a word clamped to the activation range bytewise (SSUB8 sets the GE flags, SEL picks).
VWW_INLINE uint32_t ClampBytes(uint32_t packed, const Output& o) {
  const int32_t min4 = static_cast<int32_t>(o.min4), max4 = static_cast<int32_t>(o.max4);
  __ssub8(static_cast<int32_t>(packed), min4);  // GE per byte: packed >= min
  const int32_t above_min = __sel(static_cast<int32_t>(packed), min4);
  __ssub8(above_min, max4);  // GE per byte: value >= max
  return static_cast<uint32_t>(__sel(max4, above_min));
}

VWW_INLINE void Write4(int8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

// Two 16-bit values in one word (lo in the bottom half), the operand layout of SMLAD and SXTAB16.
VWW_INLINE uint32_t Pair16(int32_t lo, int32_t hi) {
  return (static_cast<uint32_t>(lo) & 0xFFFFu) | (static_cast<uint32_t>(hi) << 16);
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

// --- packed kernel: 1x1 convolutions and the first layer ---------------------------------------
//
// Weights widened to 16-bit pairs and laid out in flash in the order this loop reads them, by
// `firmware generate` (packed_weights.py describes the layout and its three forms). Each group of 4
// output channels is computed for 2 pixels at once in 8 accumulators, so each loaded weight pair
// serves 2 SMLADs and each input pair 4. The 2 pixels' inputs (a 1x1 layer's channels, or the
// first layer's 9 or 27 taps) are gathered once into a small buffer as 16-bit pairs, offset added.

constexpr int kMaxPackedOutputs = 256;
constexpr int kMaxPackedChecked = 64;
// Per table entry: 0 not yet checked, 1 its constants are exactly TFLM's for the layer, 2 they
// differ (the table belongs to another model or version: not used).
uint8_t packed_checked[kMaxPackedChecked];

constexpr int PackedConstants(int32_t form) { return form == kPackedFast ? 3 : 4; }  // words per channel
constexpr int PackedGroupWords(int steps, int32_t form) { return 4 + 4 * steps + 4 * PackedConstants(form); }

// The loop over a pixel pair's groups of 4 output channels, all of it in registers: per group, its
// biases (the first step takes pixel 1's bias from pixel 0's register) and its steps of 16 MACs, 2
// input pairs against 4 channels' weight pairs each, unrolled with immediate offsets (14 registers:
// 8 accumulators, 2 inputs, 2 weights, 2 pointers; each step's loads go in pairs, which the M4
// pipelines: 16 cycles a step); then the 8 outputs requantized (FAST, EXACT) and packed into 2
// words, pixel 0's and pixel 1's 4 channels, and stored; or (GENERAL) the accumulators stored for C.
// Layers with more than 32 steps run them 32 at a time. The loop's pointers, form and counts live in
// its own stack frame: [0] out, [4] end, [8] other, [12] form, [16] raw, [20] chunks, [24, 28] spill.
struct GroupLoop {
  int8_t* out;       // pixel 0's first output; pixel 1's at out + other
  int8_t* end;       // pixel 0's end
  int32_t other;
  int32_t form;      // kPackedFast, kPackedExact, or kPackedGeneral: the accumulators go to `raw`
  int32_t* raw;      // per group, its 8 accumulators (GENERAL)
  int32_t chunks;    // 32-step chunks after the first
};

#define VWW_MAC_FIRST_STEP                                  \
  "ldrd %[a00], %[a10], [%[w]], #8\n\t"                    \
  "ldrd %[a20], %[a30], [%[w]], #8\n\t"                    \
  "ldr %[x0], [%[xs]]\n\t"                                 \
  "ldr %[x1], [%[xs], #4]\n\t"                             \
  "ldr %[wa], [%[w]]\n\t"                                  \
  "ldr %[wb], [%[w], #4]\n\t"                              \
  "smlad %[a01], %[x1], %[wa], %[a00]\n\t"                 \
  "smlad %[a00], %[x0], %[wa], %[a00]\n\t"                 \
  "smlad %[a11], %[x1], %[wb], %[a10]\n\t"                 \
  "smlad %[a10], %[x0], %[wb], %[a10]\n\t"                 \
  "ldr %[wa], [%[w], #8]\n\t"                              \
  "ldr %[wb], [%[w], #12]\n\t"                             \
  "smlad %[a21], %[x1], %[wa], %[a20]\n\t"                 \
  "smlad %[a20], %[x0], %[wa], %[a20]\n\t"                 \
  "smlad %[a31], %[x1], %[wb], %[a30]\n\t"                 \
  "smlad %[a30], %[x0], %[wb], %[a30]\n\t"
// Steps FROM..TO-1 at immediate offsets from xs and w.
#define VWW_MAC_STEPS(FROM, TO)                             \
  ".set vww_k, " FROM "\n\t"                               \
  ".rept " TO " - " FROM "\n\t"                            \
  "ldr %[x0], [%[xs], #(vww_k * 8)]\n\t"                   \
  "ldr %[x1], [%[xs], #(vww_k * 8 + 4)]\n\t"               \
  "ldr %[wa], [%[w], #(vww_k * 16)]\n\t"                   \
  "ldr %[wb], [%[w], #(vww_k * 16 + 4)]\n\t"               \
  "smlad %[a00], %[x0], %[wa], %[a00]\n\t"                 \
  "smlad %[a01], %[x1], %[wa], %[a01]\n\t"                 \
  "smlad %[a10], %[x0], %[wb], %[a10]\n\t"                 \
  "smlad %[a11], %[x1], %[wb], %[a11]\n\t"                 \
  "ldr %[wa], [%[w], #(vww_k * 16 + 8)]\n\t"               \
  "ldr %[wb], [%[w], #(vww_k * 16 + 12)]\n\t"              \
  "smlad %[a20], %[x0], %[wa], %[a20]\n\t"                 \
  "smlad %[a21], %[x1], %[wa], %[a21]\n\t"                 \
  "smlad %[a30], %[x0], %[wb], %[a30]\n\t"                 \
  "smlad %[a31], %[x1], %[wb], %[a31]\n\t"                 \
  ".set vww_k, vww_k + 1\n\t"                              \
  ".endr\n\t"
// The chunks after the first 32 steps: xs and w move on by 32 steps each time, xs back at the end.
#define VWW_MAC_CHUNKS                                      \
  "ldr %[x0], [sp, #20]\n\t"                               \
  "cmp %[x0], #0\n\t"                                      \
  "beq 10f\n\t"                                            \
  "11:\n\t"                                                \
  "str %[x0], [sp, #24]\n\t"                               \
  "add %[xs], %[xs], #256\n\t"                             \
  VWW_MAC_STEPS("0", "32")                                 \
  "add %[w], %[w], #512\n\t"                               \
  "ldr %[x0], [sp, #24]\n\t"                               \
  "subs %[x0], %[x0], #1\n\t"                              \
  "bne 11b\n\t"                                            \
  "ldr %[x0], [sp, #20]\n\t"                               \
  "sub %[xs], %[xs], %[x0], lsl #8\n\t"                    \
  "10:\n\t"
// FAST: the accumulators are doubled, so SMMLAR's product is TFLM's doubling high multiply, and it
// adds `rounding` = 2^(r-1) + offset x 2^r: TFLM's ((high + 2^(r-1) - (high < 0)) >> r) + offset,
// saturated, where the accumulator's sign stands for high's (they differ only when high is 0, where
// the -1 cannot change the result). Constants {multiplier, rounding, right} in x0, x1, wa; 13
// cycles a channel.
#define VWW_FAST_CHANNEL(A0, A1)                            \
  "ldrd %[x0], %[x1], [%[w]], #8\n\t"                      \
  "ldr %[wa], [%[w]], #4\n\t"                              \
  "add %[wb], %[x1], %[" A0 "], asr #31\n\t"               \
  "smmlar %[" A0 "], %[" A0 "], %[x0], %[wb]\n\t"          \
  "asr %[" A0 "], %[" A0 "], %[wa]\n\t"                    \
  "ssat %[" A0 "], #8, %[" A0 "]\n\t"                      \
  "add %[wb], %[x1], %[" A1 "], asr #31\n\t"               \
  "smmlar %[" A1 "], %[" A1 "], %[x0], %[wb]\n\t"          \
  "asr %[" A1 "], %[" A1 "], %[wa]\n\t"                    \
  "ssat %[" A1 "], #8, %[" A1 "]\n\t"
// EXACT: the high word of acc x multiplier + a 64-bit constant (less 2^31 for a negative
// accumulator) holds TFLM's doubling high multiply and its rounding right shift at once, for any
// accumulator; then the rest of the shift and the offset, both in the last constant (ASR reads the
// shift from its low byte). Constants {multiplier, low, high, shift | offset << 16} in x0, x1, wa,
// wb; T and H are 2 more free registers. 20 cycles a channel.
#define VWW_EXACT_OUTPUT(A, T, H)                           \
  "and %[" T "], %[" A "], #0x80000000\n\t"                \
  "subs %[" T "], %[x1], %[" T "]\n\t"                     \
  "sbc %[" H "], %[wa], #0\n\t"                            \
  "smlal %[" T "], %[" H "], %[" A "], %[x0]\n\t"          \
  "asr %[" H "], %[" H "], %[wb]\n\t"                      \
  "add %[" H "], %[" H "], %[wb], asr #16\n\t"             \
  "ssat %[" A "], #8, %[" H "]\n\t"
#define VWW_EXACT_CHANNEL(A0, A1, T, H)                     \
  "ldrd %[x0], %[x1], [%[w]], #8\n\t"                      \
  "ldrd %[wa], %[wb], [%[w]], #8\n\t"                      \
  VWW_EXACT_OUTPUT(A0, T, H)                               \
  VWW_EXACT_OUTPUT(A1, T, H)
#define VWW_PACK(SHIFT, B0, B1)                             \
  "bfi %[a00], %[" B0 "], #" SHIFT ", #8\n\t"              \
  "bfi %[a01], %[" B1 "], #" SHIFT ", #8\n\t"
#define VWW_GROUP_LOOP(MAC)                                 \
  "sub sp, sp, #32\n\t"                                    \
  "ldrd %[x0], %[x1], [%[wb]]\n\t"                         \
  "strd %[x0], %[x1], [sp]\n\t"                            \
  "ldrd %[x0], %[x1], [%[wb], #8]\n\t"                     \
  "strd %[x0], %[x1], [sp, #8]\n\t"                        \
  "ldrd %[x0], %[x1], [%[wb], #16]\n\t"                    \
  "strd %[x0], %[x1], [sp, #16]\n\t"                       \
  "3:\n\t"                                                 \
  MAC                                                      \
  "ldr %[x0], [sp, #12]\n\t"                               \
  "cmp %[x0], #1\n\t"                                      \
  "bgt 6f\n\t"                                             \
  "beq 4f\n\t"                                             \
  VWW_FAST_CHANNEL("a00", "a01")                           \
  VWW_FAST_CHANNEL("a10", "a11")                           \
  VWW_PACK("8", "a10", "a11")                              \
  VWW_FAST_CHANNEL("a20", "a21")                           \
  VWW_PACK("16", "a20", "a21")                             \
  VWW_FAST_CHANNEL("a30", "a31")                           \
  VWW_PACK("24", "a30", "a31")                             \
  "b 5f\n\t"                                               \
  "4:\n\t"                                                 \
  "strd %[a30], %[a31], [sp, #24]\n\t"                     \
  VWW_EXACT_CHANNEL("a00", "a01", "a30", "a31")            \
  VWW_EXACT_CHANNEL("a10", "a11", "a30", "a31")            \
  VWW_PACK("8", "a10", "a11")                              \
  VWW_EXACT_CHANNEL("a20", "a21", "a30", "a31")            \
  VWW_PACK("16", "a20", "a21")                             \
  "ldrd %[a30], %[a31], [sp, #24]\n\t"                     \
  VWW_EXACT_CHANNEL("a30", "a31", "a10", "a11")            \
  VWW_PACK("24", "a30", "a31")                             \
  "5:\n\t"                                                 \
  "ldrd %[x0], %[x1], [sp]\n\t"                            \
  "ldr %[wa], [sp, #8]\n\t"                                \
  "str %[a00], [%[x0]]\n\t"                                \
  "str %[a01], [%[x0], %[wa]]\n\t"                         \
  "7:\n\t"                                                 \
  "add %[x0], %[x0], #4\n\t"                               \
  "str %[x0], [sp]\n\t"                                    \
  "cmp %[x0], %[x1]\n\t"                                   \
  "bne 3b\n\t"                                             \
  "b 8f\n\t"                                               \
  "6:\n\t" /* GENERAL: the raw accumulators, requantized in C; w past the constants */ \
  "ldr %[x0], [sp, #16]\n\t"                               \
  "strd %[a00], %[a01], [%[x0]], #8\n\t"                   \
  "strd %[a10], %[a11], [%[x0]], #8\n\t"                   \
  "strd %[a20], %[a21], [%[x0]], #8\n\t"                   \
  "strd %[a30], %[a31], [%[x0]], #8\n\t"                   \
  "str %[x0], [sp, #16]\n\t"                               \
  "add %[w], %[w], #64\n\t"                                \
  "ldrd %[x0], %[x1], [sp]\n\t"                            \
  "b 7b\n\t"                                               \
  "8:\n\t"                                                 \
  "add sp, sp, #32"

// kSteps steps (up to 32), or 32 and then loop->chunks more chunks of 32 (kSteps = 0).
template <int kSteps>
__attribute__((noinline)) void PackedGroupLoop(const uint32_t* xs, const int32_t* w, const GroupLoop* loop) {
  int32_t a00, a01, a10, a11, a20, a21, a30, a31;
  uint32_t x0, x1, wa;
  const GroupLoop* wb = loop;  // the loop's fields, then a register of the step
  if (kSteps == 0) {
    __asm__ volatile(
        VWW_GROUP_LOOP(VWW_MAC_FIRST_STEP VWW_MAC_STEPS("1", "32") "add %[w], %[w], #512\n\t" VWW_MAC_CHUNKS)
        : [a00] "=&r"(a00), [a01] "=&r"(a01), [a10] "=&r"(a10), [a11] "=&r"(a11), [a20] "=&r"(a20),
          [a21] "=&r"(a21), [a30] "=&r"(a30), [a31] "=&r"(a31), [x0] "=&r"(x0), [x1] "=&r"(x1), [wa] "=&r"(wa),
          [wb] "+r"(wb), [w] "+r"(w), [xs] "+r"(xs)
        :
        : "cc", "memory");
  } else {
    __asm__ volatile(
        VWW_GROUP_LOOP(VWW_MAC_FIRST_STEP VWW_MAC_STEPS("1", "%c[steps]") "add %[w], %[w], #(%c[steps] * 16)\n\t")
        : [a00] "=&r"(a00), [a01] "=&r"(a01), [a10] "=&r"(a10), [a11] "=&r"(a11), [a20] "=&r"(a20),
          [a21] "=&r"(a21), [a30] "=&r"(a30), [a31] "=&r"(a31), [x0] "=&r"(x0), [x1] "=&r"(x1), [wa] "=&r"(wa),
          [wb] "+r"(wb), [w] "+r"(w)
        : [xs] "r"(xs), [steps] "i"(kSteps)
        : "cc", "memory");
  }
}
#undef VWW_MAC_FIRST_STEP
#undef VWW_MAC_STEPS
#undef VWW_MAC_CHUNKS
#undef VWW_FAST_CHANNEL
#undef VWW_EXACT_OUTPUT
#undef VWW_EXACT_CHANNEL
#undef VWW_PACK
#undef VWW_GROUP_LOOP

// GENERAL, one output: the high word of x * multiplier + a 64-bit constant (SMLAL) holds TFLM's
// doubling high multiply and its rounding right shift, the accumulator shifted left first;
// `f` = left | shift after the high word << 8 | (1 when it rounds a right shift) << 16, and a right
// shift of a negative x takes 2^31 off the constant.
VWW_INLINE int32_t RequantizeGeneral(int32_t acc, const int32_t* k, int32_t offset) {
  const uint32_t f = static_cast<uint32_t>(k[3]);
  const int32_t x = static_cast<int32_t>(static_cast<uint32_t>(acc) << (f & 0xFFu));
  const uint32_t negative = static_cast<uint32_t>(x) & ((f << 15) & 0x80000000u);
  const int64_t constant =
      static_cast<int64_t>((static_cast<uint64_t>(static_cast<uint32_t>(k[2])) << 32) | static_cast<uint32_t>(k[1])) -
      negative;
  const int32_t high = static_cast<int32_t>((static_cast<int64_t>(x) * k[0] + constant) >> 32);
  return __ssat((high >> ((f >> 8) & 0xFFu)) + offset, 8);
}

// GENERAL: a pixel pair's raw accumulators (per group of 4 channels: channel-major pairs of pixels)
// requantized into out (pixel 0) and out + other (pixel 1).
void RequantizeGeneralPixels(const int32_t* raw, const int32_t* words, int group_words, int out_c,
                             int32_t offset, int8_t* out, int other) {
  for (int c = 0; c < out_c; ++c, raw += 2) {
    const int32_t* k = words + (c / 4) * group_words + group_words - 16 + (c % 4) * 4;
    out[c] = static_cast<int8_t>(RequantizeGeneral(raw[0], k, offset));
    out[c + other] = static_cast<int8_t>(RequantizeGeneral(raw[1], k, offset));
  }
}

// Two pixels' kIn inputs, offset added, as 16-bit pairs in the order the packed weights use: per 4
// channels c..c+3, (c, c + 2) then (c + 1, c + 3), each pair for pixel 0 then pixel 1.
template <int kIn>
struct PointwiseGather {
  static constexpr int kSteps = kIn / 2;
  VWW_INLINE void operator()(const ConvLayer& l, int pixel, int, int, bool second, uint32_t offset2,
                             uint32_t* xs) const {
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

  VWW_INLINE void Pixel(const ConvLayer& l, int oy, int ox, uint32_t offset2, uint32_t* xs) const {
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

  // Pixel `pixel` at (oy, ox), and the one after it in raster order (or itself again).
  VWW_INLINE void operator()(const ConvLayer& l, int, int oy, int ox, bool second, uint32_t offset2,
                             uint32_t* xs) const {
    Pixel(l, oy, ox, offset2, xs);
    if (!second) {
      Pixel(l, oy, ox, offset2, xs + 1);
    } else if (ox + 1 < l.out_w) {
      Pixel(l, oy, ox + 1, offset2, xs + 1);
    } else {
      Pixel(l, oy + 1, 0, offset2, xs + 1);
    }
  }
};

// Every output pixel pair: its inputs gathered as 16-bit pairs ([step][pixel]), then each group of 4
// output channels.
template <typename Gather>
__attribute__((noinline)) void PackedConvRun(const ConvLayer& l, const PackedConv& p) {
  constexpr int kSteps = Gather::kSteps;
  uint32_t xs[2 * kSteps];
  int8_t spare[kMaxPackedOutputs];  // where an odd last pixel's copy goes
  int32_t raw[2 * kMaxPackedOutputs];
  const uint32_t offset2 = Pair16(l.input_offset, l.input_offset);
  const Output o = MakeOutput(l.act_min, l.act_max);
  const int pixels = l.out_h * l.out_w, out_c = l.out_c;
  const Gather gather;
  int oy = 0, ox = 0;  // pixel i's position
  for (int i = 0; i < pixels; i += 2) {
    int8_t* out = l.out + i * out_c;
    const bool second = i + 1 < pixels;  // an odd last pixel pairs with itself
    const int other_offset = second ? out_c : static_cast<int>(spare - out);
    gather(l, i, oy, ox, second, offset2, xs);
    ox += 2;
    while (ox >= l.out_w) ox -= l.out_w, ++oy;
    if (kSteps >= 32) {
      const GroupLoop loop = {out, out + out_c, other_offset, p.form, raw, kSteps / 32 - 1};
      PackedGroupLoop<0>(xs, p.words, &loop);
    } else {
      const GroupLoop loop = {out, out + out_c, other_offset, p.form, raw, 0};
      PackedGroupLoop<kSteps>(xs, p.words, &loop);
    }
    if (p.form == kPackedGeneral) {
      RequantizeGeneralPixels(raw, p.words, PackedGroupWords(kSteps, p.form), out_c, l.output_offset, out,
                              other_offset);
    }
    if (o.clamp) {
      for (int8_t* v = out; v != out + out_c; v += 4) {
        Write4(v, ClampBytes(Read4(v), o));
        Write4(v + other_offset, ClampBytes(Read4(v + other_offset), o));
      }
    }
  }
}

// The table entry of `filter`: a binary search, the table being in the order of the filters in the
// model (packed_weights.py sorts it so).
const PackedConv* FindPacked(const int8_t* filter) {
  const auto* key = reinterpret_cast<const unsigned char*>(filter);
  int lo = 0, hi = kNumPackedConvs;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (kPackedConvs[mid].filter < key) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo < kNumPackedConvs && kPackedConvs[lo].filter == key ? &kPackedConvs[lo] : nullptr;
}

// Whether a kPackedDepthwise entry holds exactly the words the transposed kernel would compute for
// `l`, a layer it covers (in the depthwise section below).
bool DepthwiseMatches(const PackedConv& p, const ConvLayer& l);

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
  if (l.depthwise && l.kh == 3 && l.kw == 3 && l.in_c == l.out_c && l.depth_multiplier == 1) return kPackedDepthwise;
  return -1;
}

// Whether the table's words are exactly what TFLM computes for this layer: the biases, and each
// channel's constants derived here again from TFLM's multiplier and shift (packed_weights.py's
// formulas), with the accumulator bounds each form relies on.
bool PackedMatches(const PackedConv& p, const ConvLayer& l) {
  if (p.kind == kPackedDepthwise && PackedKind(l) == kPackedDepthwise) return DepthwiseMatches(p, l);
  if (p.kind != PackedKind(l) || p.in_c != l.in_c || p.out_c != l.out_c ||
      (p.form != kPackedFast && p.form != kPackedExact && p.form != kPackedGeneral)) {
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
    } else if (p.form == kPackedExact) {
      const int32_t r = multiplier == 0 ? 1 : right;
      const uint64_t constant = (uint64_t{1} << 30) + (uint64_t{1} << (30 + r));
      const uint32_t f = static_cast<uint32_t>(r - 1) | static_cast<uint32_t>(l.output_offset) << 16;
      if (r < 1 || group[c % 4] != bias || static_cast<uint32_t>(k[1]) != static_cast<uint32_t>(constant) ||
          static_cast<uint32_t>(k[2]) != static_cast<uint32_t>(constant >> 32) || static_cast<uint32_t>(k[3]) != f) {
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

// The packed weights of a layer a packed kernel runs, or null. The lookup comes first: most layers
// have no entry, and an entry's first check (PackedMatches) includes the kind.
const PackedConv* PackedFor(const ConvLayer& l) { return UsablePacked(l); }

void PackedRun(const ConvLayer& l, const PackedConv& p) {
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

// --- depthwise 3x3 over transposed rows ---------------------------------------------------------
//
// SMLAD multiplies two 16-bit pairs into one sum, so a depthwise layer, where each output channel
// sees only its own input channel, needs two taps of one channel in one register. The input rows are
// therefore transposed, 4 channels at a time, into words (x[u][c], x[u + 1][c]): two horizontally
// adjacent pixels of channel c, offset added, 0 in the padding. Each input row is transposed once
// per group of 4 channels, into one of 3 slots (row mod 3) of a small buffer laid out [column
// pair][slot][channel]; an output row then reads its 3 tap rows at fixed offsets. For two outputs
// side by side (stride 1, columns u, u + 1 from pairs P0 = (u, u + 1), P1 = (u + 2, u + 3)) each tap
// row costs two loads and four multiply-accumulates with A = (w0, w1), B = (w1, w2):
// out0 += SMLAD(P0, A) + SMLABT(P1, B), out1 += SMLATB(P0, A) + SMLAD(P1, B); at stride 2 the pairs
// are (2u, 2u + 1) and the next. Weights and biases are doubled and requantized as the FAST packed
// form (SMMLAR with the rounding and the offset in one constant).
//
// Each channel's 10 constant words (kDepthwiseWords: multiplier, rounding, right shift, doubled
// bias, then A and B of each tap row) are computed per group of 4 channels when a layer runs, or,
// for the layers of a streamed chain, which run once per output row, read from the table
// `firmware generate` packed (kPackedDepthwise, the same words).

constexpr int kMaxTransposedPairs = 64;  // column pairs of a transposed row (input rows up to ~126 wide)
constexpr int kPairWords = 12;           // 3 slots x 4 channels
constexpr int kMaxTransposedChannels = 128;
constexpr int kDepthwiseWords = 10;      // constant words per channel

// One channel's run along one output row, as the row loop reads it.
struct TransposedJob {
  const int32_t* k;     // the channel's kDepthwiseWords words
  const uint32_t* win;  // the channel's word of the first column pair
  int8_t* out;
  const uint32_t* end;  // where `win` stops
};
static_assert(sizeof(TransposedJob) == 16, "the row loop's offsets");

int Slot(int row) { return ((row % 3) + 3) % 3; }

VWW_INLINE uint32_t LowHalves(uint32_t lo, uint32_t hi) {  // (lo's bottom half, hi's bottom half)
  uint32_t r;
  __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(lo), "r"(hi));
  return r;
}

VWW_INLINE uint32_t HighHalves(uint32_t lo, uint32_t hi) {  // (lo's top half, hi's top half)
  uint32_t r;
  __asm__("pkhtb %0, %2, %1, asr #16" : "=r"(r) : "r"(lo), "r"(hi));
  return r;
}

// One column pair of 4 channels: words a and b hold pixels u and u + 1. Their halves are paired
// first (channels 0 and 1 of both pixels, then 2 and 3), so that SXTAB16 yields each channel's pair
// with the offset added: 6 data instructions for 4 words.
VWW_INLINE void TransposePair(uint32_t a, uint32_t b, uint32_t offset2, uint32_t* w) {
  const uint32_t lo = LowHalves(a, b), hi = HighHalves(a, b);
  w[0] = SXTAB16(offset2, lo);
  w[1] = SXTAB16_RORn(offset2, lo, 8);
  w[2] = SXTAB16(offset2, hi);
  w[3] = SXTAB16_RORn(offset2, hi, 8);
}

// How a transposed row's column pairs j (pixels u = 2j - pad_w and u + 1) meet the row, in order:
// `left` pairs with only their second pixel inside (0 or 1), `inside` pairs, `right_one` pairs with
// only their first pixel inside (0 or 1), then `right_none` pairs wholly in the padding.
struct RowPlan {
  int32_t channels;      // bytes from one pixel to the next
  uint32_t offset2;      // the input offset in both halves
  uint32_t zero_word;    // 4 padding bytes: the input zero point, 0 once the offset is added
  int16_t pairs, left, inside, right_one, right_none;
};

RowPlan PlanRows(const ConvLayer& l, int pairs) {
  RowPlan t;
  t.channels = l.in_c;
  t.offset2 = Pair16(l.input_offset, l.input_offset);
  t.zero_word = (static_cast<uint32_t>(-l.input_offset) & 0xFFu) * 0x01010101u;
  t.pairs = static_cast<int16_t>(pairs);
  t.left = static_cast<int16_t>(l.pad_w);  // pad_w is 0 or 1: pair 0 is (padding, pixel 0) or inside
  int inside = (l.in_w - 2 + l.pad_w) / 2 + 1 - l.pad_w;  // pairs up to the one ending at pixel in_w - 1
  if (inside > pairs - t.left) inside = pairs - t.left;
  if (inside < 0) inside = 0;
  t.inside = static_cast<int16_t>(inside);
  const int next = 2 * (t.left + inside) - l.pad_w;  // the first pixel of the pair after them
  t.right_one = static_cast<int16_t>(t.left + inside < pairs && next < l.in_w ? 1 : 0);
  t.right_none = static_cast<int16_t>(pairs - t.left - inside - t.right_one);
  return t;
}

// Transposes one input row of 4 channels (x: its pixel 0's first channel of the 4; null for a row
// of padding) into a slot of the buffer ([column pair][slot][channel]).
__attribute__((noinline)) void TransposeRow(const int8_t* x, const RowPlan& t, uint32_t* w) {
  if (x == nullptr) {
    for (int j = 0; j < t.pairs; ++j, w += kPairWords) w[0] = w[1] = w[2] = w[3] = 0;
    return;
  }
  const int c = t.channels;
  const uint32_t offset2 = t.offset2;
  if (t.left != 0) {
    TransposePair(t.zero_word, Read4(x), offset2, w);
    x += c;
    w += kPairWords;
  }
  int n = t.inside;
  for (; n >= 2; n -= 2, x += 4 * c, w += 2 * kPairWords) {
    TransposePair(Read4(x), Read4(x + c), offset2, w);
    TransposePair(Read4(x + 2 * c), Read4(x + 3 * c), offset2, w + kPairWords);
  }
  if (n != 0) {
    TransposePair(Read4(x), Read4(x + c), offset2, w);
    x += 2 * c;
    w += kPairWords;
  }
  if (t.right_one != 0) {
    TransposePair(Read4(x), t.zero_word, offset2, w);
    w += kPairWords;
  }
  for (int j = 0; j < t.right_none; ++j, w += kPairWords) w[0] = w[1] = w[2] = w[3] = 0;
}

// The kDepthwiseWords words of channels g..g+3, channel after channel: each tap's word
// sign-extended and doubled in pairs (channels 0, 2) and (1, 3), each channel's (w0, w1) and
// (w1, w2) of each tap row from their halves, and its FAST requantization.
void DepthwiseConstants(const ConvLayer& l, int g, int32_t* k) {
  const int channels = l.in_c;
  uint32_t even[9], odd[9];
  for (int t = 0; t < 9; ++t) {
    const uint32_t word = Read4(l.filter + t * channels + g);
    const uint32_t e = SXTB16(word), o = SXTB16_RORn(word, 8);
    even[t] = __sadd16(e, e);
    odd[t] = __sadd16(o, o);
  }
  int32_t* k0 = k + 4;
  for (int r = 0; r < 3; ++r, k0 += 2) {
    const uint32_t* e = even + 3 * r;
    const uint32_t* o = odd + 3 * r;
    k0[0] = static_cast<int32_t>(LowHalves(e[0], e[1]));
    k0[1] = static_cast<int32_t>(LowHalves(e[1], e[2]));
    k0[kDepthwiseWords] = static_cast<int32_t>(LowHalves(o[0], o[1]));
    k0[kDepthwiseWords + 1] = static_cast<int32_t>(LowHalves(o[1], o[2]));
    k0[2 * kDepthwiseWords] = static_cast<int32_t>(HighHalves(e[0], e[1]));
    k0[2 * kDepthwiseWords + 1] = static_cast<int32_t>(HighHalves(e[1], e[2]));
    k0[3 * kDepthwiseWords] = static_cast<int32_t>(HighHalves(o[0], o[1]));
    k0[3 * kDepthwiseWords + 1] = static_cast<int32_t>(HighHalves(o[1], o[2]));
  }
  for (int ch = 0; ch < 4; ++ch, k += kDepthwiseWords) {
    const int c = g + ch;
    const int32_t right = -l.shift[c];
    k[0] = l.multiplier[c];
    k[1] = (1 << (right - 1)) + static_cast<int32_t>(static_cast<uint32_t>(l.output_offset) << right);
    k[2] = right;
    k[3] = 2 * (l.bias != nullptr ? l.bias[c] : 0);
  }
}

// Runs jobs [jobs, jobs_end) in one go: per job, its weights into 6 registers and its constants onto
// the stack, then 2 outputs a step until `win` reaches `end`. 14 registers in the step: the 6 weight
// pairs, 2 input pairs, 2 accumulators, 2 pointers and 2 for the requantization (one of them holds
// the job pointer between jobs). A step (2 outputs, 18 MACs) is about 44 cycles.
template <int kC, int kStride, int kRot>
__attribute__((noinline)) void TransposedJobs(const TransposedJob* jobs, const TransposedJob* jobs_end) {
  constexpr int o0 = 16 * ((kRot + 0) % 3), o1 = 16 * ((kRot + 1) % 3), o2 = 16 * ((kRot + 2) % 3);
  uint32_t A0, B0, A1, B1, A2, B2, p0, p1, win;
  int32_t a0, a1;
  int8_t* out;
  // Frame: [0] multiplier, [4] rounding, [8] right, [12] doubled bias, [16] jobs_end, [20] the next
  // job, [24] the job's end.
#define VWW_DW_JOB                                         \
  "sub sp, sp, #28\n\t"                                    \
  "str %[t], [sp, #20]\n\t"                                \
  "str %[u], [sp, #16]\n\t"                                \
  "2:\n\t"                                                 \
  "ldr %[t], [sp, #20]\n\t"                                \
  "ldrd %[win], %[out], [%[t], #4]\n\t"                    \
  "ldr %[p0], [%[t], #12]\n\t"                             \
  "ldr %[p1], [%[t]]\n\t"                                  \
  "str %[p0], [sp, #24]\n\t"                               \
  "add %[t], %[t], #16\n\t"                                \
  "str %[t], [sp, #20]\n\t"                                \
  "ldrd %[p0], %[t], [%[p1]]\n\t"                          \
  "strd %[p0], %[t], [sp]\n\t"                             \
  "ldrd %[p0], %[t], [%[p1], #8]\n\t"                      \
  "strd %[p0], %[t], [sp, #8]\n\t"                         \
  "ldrd %[A0], %[B0], [%[p1], #16]\n\t"                    \
  "ldrd %[A1], %[B1], [%[p1], #24]\n\t"                    \
  "ldrd %[A2], %[B2], [%[p1], #32]\n\t"                    \
  "1:\n\t"
#define VWW_DW_STEP_END                                    \
  "ldr %[p0], [sp]\n\t"                                    \
  "ldr %[p1], [sp, #4]\n\t"                                \
  "smmlar %[t], %[a0], %[p0], %[p1]\n\t"                   \
  "add %[t], %[t], %[a0], asr #31\n\t"                     \
  "smmlar %[u], %[a1], %[p0], %[p1]\n\t"                   \
  "add %[u], %[u], %[a1], asr #31\n\t"                     \
  "ldr %[p0], [sp, #8]\n\t"                                \
  "asr %[t], %[t], %[p0]\n\t"                              \
  "asr %[u], %[u], %[p0]\n\t"                              \
  "ssat %[t], #8, %[t]\n\t"                                \
  "ssat %[u], #8, %[u]\n\t"                                \
  "strb %[t], [%[out]]\n\t"                                \
  "strb %[u], [%[out], %[c]]\n\t"                          \
  "add %[out], %[out], %[c2]\n\t"                          \
  "add %[win], %[win], %[step]\n\t"                        \
  "ldr %[p0], [sp, #24]\n\t"                               \
  "cmp %[win], %[p0]\n\t"                                  \
  "bne 1b\n\t"                                             \
  "ldr %[t], [sp, #20]\n\t"                                \
  "ldr %[p0], [sp, #16]\n\t"                               \
  "cmp %[t], %[p0]\n\t"                                    \
  "bne 2b\n\t"                                             \
  "add sp, sp, #28"
  const TransposedJob* t = jobs;
  const TransposedJob* u = jobs_end;
  if (kStride == 1) {
    __asm__ volatile(
        VWW_DW_JOB
        "ldr %[a0], [sp, #12]\n\t"
        "ldr %[p0], [%[win], %[o0]]\n\t"
        "ldr %[p1], [%[win], %[o0] + 48]\n\t"
        "smlatb %[a1], %[p0], %[A0], %[a0]\n\t"
        "smlad %[a0], %[p0], %[A0], %[a0]\n\t"
        "smlabt %[a0], %[p1], %[B0], %[a0]\n\t"
        "smlad %[a1], %[p1], %[B0], %[a1]\n\t"
        "ldr %[p0], [%[win], %[o1]]\n\t"
        "ldr %[p1], [%[win], %[o1] + 48]\n\t"
        "smlad %[a0], %[p0], %[A1], %[a0]\n\t"
        "smlatb %[a1], %[p0], %[A1], %[a1]\n\t"
        "smlabt %[a0], %[p1], %[B1], %[a0]\n\t"
        "smlad %[a1], %[p1], %[B1], %[a1]\n\t"
        "ldr %[p0], [%[win], %[o2]]\n\t"
        "ldr %[p1], [%[win], %[o2] + 48]\n\t"
        "smlad %[a0], %[p0], %[A2], %[a0]\n\t"
        "smlatb %[a1], %[p0], %[A2], %[a1]\n\t"
        "smlabt %[a0], %[p1], %[B2], %[a0]\n\t"
        "smlad %[a1], %[p1], %[B2], %[a1]\n\t"
        VWW_DW_STEP_END
        : [A0] "=&r"(A0), [B0] "=&r"(B0), [A1] "=&r"(A1), [B1] "=&r"(B1), [A2] "=&r"(A2), [B2] "=&r"(B2),
          [p0] "=&r"(p0), [p1] "=&r"(p1), [a0] "=&r"(a0), [a1] "=&r"(a1), [win] "=&r"(win), [out] "=&r"(out),
          [t] "+r"(t), [u] "+r"(u)
        : [o0] "i"(o0), [o1] "i"(o1), [o2] "i"(o2), [c] "i"(kC), [c2] "i"(2 * kC), [step] "i"(4 * kPairWords)
        : "cc", "memory");
  } else {
    __asm__ volatile(
        VWW_DW_JOB
        "ldr %[a0], [sp, #12]\n\t"
        "ldr %[p0], [%[win], %[o0]]\n\t"
        "ldr %[p1], [%[win], %[o0] + 48]\n\t"
        "smlad %[a1], %[p1], %[A0], %[a0]\n\t"
        "smlad %[a0], %[p0], %[A0], %[a0]\n\t"
        "smlabt %[a0], %[p1], %[B0], %[a0]\n\t"
        "ldr %[p0], [%[win], %[o0] + 96]\n\t"
        "smlabt %[a1], %[p0], %[B0], %[a1]\n\t"
        "ldr %[p0], [%[win], %[o1]]\n\t"
        "ldr %[p1], [%[win], %[o1] + 48]\n\t"
        "smlad %[a0], %[p0], %[A1], %[a0]\n\t"
        "smlad %[a1], %[p1], %[A1], %[a1]\n\t"
        "smlabt %[a0], %[p1], %[B1], %[a0]\n\t"
        "ldr %[p0], [%[win], %[o1] + 96]\n\t"
        "smlabt %[a1], %[p0], %[B1], %[a1]\n\t"
        "ldr %[p0], [%[win], %[o2]]\n\t"
        "ldr %[p1], [%[win], %[o2] + 48]\n\t"
        "smlad %[a0], %[p0], %[A2], %[a0]\n\t"
        "smlad %[a1], %[p1], %[A2], %[a1]\n\t"
        "smlabt %[a0], %[p1], %[B2], %[a0]\n\t"
        "ldr %[p0], [%[win], %[o2] + 96]\n\t"
        "smlabt %[a1], %[p0], %[B2], %[a1]\n\t"
        VWW_DW_STEP_END
        : [A0] "=&r"(A0), [B0] "=&r"(B0), [A1] "=&r"(A1), [B1] "=&r"(B1), [A2] "=&r"(A2), [B2] "=&r"(B2),
          [p0] "=&r"(p0), [p1] "=&r"(p1), [a0] "=&r"(a0), [a1] "=&r"(a1), [win] "=&r"(win), [out] "=&r"(out),
          [t] "+r"(t), [u] "+r"(u)
        : [o0] "i"(o0), [o1] "i"(o1), [o2] "i"(o2), [c] "i"(kC), [c2] "i"(2 * kC), [step] "i"(8 * kPairWords)
        : "cc", "memory");
  }
#undef VWW_DW_JOB
#undef VWW_DW_STEP_END
}

using JobsFn = void (*)(const TransposedJob*, const TransposedJob*);

// The row loop for channel count kC and stride, for each slot the first tap row may be in.
template <int kC, int kStride>
void JobsOf(JobsFn* by_slot) {
  by_slot[0] = TransposedJobs<kC, kStride, 0>;
  by_slot[1] = TransposedJobs<kC, kStride, 1>;
  by_slot[2] = TransposedJobs<kC, kStride, 2>;
}

void JobsFor(int channels, int stride, JobsFn* by_slot) {
  const bool two = stride == 2;
  switch (channels) {
    case 8: two ? JobsOf<8, 2>(by_slot) : JobsOf<8, 1>(by_slot); break;
    case 16: two ? JobsOf<16, 2>(by_slot) : JobsOf<16, 1>(by_slot); break;
    case 32: two ? JobsOf<32, 2>(by_slot) : JobsOf<32, 1>(by_slot); break;
    case 64: two ? JobsOf<64, 2>(by_slot) : JobsOf<64, 1>(by_slot); break;
    default: two ? JobsOf<128, 2>(by_slot) : JobsOf<128, 1>(by_slot); break;
  }
}

// Input row `row` of the layer (its first byte), or null for a row of padding.
VWW_INLINE const int8_t* InputRow(const ConvLayer& l, int row) {
  if (row < 0 || row >= l.in_h) return nullptr;
  return l.rows != nullptr ? l.rows[row] : l.in + row * l.in_w * l.in_c;
}

// `packed`: the layer's kPackedDepthwise words, or null to compute them per group.
void TransposedRun(const ConvLayer& l, const int32_t* packed) {
  const int channels = l.in_c, stride = l.stride_h;
  const int steps = l.out_w / 2, odd_width = l.out_w & 1;
  const int pairs = stride == 1 ? (l.out_w + 1) / 2 + 1 : 2 * ((l.out_w + 1) / 2) + 1;
  const int step_words = stride * kPairWords;
  uint32_t buffer[kPairWords * kMaxTransposedPairs];
  int32_t computed[4 * kDepthwiseWords];
  TransposedJob jobs[8];              // 4 channels along the row, then the odd last column of each
  int8_t tail[2 * kMaxTransposedChannels + 4];  // a last column's step puts its 2 outputs here
  const Output o = MakeOutput(l.act_min, l.act_max);
  const RowPlan plan = PlanRows(l, pairs);
  for (int ch = 0; ch < 4; ++ch) {
    jobs[ch].win = buffer + ch;
    jobs[ch].end = buffer + ch + steps * step_words;
    jobs[4 + ch].win = jobs[ch].end;
    jobs[4 + ch].end = jobs[ch].end + step_words;
    jobs[4 + ch].out = tail + ch;
  }
  const TransposedJob* first_job = steps > 0 ? jobs : jobs + 4;
  const TransposedJob* last_job = jobs + 4 + 4 * odd_width;
  JobsFn run_jobs[3];
  JobsFor(channels, stride, run_jobs);
  const int first_slot = Slot(-l.pad_h), out_row_bytes = l.out_w * channels;
  for (int g = 0; g < channels; g += 4) {
    const int32_t* k = packed != nullptr ? packed + g * kDepthwiseWords : computed;
    if (packed == nullptr) DepthwiseConstants(l, g, computed);
    for (int ch = 0; ch < 4; ++ch) jobs[ch].k = jobs[4 + ch].k = k + ch * kDepthwiseWords;
    // Rows are transposed in order, each once, row r into slot r mod 3; the next output row's
    // first tap row is `top`, in slot `top_slot`.
    int next_row = -l.pad_h, next_slot = first_slot, top_slot = first_slot;
    int8_t* out = l.out + g;
    for (int y = 0; y < l.out_h; ++y, out += out_row_bytes) {
      const int top = y * stride - l.pad_h;
      for (; next_row <= top + 2; ++next_row) {
        const int8_t* x = InputRow(l, next_row);
        TransposeRow(x != nullptr ? x + g : nullptr, plan, buffer + 4 * next_slot);
        next_slot = next_slot == 2 ? 0 : next_slot + 1;
      }
      for (int ch = 0; ch < 4; ++ch) jobs[ch].out = out + ch;
      run_jobs[top_slot](first_job, last_job);
      top_slot += stride;
      if (top_slot >= 3) top_slot -= 3;
      if (odd_width) {
        for (int ch = 0; ch < 4; ++ch) out[(l.out_w - 1) * channels + ch] = tail[ch];
      }
      if (o.clamp) {
        for (int x = 0; x < l.out_w; ++x) {
          for (int ch = 0; ch < 4; ++ch) {
            int8_t& v = out[x * channels + ch];
            v = static_cast<int8_t>(v < l.act_min ? l.act_min : v > l.act_max ? l.act_max : v);
          }
        }
      }
    }
  }
}

// Output rows of 3 columns and fewer leave too little to a row's jobs: CMSIS-NN is quicker there.
bool TransposedCovers(const ConvLayer& l) {
  if (l.out_w < 4 || l.kh != 3 || l.kw != 3 || l.stride_h != l.stride_w || (l.stride_h != 1 && l.stride_h != 2) ||
      l.in_c != l.out_c || l.depth_multiplier != 1 || l.pad_h > 1 || l.pad_w > 1 ||
      !(l.in_c == 8 || l.in_c == 16 || l.in_c == 32 || l.in_c == 64 || l.in_c == 128)) {
    return false;
  }
  const int pairs = l.stride_h == 1 ? (l.out_w + 1) / 2 + 1 : 2 * ((l.out_w + 1) / 2) + 1;
  if (pairs > kMaxTransposedPairs) return false;
  for (int c = 0; c < l.out_c; ++c) {
    if (l.shift[c] > -1 || l.shift[c] < -22 || l.multiplier[c] < 0) return false;
  }
  return Requantizable(l.shift, l.bias, l.out_c, 9);
}

bool DepthwiseMatches(const PackedConv& p, const ConvLayer& l) {
  if (p.form != kPackedFast || p.in_c != l.in_c || p.out_c != l.out_c || !TransposedCovers(l)) return false;
  int32_t words[4 * kDepthwiseWords];
  for (int g = 0; g < l.out_c; g += 4) {
    DepthwiseConstants(l, g, words);
    if (std::memcmp(words, p.words + g * kDepthwiseWords, sizeof(words)) != 0) return false;
  }
  return true;
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

// As ConvRun, for depthwise layers.
bool DepthwiseRunAny(const ConvLayer& l, bool run) {
  const PackedConv* p = PackedFor(l);
  if (p != nullptr && p->kind != kPackedDepthwise) {
    if (run) PackedRun(l, *p);
    return true;
  }
  if (p == nullptr && !TransposedCovers(l)) return false;  // a kPackedDepthwise entry is only usable where it covers
  if (run) TransposedRun(l, p != nullptr ? p->words : nullptr);
  return true;
}

TfLiteStatus DepthwiseInvoke(TfLiteContext* context, TfLiteNode* node) {
  ConvLayer layer;
  if (NodeLayer(context, node, true, &layer) && DepthwiseRunAny(layer, true)) return kTfLiteOk;
  return depthwise_base(context, node);
}

// Runs `l` with this firmware's kernels and returns true, or returns false when none covers it (or,
// with `run` false, only says whether one does).
bool ConvRun(const ConvLayer& l, bool run) {
  const PackedConv* p = PackedFor(l);
  if (p != nullptr && run) PackedRun(l, *p);
  return p != nullptr;
}

TfLiteStatus ConvInvoke(TfLiteContext* context, TfLiteNode* node) {
  ConvLayer layer;
  if (NodeLayer(context, node, false, &layer) && ConvRun(layer, true)) return kTfLiteOk;
  return conv_base(context, node);
}

// After the wrapped Prepare: a layer's packed weights are checked against TFLM's constants now,
// once, rather than in its first Invoke.
TfLiteStatus DepthwisePrepare(TfLiteContext* context, TfLiteNode* node) {
  TF_LITE_ENSURE_OK(context, depthwise_prepare(context, node));
  ConvLayer layer;
  if (NodeLayer(context, node, true, &layer)) PackedFor(layer);
  return kTfLiteOk;
}

TfLiteStatus ConvPrepare(TfLiteContext* context, TfLiteNode* node) {
  TF_LITE_ENSURE_OK(context, conv_prepare(context, node));
  ConvLayer layer;
  if (NodeLayer(context, node, false, &layer)) PackedFor(layer);
  return kTfLiteOk;
}

}  // namespace

TFLMRegistration FastDepthwiseConv2D(TFLMRegistration base) {
  depthwise_base = base.invoke;
  depthwise_prepare = base.prepare;
  base.invoke = DepthwiseInvoke;
  base.prepare = DepthwisePrepare;
  return base;
}

TFLMRegistration FastConv2D(TFLMRegistration base) {
  conv_base = base.invoke;
  conv_prepare = base.prepare;
  base.invoke = ConvInvoke;
  base.prepare = ConvPrepare;
  return base;
}

bool FastKernelCovers(const ConvLayer& layer) {
  return layer.depthwise ? DepthwiseRunAny(layer, false) : ConvRun(layer, false);
}

bool FastKernelTakesRows(const ConvLayer& layer) {
  if (!layer.depthwise) return false;
  const PackedConv* p = PackedFor(layer);
  return p != nullptr ? p->kind == kPackedDepthwise : TransposedCovers(layer);
}

void RunCoveredFastKernel(const ConvLayer& layer) {
  // Covered: either packed or (depthwise) transposed, without checking the shifts again.
  const PackedConv* p = PackedFor(layer);
  if (p != nullptr && p->kind != kPackedDepthwise) {
    PackedRun(layer, *p);
  } else if (layer.depthwise) {
    TransposedRun(layer, p != nullptr ? p->words : nullptr);
  }
}

#else  // no CMSIS-NN or no DSP extension: the registrations as they are

TFLMRegistration FastDepthwiseConv2D(TFLMRegistration base) { return base; }
TFLMRegistration FastConv2D(TFLMRegistration base) { return base; }
bool FastKernelCovers(const ConvLayer&) { return false; }
bool FastKernelTakesRows(const ConvLayer&) { return false; }
void RunCoveredFastKernel(const ConvLayer&) {}

#endif  // VWW_FAST_KERNELS

}  // namespace vww

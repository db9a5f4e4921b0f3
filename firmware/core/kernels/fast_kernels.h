// Kernels shaped for vwwtorch's MobileNetV1 on Cortex-M4 (DSP extension), registered through the
// op resolver in front of CMSIS-NN: each wrapper runs its own code for the shapes it covers and the
// wrapped registration's invoke for everything else. Bit-exact with TFLM's reference kernels: the
// same int32 accumulation and the same requantization (MultiplyByQuantizedMultiplier).
//
//   * Packed kernel (1x1 convolutions with 8 to 256 inputs; the first layer, a 3x3 convolution over
//     RGB or a one-input depthwise layer): weights widened to 16-bit pairs in flash by
//     `firmware generate` (model_kernels.cc, packed_weights.h), 4 output channels x 2 pixels per
//     block, 16 MACs in 16 cycles; the table entry is checked against TFLM's constants once.
//   * Depthwise 3x3, stride 1 or 2, 8 to 128 channels: input rows transposed, 4 channels at a time,
//     into pairs of adjacent pixels of one channel, so SMLAD takes two taps at once.
// Layers neither covers (or left unpacked by the flash budget) run CMSIS-NN.
//
// Without CMSIS-NN and the DSP extension (host builds, reference-kernel builds), or built with
// `make FAST_KERNELS=0` (stock CMSIS-NN, for comparisons), the wrappers return the registration
// unchanged.
#ifndef VWW_FAST_KERNELS_H_
#define VWW_FAST_KERNELS_H_

#include <cstdint>

#include "tensorflow/lite/micro/micro_common.h"

namespace vww {

// One int8 convolution (depthwise or not, dilation 1) over NHWC maps with N = 1, requantized per
// output channel: what the wrappers below and the chained-convolution op (conv_chain.h) hand to a
// kernel. `in` may be a band of rows of a bigger map; pad_h then counts the rows above it that the
// kernel must treat as padding.
struct ConvLayer {
  bool depthwise;
  const int8_t* in;
  int in_h, in_w, in_c;
  int8_t* out;
  int out_h, out_w, out_c;
  const int8_t* filter;  // conv [out_c, kh, kw, in_c], depthwise [1, kh, kw, out_c]
  const int32_t* bias;   // [out_c] or null
  int kh, kw, stride_h, stride_w, pad_h, pad_w, depth_multiplier;
  int32_t input_offset;   // minus the input zero point
  int32_t output_offset;  // the output zero point
  int32_t act_min, act_max;
  const int32_t* multiplier;
  const int32_t* shift;
  // When not null, rows[r] is input row r (the chained-convolution op's windows are rings, whose
  // rows need not follow each other); else row r starts at in + r * in_w * in_c. Only the
  // transposed depthwise kernel reads rows so (FastKernelTakesRows).
  const int8_t* const* rows = nullptr;
};

// Whether this firmware's kernels cover `layer` (its shape, and requantization that cannot overflow
// them, checked from the bias and shifts); false when the build has none (host, reference kernels,
// FAST_KERNELS=0). Only the shape, filter, bias and shifts are read, and a band of rows of a map is
// covered exactly when the whole map is.
bool FastKernelCovers(const ConvLayer& layer);

// Whether the kernel that covers `layer` reads its input through ConvLayer::rows.
bool FastKernelTakesRows(const ConvLayer& layer);

// Runs a layer FastKernelCovers accepted.
void RunCoveredFastKernel(const ConvLayer& layer);

// DEPTHWISE_CONV_2D, int8, 3x3, dilation 1: one input channel per output channel (8 to 128
// channels, stride 1 or 2, every shift right and every accumulator below 2^30), or a packed
// one-input layer (the first layer over a gray image).
TFLMRegistration FastDepthwiseConv2D(TFLMRegistration base);

// CONV_2D, int8: the packed 1x1 convolutions and 3x3 convolutions over 3 channels.
TFLMRegistration FastConv2D(TFLMRegistration base);

}  // namespace vww

#endif  // VWW_FAST_KERNELS_H_

// Kernels shaped for vwwtorch's MobileNetV1 on Cortex-M4 (DSP extension), registered through the
// op resolver in front of CMSIS-NN: each wrapper runs its own code for the shapes it covers and the
// wrapped registration's invoke for everything else. Bit-exact with TFLM's reference kernels: the
// same int32 accumulation and the same requantization (CMSIS-NN's arm_nn_requantize).
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
};

// Whether this firmware's kernels cover `layer` (its shape, and requantization that cannot overflow
// them, checked from the bias and shifts); false when the build has none (host, reference kernels,
// FAST_KERNELS=0). Only the shape, filter, bias and shifts are read, and a band of rows of a map is
// covered exactly when the whole map is.
bool FastKernelCovers(const ConvLayer& layer);

// Runs a layer FastKernelCovers accepted.
void RunCoveredFastKernel(const ConvLayer& layer);

// DEPTHWISE_CONV_2D, int8, 3x3, dilation 1, stride 1 or 2: one input channel per output channel
// (8, 16, 32, 64 or 128 channels), or one input channel for up to 64 outputs (the first layer).
// Both kernels also need every accumulator below 2^30 (checked from the bias and the shifts).
TFLMRegistration FastDepthwiseConv2D(TFLMRegistration base);

// CONV_2D, int8, 1x1, stride 1, 8, 16 or 32 input channels and up to 64 outputs (the first
// pointwise layers, where CMSIS-NN's matrix product has too little depth to amortize its setup).
TFLMRegistration FastConv2D(TFLMRegistration base);

}  // namespace vww

#endif  // VWW_FAST_KERNELS_H_

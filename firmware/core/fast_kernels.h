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

#include "tensorflow/lite/micro/micro_common.h"

namespace vww {

// DEPTHWISE_CONV_2D, int8, 3x3, dilation 1, stride 1 or 2: one input channel per output channel
// (8, 16, 32, 64 or 128 channels), or one input channel for up to 64 outputs (the first layer).
// Both kernels also need every accumulator below 2^30 (checked from the bias and the shifts).
TFLMRegistration FastDepthwiseConv2D(TFLMRegistration base);

// CONV_2D, int8, 1x1, stride 1, 8, 16 or 32 input channels and up to 64 outputs (the first
// pointwise layers, where CMSIS-NN's matrix product has too little depth to amortize its setup).
TFLMRegistration FastConv2D(TFLMRegistration base);

}  // namespace vww

#endif  // VWW_FAST_KERNELS_H_

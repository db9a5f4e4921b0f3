// VWW_CONV_CHAIN: a chain of int8 convolutions run as one TFLM custom op, written by
// `vwwtorch firmware generate --memory-budget` (firmware/codegen/memory_plan/).
//
// Two things make the model smaller in RAM, neither changes a single output byte:
//   * Each layer's requantization table (a multiplier and a shift per output channel) is a constant
//     input, computed when the firmware is generated, so it stays in flash; stock TFLM kernels
//     compute it at start-up into the arena (8 bytes per channel, 22 KB for MobileNetV1 0.25).
//   * A chain of several layers runs row by row: each intermediate map lives only as the few rows
//     (the next layer's kernel height) that its consumer still needs, in a window that slides down
//     the map. No row is computed twice, so the instructions stay those of the layer-by-layer run.
//
// Inputs: the chain's input map, then per layer its filter, bias (or none), multipliers and shifts.
// Output: the last layer's map. Options: int32 words, little-endian: a version (1), the layer
// count, then per layer the fields of `ChainLayer` in conv_chain.cc's order.
#ifndef VWW_CONV_CHAIN_H_
#define VWW_CONV_CHAIN_H_

#include "tensorflow/lite/micro/micro_common.h"

namespace vww {

constexpr char kConvChainName[] = "VWW_CONV_CHAIN";

TFLMRegistration Register_CONV_CHAIN();

// Adds the op to a MicroMutableOpResolver (which copies the registration).
template <typename Resolver>
TfLiteStatus AddConvChain(Resolver& resolver) {
  const TFLMRegistration registration = Register_CONV_CHAIN();
  return resolver.AddCustom(kConvChainName, &registration);
}

}  // namespace vww

#endif  // VWW_CONV_CHAIN_H_

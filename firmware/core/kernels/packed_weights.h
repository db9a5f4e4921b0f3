// Convolution weights packed for the fast kernels by `vwwtorch firmware generate`
// (vwwtorch/firmware/codegen/packed_weights.py writes the model folder's model_kernels.cc; the layout is
// described there). A layer is found by its filter's address in the model.
#ifndef VWW_PACKED_WEIGHTS_H_
#define VWW_PACKED_WEIGHTS_H_

#include <cstdint>

// Every packed layer's words, one after the other (flash; `firmware build` reports its size).
extern const int32_t g_model_packed_weights[];

namespace vww {

struct PackedConv {
  const unsigned char* filter;  // the layer's int8 filter in g_model_data: the key
  const int32_t* words;         // per 4 output channels: biases, weights as 16-bit pairs, constants
                                // (kPackedDepthwise: per channel, constants then weight pairs)
  int32_t kind;                 // kPackedPointwise, kPackedIm2col or kPackedDepthwise
  int32_t in_c, out_c;
  int32_t form;                 // kPackedFast, kPackedExact or kPackedGeneral
};

constexpr int32_t kPackedPointwise = 0;  // 1x1, the inputs of a pixel are its channels
constexpr int32_t kPackedIm2col = 1;     // 3x3 over 1 or 3 channels: the 9 or 27 taps of a pixel
constexpr int32_t kPackedDepthwise = 2;  // depthwise 3x3: per channel its FAST constants and weight pairs

constexpr int32_t kPackedFast = 0;     // doubled weights, every shift right, accumulators below 2^30
constexpr int32_t kPackedExact = 1;    // any accumulator, every shift right (or multiplier 0): 64 bits
constexpr int32_t kPackedGeneral = 2;  // any shift (left too), in C

extern const PackedConv kPackedConvs[];
extern const int kNumPackedConvs;

}  // namespace vww

#endif  // VWW_PACKED_WEIGHTS_H_

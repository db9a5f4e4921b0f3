// 1x1 convolutions' weights packed for the fast kernels by `vwwtorch firmware generate`
// (vwwtorch/firmware/packed_weights.py writes the model folder's model_kernels.cc; the layout is
// described there). A layer is found by its filter's address in the model.
#ifndef VWW_PACKED_WEIGHTS_H_
#define VWW_PACKED_WEIGHTS_H_

#include <cstdint>

namespace vww {

struct PackedPointwise {
  const unsigned char* filter;  // the layer's int8 filter in g_model_data: the key
  const int32_t* words;         // per 4 output channels: biases, weights as 16-bit pairs, constants
  int32_t in_c, out_c;
  int32_t form;                 // kPackedFast or kPackedExact
};

constexpr int32_t kPackedFast = 0;   // doubled weights, every shift right, accumulators below 2^30
constexpr int32_t kPackedExact = 1;  // any shift and accumulator: a 64-bit product

extern const PackedPointwise kPackedPointwise[];
extern const int kNumPackedPointwise;

}  // namespace vww

#endif  // VWW_PACKED_WEIGHTS_H_

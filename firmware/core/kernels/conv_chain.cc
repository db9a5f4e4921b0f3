#include "conv_chain.h"

#include <cstdint>
#include <cstring>

#include "fast_kernels.h"
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/kernels/internal/reference/integer_ops/conv.h"
#include "tensorflow/lite/kernels/internal/reference/integer_ops/depthwise_conv.h"
#include "tensorflow/lite/kernels/internal/types.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_log.h"

#if defined(CMSIS_NN)
#include "Include/arm_nnfunctions.h"
#endif

namespace vww {
namespace {

constexpr int32_t kVersion = 1;
constexpr int kMaxLayers = 16;
constexpr int kInputsPerLayer = 4;  // filter, bias, multipliers, shifts

// One layer as the options hold it (int32 words, in this order; firmware/codegen/memory_plan/chain_op.py
// writes them).
struct ChainLayer {
  int32_t depthwise;
  int32_t in_h, in_w, in_c, out_h, out_w, out_c;
  int32_t kh, kw, stride_h, stride_w, pad_h, pad_w, depth_multiplier;
  int32_t input_offset, output_offset, act_min, act_max;
  int32_t window_rows;  // rows of this layer's output kept for the next layer (0 for the last)
};
constexpr int kHeaderWords = 2;

// 16 bytes on a 32-bit target, as TFLM rounds every persistent allocation up to 16: one more field
// would cost 16 bytes per op.
struct OpData {
  const ChainLayer* layers;  // the options, in flash
  int16_t count;
  int16_t scratch_index;     // -1: no scratch
  int32_t kernel_scratch;    // bytes CMSIS-NN asks for, after the windows
  uint32_t fast_layers;      // bit i: this firmware's kernels cover layer i (checked once, in Prepare);
                             // bit kRowsBit + i: streamed, and its kernel reads rows through pointers
};
constexpr int kRowsBit = 16;
static_assert(kMaxLayers <= kRowsBit, "two bits per layer in fast_layers");

int32_t Align4(int32_t bytes) { return (bytes + 3) & ~3; }

int32_t WindowBytes(const ChainLayer& l) { return Align4(l.window_rows * l.out_w * l.out_c); }

int32_t WindowsBytes(const OpData& d) {
  int32_t total = 0;
  for (int i = 0; i + 1 < d.count; ++i) total += WindowBytes(d.layers[i]);
  return total;
}

struct Weights {
  const int8_t* filter;
  const int32_t* bias;
  const int32_t* multiplier;
  const int32_t* shift;
};

Weights LayerWeights(TfLiteContext* context, TfLiteNode* node, int i) {
  const int first = 1 + i * kInputsPerLayer;
  const TfLiteEvalTensor* bias = tflite::micro::GetEvalInput(context, node, first + 1);
  return {tflite::micro::GetTensorData<int8_t>(tflite::micro::GetEvalInput(context, node, first)),
          bias != nullptr ? tflite::micro::GetTensorData<int32_t>(bias) : nullptr,
          tflite::micro::GetTensorData<int32_t>(tflite::micro::GetEvalInput(context, node, first + 2)),
          tflite::micro::GetTensorData<int32_t>(tflite::micro::GetEvalInput(context, node, first + 3))};
}

ConvLayer Call(const ChainLayer& l, const Weights& w, const int8_t* in, int in_rows, int pad_top, int8_t* out,
               int out_rows) {
  return {l.depthwise != 0, in, in_rows, l.in_w, l.in_c, out, out_rows, l.out_w, l.out_c, w.filter, w.bias,
          l.kh, l.kw, l.stride_h, l.stride_w, pad_top, l.pad_w, l.depth_multiplier, l.input_offset,
          l.output_offset, l.act_min, l.act_max, w.multiplier, w.shift};
}

#if defined(CMSIS_NN)
struct CmsisCall {
  cmsis_nn_dims input, filter, bias, output;
  cmsis_nn_per_channel_quant_params quant;
  cmsis_nn_conv_params conv;
  cmsis_nn_dw_conv_params dw;
};

CmsisCall ToCmsis(const ConvLayer& c) {
  CmsisCall k;
  k.input = {1, c.in_h, c.in_w, c.in_c};
  k.filter = c.depthwise ? cmsis_nn_dims{1, c.kh, c.kw, c.out_c} : cmsis_nn_dims{c.out_c, c.kh, c.kw, c.in_c};
  k.bias = {1, 1, 1, c.out_c};
  k.output = {1, c.out_h, c.out_w, c.out_c};
  k.quant = {const_cast<int32_t*>(c.multiplier), const_cast<int32_t*>(c.shift)};
  k.conv = {c.input_offset, c.output_offset, {c.stride_w, c.stride_h}, {c.pad_w, c.pad_h}, {1, 1},
            {c.act_min, c.act_max}};
  k.dw = {c.input_offset, c.output_offset, c.depth_multiplier, {c.stride_w, c.stride_h}, {c.pad_w, c.pad_h},
          {1, 1}, {c.act_min, c.act_max}};
  return k;
}

int32_t CmsisScratch(const ConvLayer& c) {
  const CmsisCall k = ToCmsis(c);
  return c.depthwise ? arm_depthwise_conv_wrapper_s8_get_buffer_size(&k.dw, &k.input, &k.filter, &k.output)
                     : arm_convolve_wrapper_s8_get_buffer_size(&k.conv, &k.input, &k.filter, &k.output);
}
#endif

#if !defined(CMSIS_NN)
// The fields TFLM's ConvParams and DepthwiseParams share, for the reference kernels.
template <typename Params>
Params ReferenceParams(const ConvLayer& c) {
  Params p = {};
  p.padding_values.width = c.pad_w;
  p.padding_values.height = c.pad_h;
  p.stride_width = c.stride_w;
  p.stride_height = c.stride_h;
  p.dilation_width_factor = 1;
  p.dilation_height_factor = 1;
  p.input_offset = c.input_offset;
  p.output_offset = c.output_offset;
  p.quantized_activation_min = c.act_min;
  p.quantized_activation_max = c.act_max;
  return p;
}
#endif

// One call of a kernel: this firmware's own where it covers the layer (`fast`), else CMSIS-NN, else
// (builds without CMSIS-NN) TFLM's reference kernels. All compute the same int32 sums and
// requantization.
TfLiteStatus RunKernel(const ConvLayer& c, bool fast, int8_t* scratch, int32_t scratch_bytes) {
  if (fast) {
    RunCoveredFastKernel(c);
    return kTfLiteOk;
  }
#if defined(CMSIS_NN)
  const CmsisCall k = ToCmsis(c);
  const cmsis_nn_context ctx = {scratch, scratch_bytes};
  const arm_cmsis_nn_status status =
      c.depthwise ? arm_depthwise_conv_wrapper_s8(&ctx, &k.dw, &k.quant, &k.input, c.in, &k.filter, c.filter,
                                                  &k.bias, c.bias, &k.output, c.out)
                  : arm_convolve_wrapper_s8(&ctx, &k.conv, &k.quant, &k.input, c.in, &k.filter, c.filter, &k.bias,
                                            c.bias, &k.output, c.out);
  return status == ARM_CMSIS_NN_SUCCESS ? kTfLiteOk : kTfLiteError;
#else
  (void)scratch;
  (void)scratch_bytes;
  const int32_t in_dims[4] = {1, c.in_h, c.in_w, c.in_c};
  const int32_t out_dims[4] = {1, c.out_h, c.out_w, c.out_c};
  const int32_t bias_dims[1] = {c.out_c};
  const tflite::RuntimeShape in_shape(4, in_dims), out_shape(4, out_dims), bias_shape(1, bias_dims);
  if (c.depthwise) {
    const int32_t filter_dims[4] = {1, c.kh, c.kw, c.out_c};
    tflite::DepthwiseParams p = ReferenceParams<tflite::DepthwiseParams>(c);
    p.depth_multiplier = c.depth_multiplier;
    tflite::reference_integer_ops::DepthwiseConvPerChannel(
        p, c.multiplier, c.shift, in_shape, c.in, tflite::RuntimeShape(4, filter_dims), c.filter, bias_shape,
        c.bias, out_shape, c.out);
  } else {
    const int32_t filter_dims[4] = {c.out_c, c.kh, c.kw, c.in_c};
    tflite::reference_integer_ops::ConvPerChannel(ReferenceParams<tflite::ConvParams>(c), c.multiplier, c.shift,
                                                  in_shape, c.in, tflite::RuntimeShape(4, filter_dims), c.filter,
                                                  bias_shape, c.bias, out_shape, c.out);
  }
  return kTfLiteOk;
#endif
}

// A layer's output rows kept for its consumer: rows [first, first + count) of the map. In order
// from `data` on, or, when the consumer reads its rows through pointers (`ring`), row r in slot
// r mod capacity, so that no row is ever moved.
struct Window {
  int8_t* data;
  int32_t row_bytes;
  int capacity;
  int first;
  int count;
  int needed_from;  // the consumer's first input row of the output it is computing
  bool ring;

  int8_t* Row(int r) const { return data + (ring ? r % capacity : r - first) * row_bytes; }
  // Room for the next row. A full window drops the rows its consumer is past, all at once (a
  // stride-2 consumer is past two rows a step): the consumer never needs more rows than its kernel
  // height, which is at most the capacity, so at least one row goes.
  int8_t* Append() {
    if (count == capacity) {
      const int dead = needed_from - first < count ? needed_from - first : count;
      if (!ring) std::memmove(data, data + dead * row_bytes, (count - dead) * row_bytes);
      first += dead;
      count -= dead;
    }
    ++count;
    return Row(first + count - 1);
  }
};

constexpr int kMaxRingRows = 3;  // the transposed depthwise kernel's height (FastKernelTakesRows)

// Runs the chain row by row, pulling each layer's input rows from the layer before on demand.
class RowRunner {
 public:
  RowRunner(const OpData& d, const int8_t* input, int8_t* output, int8_t* scratch, const Weights* weights)
      : d_(d), input_(input), output_(output), weights_(weights) {
    int8_t* next = scratch;
    for (int i = 0; i < d.count; ++i) {
      const ChainLayer& l = d.layers[i];
      produced_[i] = 0;
      if (i + 1 < d.count) {
        windows_[i] = {next, l.out_w * l.out_c, l.window_rows, 0, 0, 0, ReadsRows(d, i + 1)};
        next += WindowBytes(l);
      }
    }
    kernel_scratch_ = next;
  }

  // Computes rows of layer i up to `last`.
  TfLiteStatus Produce(int i, int last) {
    const ChainLayer& l = d_.layers[i];
    const bool fast = (d_.fast_layers >> i) & 1u;
    const bool ring = i > 0 && windows_[i - 1].ring;
    while (produced_[i] <= last) {
      const int y = produced_[i];
      const int top = y * l.stride_h - l.pad_h;  // first input row of the kernel window
      const int lo = top < 0 ? 0 : top;
      const int hi = top + l.kh - 1 < l.in_h - 1 ? top + l.kh - 1 : l.in_h - 1;
      const int8_t* in;
      const int8_t* rows[kMaxRingRows];
      if (i == 0) {
        in = input_ + lo * l.in_w * l.in_c;
      } else {
        windows_[i - 1].needed_from = lo;
        if (Produce(i - 1, hi) != kTfLiteOk) return kTfLiteError;
        in = windows_[i - 1].Row(lo);
        if (ring) {
          for (int r = lo; r <= hi; ++r) rows[r - lo] = windows_[i - 1].Row(r);
        }
      }
      int8_t* out = i + 1 == d_.count ? output_ + y * l.out_w * l.out_c : windows_[i].Append();
      ConvLayer call = Call(l, weights_[i], in, hi - lo + 1, lo - top, out, 1);
      if (ring) call.rows = rows;
      if (RunKernel(call, fast, kernel_scratch_, d_.kernel_scratch) != kTfLiteOk) return kTfLiteError;
      ++produced_[i];
    }
    return kTfLiteOk;
  }

 private:
  static bool ReadsRows(const OpData& d, int i) { return (d.fast_layers >> (kRowsBit + i)) & 1u; }

  const OpData& d_;
  const int8_t* input_;
  int8_t* output_;
  const Weights* weights_;
  int8_t* kernel_scratch_;
  Window windows_[kMaxLayers];
  int produced_[kMaxLayers];
};

void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  auto* d = static_cast<OpData*>(context->AllocatePersistentBuffer(context, sizeof(OpData)));
  if (d == nullptr) return nullptr;
  d->layers = nullptr;
  d->count = 0;
  d->scratch_index = -1;
  d->kernel_scratch = 0;
  d->fast_layers = 0;
  int32_t header[kHeaderWords];
  if (buffer == nullptr || length < sizeof(header)) return d;
  std::memcpy(header, buffer, sizeof(header));
  if (header[0] != kVersion || header[1] < 1 || header[1] > kMaxLayers ||
      length != sizeof(header) + header[1] * sizeof(ChainLayer)) {
    return d;  // Prepare reports it
  }
  const char* layers = buffer + sizeof(header);
  if (reinterpret_cast<uintptr_t>(layers) % alignof(ChainLayer) != 0) {  // flatbuffers align it; if not, copy
    void* copy = context->AllocatePersistentBuffer(context, header[1] * sizeof(ChainLayer));
    if (copy == nullptr) return d;
    std::memcpy(copy, layers, header[1] * sizeof(ChainLayer));
    layers = static_cast<const char*>(copy);
  }
  d->layers = reinterpret_cast<const ChainLayer*>(layers);
  d->count = static_cast<int16_t>(header[1]);
  return d;
}

bool DimsAre(const TfLiteEvalTensor* t, int h, int w, int c) {
  return t != nullptr && t->type == kTfLiteInt8 && t->dims->size == 4 && t->dims->data[0] == 1 &&
         t->dims->data[1] == h && t->dims->data[2] == w && t->dims->data[3] == c;
}

int ElementCount(const TfLiteEvalTensor* t) {
  int count = 1;
  for (int i = 0; i < t->dims->size; ++i) count *= t->dims->data[i];
  return count;
}

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  auto* d = static_cast<OpData*>(node->user_data);
  if (d == nullptr || d->layers == nullptr) {
    MicroPrintf("%s: unreadable options (version %d expected)", kConvChainName, static_cast<int>(kVersion));
    return kTfLiteError;
  }
  TF_LITE_ENSURE_EQ(context, node->inputs->size, 1 + d->count * kInputsPerLayer);
  TF_LITE_ENSURE_EQ(context, node->outputs->size, 1);
  const ChainLayer& first = d->layers[0];
  const ChainLayer& last = d->layers[d->count - 1];
  TF_LITE_ENSURE(context, DimsAre(tflite::micro::GetEvalInput(context, node, 0), first.in_h, first.in_w, first.in_c));
  TF_LITE_ENSURE(context, DimsAre(tflite::micro::GetEvalOutput(context, node, 0), last.out_h, last.out_w, last.out_c));
  int32_t kernel_scratch = 0;
  for (int i = 0; i < d->count; ++i) {
    const ChainLayer& l = d->layers[i];
    if (i > 0) {
      const ChainLayer& p = d->layers[i - 1];
      TF_LITE_ENSURE(context, p.out_h == l.in_h && p.out_w == l.in_w && p.out_c == l.in_c);
      TF_LITE_ENSURE(context, p.window_rows >= (l.kh < l.in_h ? l.kh : l.in_h) && p.window_rows <= p.out_h);
    }
    const int base = 1 + i * kInputsPerLayer;
    const TfLiteEvalTensor* filter = tflite::micro::GetEvalInput(context, node, base);
    const TfLiteEvalTensor* bias = tflite::micro::GetEvalInput(context, node, base + 1);
    const TfLiteEvalTensor* multiplier = tflite::micro::GetEvalInput(context, node, base + 2);
    const TfLiteEvalTensor* shift = tflite::micro::GetEvalInput(context, node, base + 3);
    TF_LITE_ENSURE(context, filter != nullptr && filter->type == kTfLiteInt8 &&
                                ElementCount(filter) == l.kh * l.kw * l.out_c * (l.depthwise ? 1 : l.in_c));
    TF_LITE_ENSURE(context, bias == nullptr || (bias->type == kTfLiteInt32 && ElementCount(bias) == l.out_c));
    TF_LITE_ENSURE(context, multiplier != nullptr && multiplier->type == kTfLiteInt32 &&
                                ElementCount(multiplier) == l.out_c);
    TF_LITE_ENSURE(context, shift != nullptr && shift->type == kTfLiteInt32 && ElementCount(shift) == l.out_c);
    // The shape of one call: a band of rows when streamed, the whole map otherwise.
    const bool streamed = d->count > 1;
    const int in_rows = streamed ? (l.kh < l.in_h ? l.kh : l.in_h) : l.in_h;
    const Weights weights = {tflite::micro::GetTensorData<int8_t>(filter),
                             bias != nullptr ? tflite::micro::GetTensorData<int32_t>(bias) : nullptr,
                             tflite::micro::GetTensorData<int32_t>(multiplier),
                             tflite::micro::GetTensorData<int32_t>(shift)};
    const ConvLayer call = Call(l, weights, nullptr, in_rows, l.pad_h, nullptr, streamed ? 1 : l.out_h);
    if (FastKernelCovers(call)) {
      d->fast_layers |= 1u << i;
      if (streamed && i > 0 && l.kh <= kMaxRingRows && FastKernelTakesRows(call)) d->fast_layers |= 1u << (kRowsBit + i);
      continue;
    }
#if defined(CMSIS_NN)
    const int32_t bytes = CmsisScratch(call);
    if (bytes > kernel_scratch) kernel_scratch = bytes;
#endif
  }
  d->kernel_scratch = Align4(kernel_scratch);
  const int32_t total = WindowsBytes(*d) + d->kernel_scratch;
  if (total > 0) {
    int index = -1;
    TF_LITE_ENSURE_OK(context, context->RequestScratchBufferInArena(context, total, &index));
    d->scratch_index = static_cast<int16_t>(index);
  }
  return kTfLiteOk;
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  const auto& d = *static_cast<const OpData*>(node->user_data);
  Weights weights[kMaxLayers];
  for (int i = 0; i < d.count; ++i) weights[i] = LayerWeights(context, node, i);
  const int8_t* input = tflite::micro::GetTensorData<int8_t>(tflite::micro::GetEvalInput(context, node, 0));
  int8_t* output = tflite::micro::GetTensorData<int8_t>(tflite::micro::GetEvalOutput(context, node, 0));
  int8_t* scratch =
      d.scratch_index >= 0 ? static_cast<int8_t*>(context->GetScratchBuffer(context, d.scratch_index)) : nullptr;
  if (d.count == 1) {  // one layer: the whole map in one call
    const ChainLayer& l = d.layers[0];
    return RunKernel(Call(l, weights[0], input, l.in_h, l.pad_h, output, l.out_h), (d.fast_layers & 1u) != 0,
                     scratch, d.kernel_scratch);
  }
  RowRunner runner(d, input, output, scratch, weights);
  return runner.Produce(d.count - 1, d.layers[d.count - 1].out_h - 1);
}

}  // namespace

TFLMRegistration Register_CONV_CHAIN() { return tflite::micro::RegisterOp(Init, Prepare, Eval); }

}  // namespace vww

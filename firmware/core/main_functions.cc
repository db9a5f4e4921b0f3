#include "main_functions.h"

#include <cstdint>

#include "detection_responder.h"
#include "image_provider.h"
#include "model_data.h"
#include "model_ops.h"
#include "model_settings.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#include "tensorflow/lite/micro/micro_time.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tensorflow/lite/schema/schema_generated.h"

extern "C" __attribute__((noinline, used)) void vww_inference_begin(void) {
  __asm__ volatile("" ::: "memory");
}
extern "C" __attribute__((noinline, used)) void vww_inference_end(void) {
  __asm__ volatile("" ::: "memory");
}
// Called around every operator's Invoke() (TFLM's profiler hook), so the QEMU instruction counter
// can attribute instructions to each op (`vwwtorch firmware profile`). A few instructions per op.
extern "C" __attribute__((noinline, used)) void vww_op_begin(void) {
  __asm__ volatile("" ::: "memory");
}
extern "C" __attribute__((noinline, used)) void vww_op_end(void) {
  __asm__ volatile("" ::: "memory");
}

namespace vww {
namespace {

class OpMarkers : public tflite::MicroProfilerInterface {
 public:
  uint32_t BeginEvent(const char* tag) override {
    (void)tag;
    vww_op_begin();
    return 0;
  }
  void EndEvent(uint32_t event_handle) override {
    (void)event_handle;
    vww_op_end();
  }
};

tflite::MicroInterpreter* interpreter = nullptr;
TfLiteTensor* input = nullptr;
int image_index = 0;

// The arena size comes from `vwwtorch firmware generate` (measured, plus a margin).
alignas(16) uint8_t tensor_arena[kTensorArenaSize];

bool TensorIs(const TfLiteTensor* tensor, int rank, const int* dims) {
  if (tensor->type != kTfLiteInt8 || tensor->dims->size != rank) return false;
  for (int i = 0; i < rank; ++i) {
    if (tensor->dims->data[i] != dims[i]) return false;
  }
  return true;
}

int ElementCount(const TfLiteTensor* tensor) {
  int count = 1;
  for (int i = 0; i < tensor->dims->size; ++i) count *= tensor->dims->data[i];
  return count;
}

int64_t TicksToMicros(uint32_t ticks) {
  const uint32_t per_second = tflite::ticks_per_second();
  if (per_second == 0) return -1;
  return static_cast<int64_t>(static_cast<uint64_t>(ticks) * 1000000u / per_second);
}

}  // namespace

bool setup() {
  tflite::InitializeTarget();
  const tflite::Model* model = tflite::GetModel(g_model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    MicroPrintf("error: model schema version %d, this TFLM reads %d",
                static_cast<int>(model->version()), TFLITE_SCHEMA_VERSION);
    return false;
  }
  static ModelOpResolver resolver;
  if (RegisterModelOps(resolver) != kTfLiteOk) {
    MicroPrintf("error: registering the model's ops failed");
    return false;
  }
  static OpMarkers op_markers;
  static tflite::MicroInterpreter static_interpreter(model, resolver, tensor_arena,
                                                     kTensorArenaSize, nullptr, &op_markers);
  interpreter = &static_interpreter;
  if (interpreter->AllocateTensors() != kTfLiteOk) {
    MicroPrintf("error: AllocateTensors() failed with a %d-byte arena", kTensorArenaSize);
    return false;
  }
  input = interpreter->input(0);
  const int input_dims[4] = {1, kNumRows, kNumCols, kNumChannels};
  const TfLiteTensor* output = interpreter->output(0);
  if (!TensorIs(input, 4, input_dims) || output->type != kTfLiteInt8 ||
      ElementCount(output) != kNumLabels) {
    MicroPrintf("error: the model's tensors do not match model_settings.h");
    return false;
  }
  MicroPrintf("vww: model %u B, %d ops, arena %u of %d B used", g_model_data_len, kNumOps,
              ArenaUsedBytes(), kTensorArenaSize);
  return true;
}

LoopStatus loop() {
  const ImageStatus status = GetImage(kNumRows, kNumCols, kNumChannels, input->data.int8);
  if (status == ImageStatus::kNoMoreImages) return LoopStatus::kDone;
  if (status != ImageStatus::kOk) return LoopStatus::kFailed;

  const uint32_t start = tflite::GetCurrentTimeTicks();
  vww_inference_begin();
  const TfLiteStatus invoked = interpreter->Invoke();
  vww_inference_end();
  const uint32_t elapsed = tflite::GetCurrentTimeTicks() - start;
  if (invoked != kTfLiteOk) {
    MicroPrintf("error: Invoke() failed on image %d", image_index);
    return LoopStatus::kFailed;
  }

  const TfLiteTensor* output = interpreter->output(0);
  Detection detection;
  detection.image_index = image_index++;
  detection.scores = output->data.int8;
  detection.num_scores = kNumLabels;
  detection.person_index = kPersonIndex;
  detection.threshold = kPersonThreshold;
  detection.person = output->data.int8[kPersonIndex] >= kPersonThreshold;
  detection.inference_us = TicksToMicros(elapsed);
  RespondToDetection(detection);
  return LoopStatus::kContinue;
}

unsigned ArenaUsedBytes() {
  return interpreter == nullptr ? 0u : static_cast<unsigned>(interpreter->arena_used_bytes());
}

}  // namespace vww

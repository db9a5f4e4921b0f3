#include "detection_responder.h"
#include "model_settings.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace vww {
namespace {
constexpr int kMaxScoresLogged = 16;  // more labels than this are cut from the line
}  // namespace

void LogDetection(const Detection& detection) {
  // One MicroPrintf per line: some boards' logs are not line buffered.
  char line[48 + 5 * kMaxScoresLogged];
  int used = 0;
  for (int i = 0; i < detection.num_scores && i < kMaxScoresLogged; ++i) {
    used += MicroSnprintf(line + used, sizeof(line) - static_cast<size_t>(used), " %d",
                          static_cast<int>(detection.scores[i]));
  }
  const char* label = detection.person ? kLabels[kPersonIndex] : kLabels[kNoPersonIndex];
  if (detection.inference_us >= 0) {
    MicroPrintf("image %d: scores:%s -> %s (%ld us)", detection.image_index, line, label,
                static_cast<long>(detection.inference_us));
  } else {
    MicroPrintf("image %d: scores:%s -> %s (no timer)", detection.image_index, line, label);
  }
}

}  // namespace vww

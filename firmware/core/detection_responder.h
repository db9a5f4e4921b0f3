// What a board does with a result: LEDs, a log line, both.
#ifndef VWW_CORE_DETECTION_RESPONDER_H_
#define VWW_CORE_DETECTION_RESPONDER_H_

#include <cstdint>

namespace vww {

struct Detection {
  int image_index;        // counts from 0
  const int8_t* scores;   // the output tensor, one int8 score per label
  int num_scores;
  int person_index;
  int8_t threshold;       // person when scores[person_index] >= threshold (see model_settings.h)
  bool person;
  int64_t inference_us;   // -1 when the board has no timer
};

void RespondToDetection(const Detection& detection);

// The log line every board prints, parsed by `vwwtorch firmware run`:
//   image 0: scores: -106 106 -> person (12345 us)
void LogDetection(const Detection& detection);

}  // namespace vww

#endif  // VWW_CORE_DETECTION_RESPONDER_H_

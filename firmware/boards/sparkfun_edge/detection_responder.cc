// What the Edge does with each result:
//   blue LED    toggles after every inference (a heartbeat: the loop is running);
//   green LED   person: the person score reached the threshold from model_settings.h;
//   yellow LED  no person;
//   red LED     camera error (set and cleared by the image provider).
// and one UART line, no-person score first, which `vwwtorch firmware monitor` parses:
//   image 12: scores: -98 98 -> person (score 98 >= threshold 0) 153.2 ms
#include "detection_responder.h"

#include "edge_board.h"
#include "model_settings.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace vww {

void RespondToDetection(const Detection& detection) {
  edge::ToggleLed(edge::Led::kBlue);
  edge::SetLed(edge::Led::kGreen, detection.person);
  edge::SetLed(edge::Led::kYellow, !detection.person);

  const int person = detection.scores[detection.person_index];
  const int no_person = detection.scores[kNoPersonIndex];
  const char* label = detection.person ? kLabels[detection.person_index] : kLabels[kNoPersonIndex];
  const char* comparison = detection.person ? ">=" : "<";
  if (detection.inference_us < 0) {
    MicroPrintf("image %d: scores: %d %d -> %s (score %d %s threshold %d) no timer",
                detection.image_index, no_person, person, label, person, comparison,
                static_cast<int>(detection.threshold));
    return;
  }
  const long tenths_ms = static_cast<long>((detection.inference_us + 50) / 100);
  MicroPrintf("image %d: scores: %d %d -> %s (score %d %s threshold %d) %ld.%ld ms",
              detection.image_index, no_person, person, label, person, comparison,
              static_cast<int>(detection.threshold), tenths_ms / 10, tenths_ms % 10);
}

}  // namespace vww

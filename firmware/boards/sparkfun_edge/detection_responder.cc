// What the Edge does with each result:
//   blue LED    toggles after every inference (a heartbeat: the loop is running);
//   green LED   person: the person score reached the threshold from model_settings.h;
//   yellow LED  no person;
//   red LED     camera error (set and cleared by the image provider).
// and the log line every board prints (core's LogDetection), which `vwwtorch firmware monitor`
// parses on the UART.
#include "detection_responder.h"

#include "edge_board.h"

namespace vww {

void RespondToDetection(const Detection& detection) {
  edge::ToggleLed(edge::Led::kBlue);
  edge::SetLed(edge::Led::kGreen, detection.person);
  edge::SetLed(edge::Led::kYellow, !detection.person);
  LogDetection(detection);
}

}  // namespace vww

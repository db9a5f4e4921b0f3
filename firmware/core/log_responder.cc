// Responder for boards without LEDs (host, emulator): the log line is the whole response.
#include "detection_responder.h"

namespace vww {

void RespondToDetection(const Detection& detection) { LogDetection(detection); }

}  // namespace vww

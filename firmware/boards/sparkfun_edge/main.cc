// SparkFun Edge: camera frame in, person score out on the LEDs and the COM UART, forever.
#include "edge_board.h"
#include "main_functions.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace {

// After a failed cycle (camera missing or unplugged), wait a little before trying again so the
// log stays readable; the red LED shows the error meanwhile.
constexpr uint32_t kRetryDelayMs = 1000;

}  // namespace

int main() {
  if (!vww::setup()) {
    MicroPrintf("error: the model cannot run on this board (see above); halted");
    edge::Halt();
  }
  for (;;) {
    if (vww::loop() == vww::LoopStatus::kFailed) edge::DelayMs(kRetryDelayMs);
  }
}

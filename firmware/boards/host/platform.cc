// What TFLM asks of a platform: logging, a clock, target setup. The host has all of it in libc.
#include <chrono>
#include <cstdio>

#include "tensorflow/lite/micro/debug_log.h"
#include "tensorflow/lite/micro/micro_time.h"
#include "tensorflow/lite/micro/system_setup.h"

extern "C" void DebugLog(const char* format, va_list args) { std::vfprintf(stdout, format, args); }

extern "C" int DebugVsnprintf(char* buffer, size_t size, const char* format, va_list args) {
  return std::vsnprintf(buffer, size, format, args);
}

namespace tflite {

void InitializeTarget() { std::setvbuf(stdout, nullptr, _IOLBF, 0); }

// Microsecond ticks; callers only take differences, so the 32-bit wrap (71 minutes) is harmless.
uint32_t ticks_per_second() { return 1000000u; }

uint32_t GetCurrentTimeTicks() {
  const auto now = std::chrono::steady_clock::now().time_since_epoch();
  return static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::microseconds>(now).count());
}

}  // namespace tflite

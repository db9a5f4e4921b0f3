// What TFLM asks of a platform, on the emulated Cortex-M4F: logging through semihosting, time from
// SysTick, and the SysTick setup itself.
#include <cstdint>
#include <cstring>

#include "qemu_m4.h"
#include "semihosting.h"
#include "tensorflow/lite/micro/debug_log.h"
#include "tensorflow/lite/micro/micro_time.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tiny_format.h"

namespace {

// SysTick registers (Armv7-M architecture reference manual, B3.3).
volatile uint32_t* const kSysTickControl = reinterpret_cast<volatile uint32_t*>(0xE000E010u);
volatile uint32_t* const kSysTickReload = reinterpret_cast<volatile uint32_t*>(0xE000E014u);
volatile uint32_t* const kSysTickCurrent = reinterpret_cast<volatile uint32_t*>(0xE000E018u);
constexpr uint32_t kSysTickEnable = 1u << 0;
constexpr uint32_t kSysTickInterrupt = 1u << 1;
constexpr uint32_t kSysTickProcessorClock = 1u << 2;
constexpr uint32_t kSysTickPeriod = 1u << 24;  // the counter is 24 bits wide
constexpr uint32_t kCpuHz = 25000000u;         // MPS2 SYSCLK

volatile uint32_t systick_wraps = 0;

}  // namespace

extern "C" void SysTick_Handler() { systick_wraps = systick_wraps + 1; }

extern "C" void DebugLog(const char* format, va_list args) {
  char buffer[256];
  const int length = vww::TinyVsnprintf(buffer, sizeof(buffer), format, args);
  const size_t n = length < 0 ? 0 : (static_cast<size_t>(length) < sizeof(buffer)
                                         ? static_cast<size_t>(length)
                                         : sizeof(buffer) - 1);
  semihosting::WriteStdout(buffer, n);
}

extern "C" int DebugVsnprintf(char* buffer, size_t size, const char* format, va_list args) {
  return vww::TinyVsnprintf(buffer, size, format, args);
}

namespace qemu_m4 {

void Log(const char* text) {
  semihosting::WriteStdout(text, std::strlen(text));
  semihosting::WriteStdout("\n", 1);
}

}  // namespace qemu_m4

namespace tflite {

void InitializeTarget() {
  *kSysTickReload = kSysTickPeriod - 1;
  *kSysTickCurrent = 0;
  *kSysTickControl = kSysTickEnable | kSysTickInterrupt | kSysTickProcessorClock;
}

uint32_t ticks_per_second() { return kCpuHz; }

// Emulated time: QEMU runs SysTick from the host clock, so it says little about a real M4.
uint32_t GetCurrentTimeTicks() {
  uint32_t wraps;
  uint32_t current;
  do {
    wraps = systick_wraps;
    current = *kSysTickCurrent;
  } while (wraps != systick_wraps);
  return wraps * kSysTickPeriod + (kSysTickPeriod - 1 - current);
}

}  // namespace tflite

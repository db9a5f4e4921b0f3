// The SparkFun Edge platform: board bring-up through the Ambiq HAL and SparkFun's BSP, and what
// TFLM asks of a platform (log output, a clock, target setup).
#include <cstdarg>
#include <cstddef>

#include "am_bsp.h"
#include "am_mcu_apollo.h"
#include "am_util.h"
#include "edge_board.h"
#include "tensorflow/lite/micro/debug_log.h"
#include "tensorflow/lite/micro/micro_time.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tiny_format.h"

namespace edge {
namespace {

bool board_ready = false;
bool burst_mode = false;

uint32_t LedIndex(Led led) {
  switch (led) {
    case Led::kRed:
      return AM_BSP_LED_RED;
    case Led::kBlue:
      return AM_BSP_LED_BLUE;
    case Led::kGreen:
      return AM_BSP_LED_GREEN;
    case Led::kYellow:
      break;
  }
  return AM_BSP_LED_YELLOW;
}

// 96 MHz "TurboSPOT" burst mode roughly halves inference time; not every Apollo3 part has it.
bool EnableBurstMode() {
  am_hal_burst_avail_e available;
  if (am_hal_burst_mode_initialize(&available) != AM_HAL_STATUS_SUCCESS ||
      available != AM_HAL_BURST_AVAIL) {
    return false;
  }
  am_hal_burst_mode_e mode;
  return am_hal_burst_mode_enable(&mode) == AM_HAL_STATUS_SUCCESS && mode == AM_HAL_BURST_MODE;
}

void Print(const char* text) {
  // Before the UART is set up the BSP's writer would wait forever; drop the text instead.
  if (!board_ready) return;
  // The BSP's writer takes a mutable string but only reads it.
  am_bsp_uart_string_print(const_cast<char*>(text));
}

}  // namespace

void InitBoard() {
  if (board_ready) return;
  am_hal_clkgen_control(AM_HAL_CLKGEN_CONTROL_SYSCLK_MAX, nullptr);
  am_hal_cachectrl_config(&am_hal_cachectrl_defaults);
  am_hal_cachectrl_enable();
  burst_mode = EnableBurstMode();
  am_devices_led_array_init(am_bsp_psLEDs, AM_BSP_NUM_LEDS);
  for (uint32_t i = 0; i < AM_BSP_NUM_LEDS; ++i) am_devices_led_off(am_bsp_psLEDs, i);
  am_bsp_uart_printf_enable();
  am_hal_stimer_config(AM_HAL_STIMER_CFG_CLEAR | AM_HAL_STIMER_CFG_FREEZE);
  am_hal_stimer_config(AM_HAL_STIMER_HFRC_3MHZ);
  board_ready = true;
  Print(burst_mode ? "\r\nvww: SparkFun Edge, Apollo3 at 96 MHz (burst mode)\r\n"
                   : "\r\nvww: SparkFun Edge, Apollo3 at 48 MHz\r\n");
}

void SetLed(Led led, bool on) {
  if (on) {
    am_devices_led_on(am_bsp_psLEDs, LedIndex(led));
  } else {
    am_devices_led_off(am_bsp_psLEDs, LedIndex(led));
  }
}

void ToggleLed(Led led) { am_devices_led_toggle(am_bsp_psLEDs, LedIndex(led)); }

uint32_t TimerTicks() { return am_hal_stimer_counter_get(); }

void DelayMs(uint32_t milliseconds) { am_util_delay_ms(milliseconds); }

void Halt() {
  SetLed(Led::kRed, true);
  for (;;) {
    am_hal_sysctrl_sleep(AM_HAL_SYSCTRL_SLEEP_DEEP);
  }
}

}  // namespace edge

extern "C" void DebugLog(const char* format, va_list args) {
  char buffer[256];
  vww::TinyVsnprintf(buffer, sizeof(buffer), format, args);
  edge::Print(buffer);
}

extern "C" int DebugVsnprintf(char* buffer, size_t size, const char* format, va_list args) {
  return vww::TinyVsnprintf(buffer, size, format, args);
}

namespace tflite {

void InitializeTarget() { edge::InitBoard(); }

uint32_t ticks_per_second() { return edge::kTimerHz; }

uint32_t GetCurrentTimeTicks() { return edge::TimerTicks(); }

}  // namespace tflite

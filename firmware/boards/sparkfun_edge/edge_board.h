// Board services the SparkFun Edge port's files share: clocks, LEDs, the timer, halting.
#ifndef VWW_SPARKFUN_EDGE_EDGE_BOARD_H_
#define VWW_SPARKFUN_EDGE_EDGE_BOARD_H_

#include <cstdint>

namespace edge {

// The four user LEDs, in the BSP's order (am_bsp_psLEDs).
enum class Led { kRed, kBlue, kGreen, kYellow };

// Clocks (48 MHz, then 96 MHz burst mode when the part has it), flash cache, LEDs, the log UART
// (COM UART, 115200 8N1) and the timer. Safe to call more than once.
void InitBoard();

void SetLed(Led led, bool on);
void ToggleLed(Led led);

// Free-running 32-bit hardware timer (Apollo3 STIMER on HFRC / 16): 3 MHz, wraps after ~23 min;
// only differences of readings are meaningful.
constexpr uint32_t kTimerHz = 3000000u;
uint32_t TimerTicks();

void DelayMs(uint32_t milliseconds);

// Red LED on, then wait forever; for errors nothing can recover from (the log says which).
[[noreturn]] void Halt();

}  // namespace edge

#endif  // VWW_SPARKFUN_EDGE_EDGE_BOARD_H_

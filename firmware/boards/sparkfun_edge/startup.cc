// Reset, vector table and C/C++ runtime pieces for the Apollo3 application (our own; no vendor
// startup file). The secure bootloader starts the image at 0xC000 from the first two words of
// the vector table there: the initial stack pointer and Reset_Handler.
#include <cstdint>

#include "edge_board.h"

extern "C" {
extern uint32_t __data_start[], __data_end[], __data_load[];
extern uint32_t __bss_start[], __bss_end[];
extern uint32_t __stack_top[];
extern void (*__preinit_array_start[])(void);
extern void (*__preinit_array_end[])(void);
extern void (*__init_array_start[])(void);
extern void (*__init_array_end[])(void);

int main();
void Reset_Handler();
}

namespace {

constexpr int kExternalInterrupts = 32;  // Apollo3: BROWNOUT (0) ... CLKGEN (31)

// A fault or an interrupt nobody enabled: nothing sensible can continue. Red LED, then wait (the
// watchdog is not running, so RST is the way out).
[[noreturn]] void Trap() { edge::Halt(); }

extern "C" void FaultHandler() { Trap(); }
extern "C" void UnexpectedInterrupt() { Trap(); }

// Runs with the FPU on, before any C++ object exists; only Reset_Handler's assembly calls it.
extern "C" [[noreturn, gnu::used]] void ResetContinue() {
  for (uint32_t *src = __data_load, *dst = __data_start; dst < __data_end;) *dst++ = *src++;
  for (uint32_t* dst = __bss_start; dst < __bss_end;) *dst++ = 0;
  for (auto f = __preinit_array_start; f < __preinit_array_end; ++f) (*f)();
  for (auto f = __init_array_start; f < __init_array_end; ++f) (*f)();
  main();
  Trap();
}

}  // namespace

// The vector table, placed first in flash (0xC000) by apollo3.ld.
using Handler = void (*)();
extern "C" __attribute__((section(".isr_vector"), used))
const Handler g_vww_vectors[16 + kExternalInterrupts] = {
    reinterpret_cast<Handler>(__stack_top),
    Reset_Handler,
    UnexpectedInterrupt,  // NMI
    FaultHandler,         // HardFault
    FaultHandler,         // MemManage
    FaultHandler,         // BusFault
    FaultHandler,         // UsageFault
    nullptr, nullptr, nullptr, nullptr,
    UnexpectedInterrupt,  // SVCall
    UnexpectedInterrupt,  // DebugMonitor
    nullptr,
    UnexpectedInterrupt,  // PendSV
    UnexpectedInterrupt,  // SysTick
    // Everything is polled, so no peripheral interrupt is expected.
    UnexpectedInterrupt, UnexpectedInterrupt, UnexpectedInterrupt, UnexpectedInterrupt,
    UnexpectedInterrupt, UnexpectedInterrupt, UnexpectedInterrupt, UnexpectedInterrupt,
    UnexpectedInterrupt, UnexpectedInterrupt, UnexpectedInterrupt, UnexpectedInterrupt,
    UnexpectedInterrupt, UnexpectedInterrupt, UnexpectedInterrupt, UnexpectedInterrupt,
    UnexpectedInterrupt, UnexpectedInterrupt, UnexpectedInterrupt, UnexpectedInterrupt,
    UnexpectedInterrupt, UnexpectedInterrupt, UnexpectedInterrupt, UnexpectedInterrupt,
    UnexpectedInterrupt, UnexpectedInterrupt, UnexpectedInterrupt, UnexpectedInterrupt,
    UnexpectedInterrupt, UnexpectedInterrupt, UnexpectedInterrupt, UnexpectedInterrupt,
};

// The bootloader jumps here with its own vector table still selected: point VTOR at ours, and
// take the initial stack pointer from it, and give the FPU full access (CPACR CP10/CP11, Armv7-M
// architecture reference manual B3.2) before compiled code may touch a float register.
extern "C" __attribute__((naked, noreturn)) void Reset_Handler() {
  __asm__ volatile(
      "ldr r0, =g_vww_vectors\n"
      "ldr r1, =0xE000ED08\n"
      "str r0, [r1]\n"
      "ldr r1, [r0]\n"
      "msr msp, r1\n"
      "ldr r0, =0xE000ED88\n"
      "ldr r1, [r0]\n"
      "orr r1, r1, #(0xF << 20)\n"
      "str r1, [r0]\n"
      "dsb\n"
      "isb\n"
      "b ResetContinue\n");
}

// Bare metal has no heap and never exits through the C library, so the pieces of the C and C++
// runtimes that would pull in malloc, stdio and exit handlers are replaced by these.
extern "C" [[noreturn]] void abort() { Trap(); }

extern "C" [[noreturn]] void __assert_func(const char*, int, const char*, const char*) { Trap(); }

extern "C" void __cxa_pure_virtual() { Trap(); }

// Static objects live until reset: their destructors are never registered nor run.
extern "C" int __cxa_atexit(void (*)(void*), void*, void*) { return 0; }
void* __dso_handle = nullptr;

// Virtual destructors reference operator delete even though nothing is ever deleted.
void operator delete(void*) noexcept { Trap(); }
void operator delete(void*, unsigned int) noexcept { Trap(); }

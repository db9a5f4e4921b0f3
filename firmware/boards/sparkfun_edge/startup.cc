// Reset and vector table for the Apollo3 application (our own; no vendor startup file). The
// secure bootloader starts the image at 0xC000 from the first two words of the vector table
// there: the initial stack pointer and Reset_Handler. The memory set-up, runtime stubs and vector
// table shape are boards/cortex_m's; here the Edge's failure path and its 32 external interrupts.
#include "cortex_m_runtime.h"
#include "edge_board.h"

namespace {

constexpr int kExternalInterrupts = 32;  // Apollo3: BROWNOUT (0) ... CLKGEN (31)

// A fault or an interrupt nobody enabled: nothing sensible can continue. Red LED, then wait (the
// watchdog is not running, so RST is the way out).
[[noreturn]] void Trap() { edge::Halt(); }

extern "C" void FaultHandler() { Trap(); }
extern "C" void UnexpectedInterrupt() { Trap(); }

// Runs with the FPU on, before any C++ object exists; only Reset_Handler's assembly calls it.
extern "C" [[noreturn, gnu::used]] void ResetContinue() {
  cortex_m::InitializeMemory();
  cortex_m::RunConstructors();
  main();
  Trap();
}

}  // namespace

namespace cortex_m {

void OnAbort() { Trap(); }
void OnAssertFailed(const char*, const char*) { Trap(); }

}  // namespace cortex_m

// The vector table, placed first in flash (0xC000) by apollo3.ld.
extern "C" __attribute__((section(".isr_vector"), used))
const cortex_m::Handler g_vww_vectors[16 + kExternalInterrupts] = {
    CORTEX_M_SYSTEM_VECTORS(Reset_Handler, FaultHandler, UnexpectedInterrupt, UnexpectedInterrupt),
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
// take the initial stack pointer from it, then enable the FPU.
extern "C" __attribute__((naked, noreturn)) void Reset_Handler() {
  __asm__ volatile(
      "ldr r0, =g_vww_vectors\n"
      "ldr r1, =0xE000ED08\n"
      "str r0, [r1]\n"
      "ldr r1, [r0]\n"
      "msr msp, r1\n"
      CORTEX_M_ENABLE_FPU_ASM
      "b ResetContinue\n");
}

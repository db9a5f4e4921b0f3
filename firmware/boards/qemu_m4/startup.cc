// Reset and fault handling for the emulated Cortex-M4F: our own, minimal, no vendor startup code.
// The memory set-up, runtime stubs and vector table shape are boards/cortex_m's; here the stack
// paint, semihosting exit codes and error lines that make the emulated runs observable.
#include <cstdint>

#include "cortex_m_runtime.h"
#include "qemu_m4.h"
#include "semihosting.h"

extern "C" {
extern uint32_t __stack_bottom[];

void FaultHandler();
void SysTick_Handler();
}

namespace {

constexpr uint32_t kStackPaint = 0xA5A5A5A5u;

[[noreturn]] void DefaultHandler() {
  qemu_m4::Log("error: unexpected exception");
  semihosting::Exit(3);
}

// Runs with the FPU on, before any C++ object exists.
extern "C" [[noreturn]] void ResetContinue() {
  cortex_m::InitializeMemory();
  // Paint the unused stack so qemu_m4::StackUsedBytes() can find the high-water mark.
  uint32_t* here;
  __asm__ volatile("mov %0, sp" : "=r"(here));
  for (uint32_t* p = __stack_bottom; p < here - 16; ++p) *p = kStackPaint;
  cortex_m::RunConstructors();
  semihosting::Exit(main());
}

}  // namespace

extern "C" __attribute__((naked, noreturn)) void Reset_Handler() {
  __asm__ volatile(CORTEX_M_ENABLE_FPU_ASM "b ResetContinue\n");
}

extern "C" void FaultHandler() {
  qemu_m4::Log("error: hard fault");
  semihosting::Exit(3);
}

namespace cortex_m {

void OnAbort() {
  qemu_m4::Log("error: abort() called");
  semihosting::Exit(4);
}

void OnAssertFailed(const char* file, const char* expression) {
  qemu_m4::Log("error: assertion failed:");
  qemu_m4::Log(expression);
  qemu_m4::Log(file);
  semihosting::Exit(4);
}

}  // namespace cortex_m

namespace qemu_m4 {

unsigned StackUsedBytes() {
  const uint32_t* p = __stack_bottom;
  while (p < __stack_top && *p == kStackPaint) ++p;
  return static_cast<unsigned>(reinterpret_cast<uintptr_t>(__stack_top) -
                               reinterpret_cast<uintptr_t>(p));
}

unsigned StackSizeBytes() {
  return static_cast<unsigned>(reinterpret_cast<uintptr_t>(__stack_top) -
                               reinterpret_cast<uintptr_t>(__stack_bottom));
}

}  // namespace qemu_m4

// The vector table: the system exceptions only (the emulated runs enable no interrupt).
__attribute__((section(".vectors"), used)) void (*const kVectors[16])(void) = {
    CORTEX_M_SYSTEM_VECTORS(Reset_Handler, FaultHandler, DefaultHandler, SysTick_Handler),
};

// Reset and fault handling for the emulated Cortex-M4F: our own, minimal, no vendor startup code.
#include <cstdint>

#include "qemu_m4.h"
#include "semihosting.h"

extern "C" {
extern uint32_t __data_start[], __data_end[], __data_load[];
extern uint32_t __bss_start[], __bss_end[];
extern uint32_t __stack_bottom[], __stack_top[];
extern void (*__preinit_array_start[])(void);
extern void (*__preinit_array_end[])(void);
extern void (*__init_array_start[])(void);
extern void (*__init_array_end[])(void);

int main();
void Reset_Handler();
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
  for (uint32_t *src = __data_load, *dst = __data_start; dst < __data_end;) *dst++ = *src++;
  for (uint32_t* dst = __bss_start; dst < __bss_end;) *dst++ = 0;
  // Paint the unused stack so qemu_m4::StackUsedBytes() can find the high-water mark.
  uint32_t* here;
  __asm__ volatile("mov %0, sp" : "=r"(here));
  for (uint32_t* p = __stack_bottom; p < here - 16; ++p) *p = kStackPaint;
  for (auto f = __preinit_array_start; f < __preinit_array_end; ++f) (*f)();
  for (auto f = __init_array_start; f < __init_array_end; ++f) (*f)();
  semihosting::Exit(main());
}

}  // namespace

// The FPU must be enabled (CPACR full access to CP10/CP11) before the compiler's code may use a
// single floating-point register, hence this first step in assembly.
extern "C" __attribute__((naked, noreturn)) void Reset_Handler() {
  __asm__ volatile(
      "ldr r0, =0xE000ED88\n"
      "ldr r1, [r0]\n"
      "orr r1, r1, #(0xF << 20)\n"
      "str r1, [r0]\n"
      "dsb\n"
      "isb\n"
      "b ResetContinue\n");
}

extern "C" void FaultHandler() {
  qemu_m4::Log("error: hard fault");
  semihosting::Exit(3);
}

// Bare metal has no heap and never exits through the C library, so the pieces of the C and C++
// runtimes that would pull in malloc, stdio and exit handlers are replaced by these.
extern "C" [[noreturn]] void abort() {
  qemu_m4::Log("error: abort() called");
  semihosting::Exit(4);
}

extern "C" [[noreturn]] void __assert_func(const char* file, int line, const char*, const char* expr) {
  qemu_m4::Log("error: assertion failed:");
  qemu_m4::Log(expr);
  qemu_m4::Log(file);
  (void)line;
  semihosting::Exit(4);
}

extern "C" void __cxa_pure_virtual() { abort(); }

// Static objects live until reset: their destructors are never registered nor run.
extern "C" int __cxa_atexit(void (*)(void*), void*, void*) { return 0; }
void* __dso_handle = nullptr;

// Virtual destructors reference operator delete even though nothing is ever deleted.
void operator delete(void*) noexcept { abort(); }
void operator delete(void*, unsigned int) noexcept { abort(); }

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

// Armv7-M vector table: initial stack pointer, then the system exception handlers.
__attribute__((section(".vectors"), used)) void (*const kVectors[16])(void) = {
    reinterpret_cast<void (*)(void)>(__stack_top),
    Reset_Handler,
    DefaultHandler,  // NMI
    FaultHandler,    // HardFault
    FaultHandler,    // MemManage
    FaultHandler,    // BusFault
    FaultHandler,    // UsageFault
    nullptr, nullptr, nullptr, nullptr,
    DefaultHandler,  // SVCall
    DefaultHandler,  // DebugMonitor
    nullptr,
    DefaultHandler,  // PendSV
    SysTick_Handler,
};

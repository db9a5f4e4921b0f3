// What every bare-metal Cortex-M port shares (qemu_m4, sparkfun_edge): the memory set-up before
// main(), the C/C++ runtime stubs, and the shape of the Armv7-M vector table. Each port keeps its
// own Reset_Handler (which core registers it sets first), its handlers and its failure path,
// given to the runtime stubs through the two hooks below.
#ifndef VWW_CORTEX_M_RUNTIME_H_
#define VWW_CORTEX_M_RUNTIME_H_

#include <cstdint>

extern "C" {
// Symbols of the ports' linker scripts.
extern uint32_t __data_start[], __data_end[], __data_load[];
extern uint32_t __bss_start[], __bss_end[];
extern uint32_t __stack_top[];

int main();
void Reset_Handler();
}

namespace cortex_m {

using Handler = void (*)();

// Copies .data from flash and zeroes .bss: runs before any C++ object exists.
void InitializeMemory();
// Runs the static constructors (preinit and init arrays), once memory is set up.
void RunConstructors();

// The port's failure path, called by abort(), a failed assert(), a pure virtual call or a delete.
[[noreturn]] void OnAbort();
[[noreturn]] void OnAssertFailed(const char* file, const char* expression);

}  // namespace cortex_m

// Full access to the FPU (CPACR CP10/CP11, Armv7-M architecture reference manual B3.2): the first
// step of a Reset_Handler, in assembly, before compiled code may touch a float register.
#define CORTEX_M_ENABLE_FPU_ASM \
  "ldr r0, =0xE000ED88\n"       \
  "ldr r1, [r0]\n"              \
  "orr r1, r1, #(0xF << 20)\n"  \
  "str r1, [r0]\n"              \
  "dsb\n"                       \
  "isb\n"

// The 16 system entries that open an Armv7-M vector table: the initial stack pointer, reset, then
// the system exceptions; `fault` takes the four fault exceptions, `unexpected` NMI, SVCall,
// DebugMonitor and PendSV. A port's external interrupts follow.
#define CORTEX_M_SYSTEM_VECTORS(reset, fault, unexpected, systick)                        \
  reinterpret_cast<cortex_m::Handler>(__stack_top), reset, unexpected /* NMI */,          \
      fault /* HardFault */, fault /* MemManage */, fault /* BusFault */,                 \
      fault /* UsageFault */, nullptr, nullptr, nullptr, nullptr, unexpected /* SVCall */, \
      unexpected /* DebugMonitor */, nullptr, unexpected /* PendSV */, systick

#endif  // VWW_CORTEX_M_RUNTIME_H_

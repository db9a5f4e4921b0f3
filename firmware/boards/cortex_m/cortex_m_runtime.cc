// The memory set-up and C/C++ runtime stubs every bare-metal Cortex-M port shares (see the header).
#include "cortex_m_runtime.h"

extern "C" {
extern void (*__preinit_array_start[])(void);
extern void (*__preinit_array_end[])(void);
extern void (*__init_array_start[])(void);
extern void (*__init_array_end[])(void);
}

namespace cortex_m {

void InitializeMemory() {
  for (uint32_t *src = __data_load, *dst = __data_start; dst < __data_end;) *dst++ = *src++;
  for (uint32_t* dst = __bss_start; dst < __bss_end;) *dst++ = 0;
}

void RunConstructors() {
  for (auto f = __preinit_array_start; f < __preinit_array_end; ++f) (*f)();
  for (auto f = __init_array_start; f < __init_array_end; ++f) (*f)();
}

}  // namespace cortex_m

// Bare metal has no heap and never exits through the C library, so the pieces of the C and C++
// runtimes that would pull in malloc, stdio and exit handlers are replaced by these.
extern "C" [[noreturn]] void abort() { cortex_m::OnAbort(); }

extern "C" [[noreturn]] void __assert_func(const char* file, int, const char*, const char* expression) {
  cortex_m::OnAssertFailed(file, expression);
}

extern "C" void __cxa_pure_virtual() { abort(); }

// Static objects live until reset: their destructors are never registered nor run.
extern "C" int __cxa_atexit(void (*)(void*), void*, void*) { return 0; }
void* __dso_handle = nullptr;

// Virtual destructors reference operator delete even though nothing is ever deleted.
void operator delete(void*) noexcept { abort(); }
void operator delete(void*, unsigned int) noexcept { abort(); }

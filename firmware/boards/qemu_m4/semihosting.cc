#include "semihosting.h"

#include <cstring>

namespace semihosting {
namespace {

enum Operation : uintptr_t {
  kOpen = 0x01,
  kClose = 0x02,
  kWrite = 0x05,
  kRead = 0x06,
  kFileLength = 0x0C,
  kGetCommandLine = 0x15,
  kExitExtended = 0x20,
};

constexpr uintptr_t kOpenModeReadBinary = 1;          // "rb"
constexpr uintptr_t kOpenModeWrite = 4;               // "w", used on ":tt" for stdout
constexpr uintptr_t kApplicationExit = 0x20026;       // ADP_Stopped_ApplicationExit

uintptr_t Call(uintptr_t operation, const void* block) {
  register uintptr_t r0 __asm__("r0") = operation;
  register const void* r1 __asm__("r1") = block;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

int stdout_handle = -1;

}  // namespace

int OpenForReading(const char* path) {
  const uintptr_t block[3] = {reinterpret_cast<uintptr_t>(path), kOpenModeReadBinary,
                              std::strlen(path)};
  return static_cast<int>(Call(kOpen, block));
}

int Close(int handle) {
  const uintptr_t block[1] = {static_cast<uintptr_t>(handle)};
  return static_cast<int>(Call(kClose, block));
}

long FileLength(int handle) {
  const uintptr_t block[1] = {static_cast<uintptr_t>(handle)};
  return static_cast<long>(Call(kFileLength, block));
}

bool Read(int handle, void* buffer, size_t n) {
  const uintptr_t block[3] = {static_cast<uintptr_t>(handle), reinterpret_cast<uintptr_t>(buffer),
                              n};
  return Call(kRead, block) == 0;  // the call returns how many bytes were NOT read
}

void WriteStdout(const char* text, size_t n) {
  if (stdout_handle < 0) {
    static const char kConsole[] = ":tt";
    const uintptr_t block[3] = {reinterpret_cast<uintptr_t>(kConsole), kOpenModeWrite,
                                sizeof(kConsole) - 1};
    stdout_handle = static_cast<int>(Call(kOpen, block));
  }
  const uintptr_t block[3] = {static_cast<uintptr_t>(stdout_handle),
                              reinterpret_cast<uintptr_t>(text), n};
  Call(kWrite, block);
}

bool GetCommandLine(char* buffer, size_t size) {
  uintptr_t block[2] = {reinterpret_cast<uintptr_t>(buffer), size};
  return Call(kGetCommandLine, block) == 0;
}

void Exit(int status) {
  const uintptr_t block[2] = {kApplicationExit, static_cast<uintptr_t>(status)};
  Call(kExitExtended, block);
  for (;;) {
  }
}

}  // namespace semihosting

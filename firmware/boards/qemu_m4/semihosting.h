// Arm semihosting: the guest asks the debugger (here QEMU) to do I/O on the host, through a
// `bkpt 0xAB` with an operation number in r0 and a parameter block pointer in r1.
// Operation numbers are from Arm's "Semihosting for AArch32 and AArch64" specification.
#ifndef VWW_QEMU_M4_SEMIHOSTING_H_
#define VWW_QEMU_M4_SEMIHOSTING_H_

#include <cstddef>
#include <cstdint>

namespace semihosting {

// Returns the host file handle, or -1. Binary read-only.
int OpenForReading(const char* path);
int Close(int handle);
long FileLength(int handle);
// Reads n bytes; true when all of them arrived.
bool Read(int handle, void* buffer, size_t n);
// Writes n bytes to the host's standard output.
void WriteStdout(const char* text, size_t n);
// The command line QEMU was given with -semihosting-config arg=...; false if too long.
bool GetCommandLine(char* buffer, size_t size);
// Ends the emulation with this exit status.
[[noreturn]] void Exit(int status);

}  // namespace semihosting

#endif  // VWW_QEMU_M4_SEMIHOSTING_H_

// Board services shared by the qemu_m4 port's files.
#ifndef VWW_QEMU_M4_QEMU_M4_H_
#define VWW_QEMU_M4_QEMU_M4_H_

namespace qemu_m4 {

// Writes a line (a newline is added) to the host's standard output.
void Log(const char* text);

// High-water mark of the main stack, from the paint the reset handler leaves.
unsigned StackUsedBytes();
unsigned StackSizeBytes();

}  // namespace qemu_m4

#endif  // VWW_QEMU_M4_QEMU_M4_H_

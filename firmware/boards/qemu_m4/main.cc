// qemu_m4 build: images are host files named on the semihosting command line, e.g.
//   qemu-system-arm -machine mps2-an386 -nographic -kernel vww_qemu_m4.elf
//       -semihosting-config enable=on,target=native,arg=vww,arg=input.bin
#include <cstdint>

#include "file_images.h"
#include "main_functions.h"
#include "model_settings.h"
#include "qemu_m4.h"
#include "semihosting.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace {

constexpr int kMaxArgs = 64;
char command_line[2048];
const char* args[kMaxArgs];

void* OpenFile(const char* path) {
  const int handle = semihosting::OpenForReading(path);
  // Handles are small non-negative ints; shift by one so that 0 stays "no file".
  return handle < 0 ? nullptr : reinterpret_cast<void*>(static_cast<intptr_t>(handle) + 1);
}

int Handle(void* file) { return static_cast<int>(reinterpret_cast<intptr_t>(file) - 1); }

long FileSize(void* file) { return semihosting::FileLength(Handle(file)); }

bool ReadFile(void* file, uint8_t* dst, size_t n) { return semihosting::Read(Handle(file), dst, n); }

void CloseFile(void* file) { semihosting::Close(Handle(file)); }

// Splits the command line at spaces; the first word is the program name.
int SplitCommandLine() {
  int count = 0;
  char* p = command_line;
  while (*p != '\0' && count < kMaxArgs) {
    while (*p == ' ') *p++ = '\0';
    if (*p == '\0') break;
    args[count++] = p;
    while (*p != '\0' && *p != ' ') ++p;
  }
  return count;
}

}  // namespace

int main() {
  if (!semihosting::GetCommandLine(command_line, sizeof(command_line))) {
    MicroPrintf("error: semihosting command line missing or longer than %d bytes",
                static_cast<int>(sizeof(command_line)));
    return 2;
  }
  const int argc = SplitCommandLine();
  if (argc < 2) {
    MicroPrintf("usage: -semihosting-config enable=on,target=native,arg=vww,arg=IMAGE...");
    return 2;
  }
  const vww::FileOps ops = {OpenFile, FileSize, ReadFile, CloseFile};
  vww::InitFileImages(ops, args + 1, argc - 1, vww::kByteToInput);
  if (!vww::setup()) return 1;
  vww::LoopStatus status;
  while ((status = vww::loop()) == vww::LoopStatus::kContinue) {
  }
  MicroPrintf("vww: stack %u of %u B used", qemu_m4::StackUsedBytes(), qemu_m4::StackSizeBytes());
  return status == vww::LoopStatus::kDone ? 0 : 1;
}

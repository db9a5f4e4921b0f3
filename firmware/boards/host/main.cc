// Host build: `vww_host IMAGE...` prints one scores line per image (see core/file_images.h).
#include <cstdio>

#include "file_images.h"
#include "main_functions.h"
#include "model_settings.h"

namespace {

void* OpenFile(const char* path) { return std::fopen(path, "rb"); }

long FileSize(void* handle) {
  FILE* file = static_cast<FILE*>(handle);
  const long here = std::ftell(file);
  if (std::fseek(file, 0, SEEK_END) != 0) return -1;
  const long size = std::ftell(file);
  std::fseek(file, here, SEEK_SET);
  return size;
}

bool ReadFile(void* handle, uint8_t* dst, size_t n) {
  return std::fread(dst, 1, n, static_cast<FILE*>(handle)) == n;
}

void CloseFile(void* handle) { std::fclose(static_cast<FILE*>(handle)); }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s IMAGE...  (PGM/PPM, BMP, .npy or raw int8 tensors)\n", argv[0]);
    return 2;
  }
  const vww::FileOps ops = {OpenFile, FileSize, ReadFile, CloseFile};
  vww::InitFileImages(ops, argv + 1, argc - 1, vww::kByteToInput);
  if (!vww::setup()) return 1;
  vww::LoopStatus status;
  while ((status = vww::loop()) == vww::LoopStatus::kContinue) {
  }
  std::fflush(stdout);
  return status == vww::LoopStatus::kDone ? 0 : 1;
}

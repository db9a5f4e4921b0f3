// Images from files, for boards with a file system (host) or host file access (semihosting).
//
// Each file holds one image or a batch of int8 tensors, in the model's input size (never resized):
//   - binary netpbm: P5 (grey) or P6 (RGB), maxval 255;
//   - BMP: uncompressed, 8-bit with a grey palette (1-channel models) or 24-bit (3-channel models);
//   - .npy: uint8 pixels or int8 tensors, C order, shaped (rows, cols[, channels]) or
//     (N, rows, cols, channels);
//   - anything else: raw int8 tensors back to back (a whole multiple of rows * cols * channels).
// Pixel bytes b become byte_to_input[b] (model_settings.h's kByteToInput, the model's input
// convention derived by `vwwtorch firmware generate`); int8 data is taken as is.
// `vwwtorch firmware run` also reads PNG and JPEG, converting them to raw tensors first.
#ifndef VWW_CORE_FILE_IMAGES_H_
#define VWW_CORE_FILE_IMAGES_H_

#include <cstddef>
#include <cstdint>

#include "image_provider.h"

namespace vww {

// The few file operations a board offers; handles are opaque to the reader.
struct FileOps {
  void* (*open)(const char* path);                    // nullptr when the file cannot be opened
  long (*size)(void* handle);                         // bytes, or -1
  bool (*read)(void* handle, uint8_t* dst, size_t n);  // all n bytes or false
  void (*close)(void* handle);
};

// Sets the files `GetImage` reads, in order, and the table pixel bytes go through (256 entries).
// The strings and the table must outlive the reading.
void InitFileImages(const FileOps& ops, const char* const* paths, int count, const int8_t* byte_to_input);

}  // namespace vww

#endif  // VWW_CORE_FILE_IMAGES_H_

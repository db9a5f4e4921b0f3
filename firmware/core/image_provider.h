// Where images come from: a camera on a board, files on the host or in the emulator.
#ifndef VWW_CORE_IMAGE_PROVIDER_H_
#define VWW_CORE_IMAGE_PROVIDER_H_

#include <cstdint>

namespace vww {

enum class ImageStatus {
  kOk,            // `tensor` holds the next image
  kNoMoreImages,  // a finite source is used up: stop cleanly
  kError,         // capture or read failed (the reason has been logged)
};

// Writes the next image into `tensor` as int8 HWC values (rows * cols * channels of them), in the
// model's input convention: camera byte b becomes kByteToInput[b] (model_settings.h, derived from
// the model's input quantization).
ImageStatus GetImage(int rows, int cols, int channels, int8_t* tensor);

}  // namespace vww

#endif  // VWW_CORE_IMAGE_PROVIDER_H_

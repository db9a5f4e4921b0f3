// Images from the HM01B0 camera: start it on first use, let its exposure settle, then one fresh
// frame per call, reduced to the model's input as frame_reduce.h describes.
#include "image_provider.h"

#include "edge_board.h"
#include "frame_reduce.h"
#include "hm01b0_camera.h"
#include "model_settings.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace vww {
namespace {

// Frames captured and dropped after start-up while the sensor's auto exposure converges
// (~0.8 s at 5 frames per second).
constexpr int kFramesToSettle = 4;

// One whole frame (79 KB of the 384 KB SRAM); the reduction reads it after the capture.
alignas(4) uint8_t frame[edge::kFrameWidth * edge::kFrameHeight];
bool camera_running = false;

ImageStatus CameraError(edge::CameraStatus status, const char* stage) {
  edge::SetLed(edge::Led::kRed, true);
  MicroPrintf("error: camera %s failed: %s", stage, edge::DescribeCameraStatus(status));
  camera_running = false;  // start it again on the next call
  return ImageStatus::kError;
}

}  // namespace

ImageStatus GetImage(int rows, int cols, int channels, int8_t* tensor) {
  if (!camera_running) {
    edge::CameraStatus status = edge::StartCamera();
    if (status != edge::CameraStatus::kOk) return CameraError(status, "start-up");
    for (int i = 0; i < kFramesToSettle; ++i) {
      status = edge::CaptureFrame(frame);
      if (status != edge::CameraStatus::kOk) return CameraError(status, "capture");
    }
    camera_running = true;
    MicroPrintf("vww: camera ready (HM01B0 %dx%d, %d frames dropped while exposure settles)",
                edge::kFrameWidth, edge::kFrameHeight, kFramesToSettle);
  }
  const edge::CameraStatus status = edge::CaptureFrame(frame);
  if (status != edge::CameraStatus::kOk) return CameraError(status, "capture");
  edge::SetLed(edge::Led::kRed, false);
  if (!edge::ReduceFrame(frame, edge::kFrameWidth, edge::kFrameHeight, rows, cols, channels,
                         kByteToInput, tensor)) {
    MicroPrintf("error: model input %dx%dx%d cannot be made from the camera frame", cols, rows,
                channels);
    return ImageStatus::kError;
  }
  return ImageStatus::kOk;
}

}  // namespace vww

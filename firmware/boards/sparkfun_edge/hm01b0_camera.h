// The SparkFun Edge's Himax HM01B0 camera: bring-up and whole-frame capture.
//
// Control goes through SparkFun's HM01B0 driver (BSP common/third_party/hm01b0): I2C on IOM1 at
// 100 kHz, address 0x24, the master clock from CTimer 0 segment B on pad 13, and Himax's register
// script for 324 x 244 RAW8 frames on the 8-bit parallel bus at 5 frames per second. The sensor then
// streams continuously, so its auto exposure keeps adapting between our captures.
//
// Capture is ours: the data pins are Apollo3 "fast GPIO" pins whose byte is read in one access, and
// the frame/line/pixel strobes (VSYNC pad 15, HSYNC 22, PCLK 23) are polled. Every wait is bounded,
// so a camera that stops clocking gives an error, never a hung board.
#ifndef VWW_SPARKFUN_EDGE_HM01B0_CAMERA_H_
#define VWW_SPARKFUN_EDGE_HM01B0_CAMERA_H_

#include <cstdint>

namespace edge {

constexpr int kFrameWidth = 324;
constexpr int kFrameHeight = 244;

enum class CameraStatus {
  kOk,
  kBusError,     // the I2C control bus failed
  kNotFound,     // something answered but it is not an HM01B0
  kNoFrame,      // no frame started in time (no clock, sensor not streaming)
  kBrokenFrame,  // a line was cut short or never ended
};

const char* DescribeCameraStatus(CameraStatus status);

// Powers the sensor, starts its clock, checks its model id, loads the register script and starts
// streaming. May be called again after a failure.
CameraStatus StartCamera();

// Waits for the next frame and stores its kFrameWidth x kFrameHeight bytes, row-major.
CameraStatus CaptureFrame(uint8_t* frame);

}  // namespace edge

#endif  // VWW_SPARKFUN_EDGE_HM01B0_CAMERA_H_

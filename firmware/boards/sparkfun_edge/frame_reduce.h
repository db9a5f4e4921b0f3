// From the camera's full frame to the model's input tensor, the way the training data was made.
//
// What the model saw in training and evaluation (vwwtorch/data): a whole picture squashed to a
// square (aspect ratio not kept), then at eval time a central crop of 87.5% of each side and an
// antialiased resize to the model's size. Cropping a central fraction commutes with squashing, so
// that is "the central 7/8 of each side of the original picture, resized to rows x cols".
//
// The HM01B0 frame (324 x 244, aspect 1.33) has the shape of a typical COCO picture (640 x 480),
// so the same recipe applies to it directly: the window is the central 283.5 x 213.5 pixels
// (x from 20.25 to 303.75, y from 15.25 to 228.75, fractional edges kept exactly) and every output
// pixel is the mean of the source area it covers (an area/box filter, partial pixels weighted by
// the fraction covered). This is what an antialiased downscale approximates; it needs no floating
// point and every camera pixel in the window counts, so it keeps the sensor noise low.
// The grey value b then becomes the model's input through `byte_to_input[b]` (model_settings.h's
// kByteToInput, derived from the model's input quantization; b - 128 for the usual models). A model
// with three input channels gets the same value in each of them (the camera is monochrome).
//
// Portable C++ (no vendor headers): the tests compile this file on the host and compare it with a
// reference written in Python.
#ifndef VWW_SPARKFUN_EDGE_FRAME_REDUCE_H_
#define VWW_SPARKFUN_EDGE_FRAME_REDUCE_H_

#include <cstdint>

namespace edge {

// Part of each side of the frame that is kept: 7/8 = 87.5%, the eval crop of vwwtorch.
constexpr int kCropNumerator = 7;
constexpr int kCropDenominator = 8;

// Reduces a width x height grey frame (row-major, one byte per pixel) to rows x cols x channels
// int8 values (HWC), each grey byte mapped through the 256-entry `byte_to_input`. Returns false,
// writing nothing, if a size is not positive.
bool ReduceFrame(const uint8_t* frame, int width, int height, int rows, int cols, int channels,
                 const int8_t* byte_to_input, int8_t* out);

}  // namespace edge

#endif  // VWW_SPARKFUN_EDGE_FRAME_REDUCE_H_

#include "frame_reduce.h"

namespace edge {
namespace {

// Exact integer geometry along one axis. With n outputs from a source of length L, measure
// positions in units of 1 / (2 * D * n) source pixels (D = kCropDenominator, N = kCropNumerator):
// then source pixel k spans [k * U, (k + 1) * U) with U = 2 * D * n, the crop starts at
// L * (D - N) * n, and each output covers S = 2 * N * L units. Every edge is an integer, so the
// fractional pixels at the window's border and between outputs are weighted exactly.
struct Axis {
  int64_t unit;   // U: units per source pixel
  int64_t start;  // where output 0 begins
  int64_t span;   // S: units per output pixel (also the sum of its weights)

  Axis(int length, int outputs)
      : unit(2LL * kCropDenominator * outputs),
        start(static_cast<int64_t>(length) * (kCropDenominator - kCropNumerator) * outputs),
        span(2LL * kCropNumerator * length) {}

  int64_t Begin(int i) const { return start + i * span; }
  int First(int i) const { return static_cast<int>(Begin(i) / unit); }
  int Last(int i) const { return static_cast<int>((Begin(i) + span - 1) / unit); }

  // How much of output i's interval source pixel k covers.
  int64_t Weight(int i, int k) const {
    const int64_t lo = Begin(i) > k * unit ? Begin(i) : k * unit;
    const int64_t end = Begin(i) + span;
    const int64_t hi = end < (k + 1) * unit ? end : (k + 1) * unit;
    return hi - lo;
  }
};

}  // namespace

bool ReduceFrame(const uint8_t* frame, int width, int height, int rows, int cols, int channels,
                 const int8_t* byte_to_input, int8_t* out) {
  if (width <= 0 || height <= 0 || rows <= 0 || cols <= 0 || channels <= 0) return false;
  const Axis x(width, cols);
  const Axis y(height, rows);
  const uint64_t total = static_cast<uint64_t>(x.span) * static_cast<uint64_t>(y.span);
  for (int r = 0; r < rows; ++r) {
    const int y_first = y.First(r);
    const int y_last = y.Last(r);
    for (int c = 0; c < cols; ++c) {
      const int x_first = x.First(c);
      const int x_last = x.Last(c);
      uint64_t sum = 0;
      for (int ky = y_first; ky <= y_last; ++ky) {
        const uint8_t* line = frame + static_cast<int64_t>(ky) * width;
        uint64_t line_sum = 0;
        for (int kx = x_first; kx <= x_last; ++kx) {
          line_sum += static_cast<uint64_t>(x.Weight(c, kx)) * line[kx];
        }
        sum += static_cast<uint64_t>(y.Weight(r, ky)) * line_sum;
      }
      const int grey = static_cast<int>((sum + total / 2) / total);  // rounded mean, 0..255
      const int8_t value = byte_to_input[grey];
      int8_t* pixel = out + (static_cast<int64_t>(r) * cols + c) * channels;
      for (int ch = 0; ch < channels; ++ch) pixel[ch] = value;
    }
  }
  return true;
}

}  // namespace edge

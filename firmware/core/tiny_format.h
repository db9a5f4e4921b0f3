// A small vsnprintf for boards without a full C library printf.
//
// newlib's printf family costs tens of KB of flash; TFLM only needs its log messages formatted.
// Supports flags '-' and '0', a width, a precision for %f and %s, the length modifiers h, hh, l, ll,
// z and t, and the conversions d i u x X o c s p f %. Anything else is copied as is.
#ifndef VWW_CORE_TINY_FORMAT_H_
#define VWW_CORE_TINY_FORMAT_H_

#include <cstdarg>
#include <cstddef>

namespace vww {

// Like vsnprintf: writes at most size-1 characters and a terminating NUL (if size > 0), and returns
// the length the full output would have had.
int TinyVsnprintf(char* buffer, size_t size, const char* format, va_list args);

}  // namespace vww

#endif  // VWW_CORE_TINY_FORMAT_H_

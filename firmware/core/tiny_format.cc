#include "tiny_format.h"

#include <cstdint>

namespace vww {
namespace {

// Appends to the caller's buffer while counting everything, as vsnprintf must.
class Sink {
 public:
  Sink(char* buffer, size_t size) : buffer_(buffer), size_(size) {}
  void Put(char c) {
    if (length_ + 1 < size_) buffer_[length_] = c;
    ++length_;
  }
  void Repeat(char c, int count) {
    for (int i = 0; i < count; ++i) Put(c);
  }
  int Finish() {
    if (size_ > 0) buffer_[length_ < size_ ? length_ : size_ - 1] = '\0';
    return static_cast<int>(length_);
  }

 private:
  char* buffer_;
  size_t size_;
  size_t length_ = 0;
};

struct Spec {
  bool left = false;
  bool zero = false;
  int width = 0;
  int precision = -1;
};

// Writes `digits` (already in reading order) with sign and padding.
void Emit(Sink& sink, const Spec& spec, const char* digits, int count, char sign) {
  const int body = count + (sign ? 1 : 0);
  const int pad = spec.width > body ? spec.width - body : 0;
  if (!spec.left && !spec.zero) sink.Repeat(' ', pad);
  if (sign) sink.Put(sign);
  if (!spec.left && spec.zero) sink.Repeat('0', pad);
  for (int i = 0; i < count; ++i) sink.Put(digits[i]);
  if (spec.left) sink.Repeat(' ', pad);
}

int ToDigits(uint64_t value, unsigned base, bool upper, char* out) {
  char reversed[24];
  int n = 0;
  do {
    const unsigned digit = static_cast<unsigned>(value % base);
    reversed[n++] = static_cast<char>(digit < 10 ? '0' + digit : (upper ? 'A' : 'a') + digit - 10);
    value /= base;
  } while (value != 0);
  for (int i = 0; i < n; ++i) out[i] = reversed[n - 1 - i];
  return n;
}

void EmitFloat(Sink& sink, const Spec& spec, double value) {
  char sign = 0;
  if (value != value) {  // NaN
    Emit(sink, spec, "nan", 3, 0);
    return;
  }
  if (value < 0) {
    sign = '-';
    value = -value;
  }
  if (value > 1e18) {
    Emit(sink, spec, "inf", 3, sign);
    return;
  }
  int precision = spec.precision < 0 ? 6 : (spec.precision > 9 ? 9 : spec.precision);
  uint64_t scale = 1;
  for (int i = 0; i < precision; ++i) scale *= 10;
  const uint64_t scaled = static_cast<uint64_t>(value * static_cast<double>(scale) + 0.5);
  char digits[40];
  int n = ToDigits(scaled / scale, 10, false, digits);
  if (precision > 0) {
    digits[n++] = '.';
    char frac[24];
    const int f = ToDigits(scaled % scale, 10, false, frac);
    for (int i = f; i < precision; ++i) digits[n++] = '0';
    for (int i = 0; i < f; ++i) digits[n++] = frac[i];
  }
  Emit(sink, spec, digits, n, sign);
}

}  // namespace

int TinyVsnprintf(char* buffer, size_t size, const char* format, va_list args) {
  Sink sink(buffer, size);
  for (const char* p = format; *p != '\0'; ++p) {
    if (*p != '%') {
      sink.Put(*p);
      continue;
    }
    const char* start = p++;
    Spec spec;
    for (;; ++p) {
      if (*p == '-') {
        spec.left = true;
      } else if (*p == '0') {
        spec.zero = true;
      } else if (*p != '+' && *p != ' ' && *p != '#') {
        break;
      }
    }
    if (*p == '*') {
      spec.width = va_arg(args, int);
      ++p;
    }
    while (*p >= '0' && *p <= '9') spec.width = spec.width * 10 + (*p++ - '0');
    if (*p == '.') {
      spec.precision = 0;
      ++p;
      if (*p == '*') {
        spec.precision = va_arg(args, int);
        ++p;
      }
      while (*p >= '0' && *p <= '9') spec.precision = spec.precision * 10 + (*p++ - '0');
    }
    int longs = 0;  // 0: int, 1: long, 2: long long, 3: size_t / ptrdiff_t
    while (*p == 'l' || *p == 'h' || *p == 'z' || *p == 't') {
      if (*p == 'l') ++longs;
      if (*p == 'z' || *p == 't') longs = 3;
      ++p;
    }
    char digits[24];
    switch (*p) {
      case 'd':
      case 'i': {
        const int64_t value = longs == 2   ? va_arg(args, long long)
                              : longs == 1 ? va_arg(args, long)
                              : longs == 3 ? static_cast<int64_t>(va_arg(args, ptrdiff_t))
                                           : va_arg(args, int);
        const uint64_t magnitude =
            value < 0 ? static_cast<uint64_t>(-(value + 1)) + 1 : static_cast<uint64_t>(value);
        Emit(sink, spec, digits, ToDigits(magnitude, 10, false, digits), value < 0 ? '-' : 0);
        break;
      }
      case 'u':
      case 'x':
      case 'X':
      case 'o': {
        const uint64_t value = longs == 2   ? va_arg(args, unsigned long long)
                               : longs == 1 ? va_arg(args, unsigned long)
                               : longs == 3 ? va_arg(args, size_t)
                                            : va_arg(args, unsigned int);
        const unsigned base = *p == 'u' ? 10 : (*p == 'o' ? 8 : 16);
        Emit(sink, spec, digits, ToDigits(value, base, *p == 'X', digits), 0);
        break;
      }
      case 'p': {
        const uintptr_t value = reinterpret_cast<uintptr_t>(va_arg(args, void*));
        sink.Put('0');
        sink.Put('x');
        Emit(sink, spec, digits, ToDigits(value, 16, false, digits), 0);
        break;
      }
      case 'c':
        digits[0] = static_cast<char>(va_arg(args, int));
        Emit(sink, spec, digits, 1, 0);
        break;
      case 's': {
        const char* text = va_arg(args, const char*);
        if (text == nullptr) text = "(null)";
        int n = 0;
        while (text[n] != '\0' && (spec.precision < 0 || n < spec.precision)) ++n;
        Spec plain = spec;
        plain.zero = false;
        Emit(sink, plain, text, n, 0);
        break;
      }
      case 'f':
      case 'F':
      case 'g':
      case 'e':
        EmitFloat(sink, spec, va_arg(args, double));
        break;
      case '%':
        sink.Put('%');
        break;
      default:  // unknown conversion: print it as written
        for (const char* q = start; q <= p && *q != '\0'; ++q) sink.Put(*q);
        if (*p == '\0') return sink.Finish();
        break;
    }
  }
  return sink.Finish();
}

}  // namespace vww

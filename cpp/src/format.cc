#include "format.h"

#include <stdint.h>

namespace tflm_vmcu {
namespace {

struct Writer {
  char* out;
  size_t size;
  size_t len;

  void Put(char c) {
    if (len + 1 < size) out[len++] = c;
  }
  void Puts(const char* s) {
    while (*s != '\0') Put(*s++);
  }
  void PutUnsigned(uint64_t v) {
    char digits[24];
    int n = 0;
    do {
      digits[n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    while (n > 0) Put(digits[--n]);
  }
  void PutSigned(int64_t v) {
    if (v < 0) {
      Put('-');
      PutUnsigned(static_cast<uint64_t>(-(v + 1)) + 1);
    } else {
      PutUnsigned(static_cast<uint64_t>(v));
    }
  }
  // Six significant digits are plenty for scales in messages.
  void PutDouble(double v) {
    if (v != v) return Puts("nan");
    if (v < 0) {
      Put('-');
      v = -v;
    }
    if (v > 1.7976931348623157e308) return Puts("inf");
    // Below 1e-3 and from 1e6 on: one digit before the point and a decimal exponent.
    int exponent = 0;
    if (v != 0 && v < 1e-3) {
      while (v < 1) {
        v *= 10;
        --exponent;
      }
    } else if (v >= 1e6) {
      while (v >= 10) {
        v /= 10;
        ++exponent;
      }
    }
    const uint64_t whole = static_cast<uint64_t>(v);
    PutUnsigned(whole);
    uint64_t frac = static_cast<uint64_t>((v - static_cast<double>(whole)) * 1e6 + 0.5);
    if (frac >= 1000000) frac = 999999;
    if (frac != 0) {
      Put('.');
      char digits[6];
      for (int i = 5; i >= 0; --i) {
        digits[i] = static_cast<char>('0' + frac % 10);
        frac /= 10;
      }
      int last = 5;
      while (last > 0 && digits[last] == '0') --last;
      for (int i = 0; i <= last; ++i) Put(digits[i]);
    }
    if (exponent != 0) {
      Put('e');
      PutSigned(exponent);
    }
  }
};

}  // namespace

void FormatV(char* out, size_t size, const char* format, va_list args) {
  if (size == 0) return;
  Writer w{out, size, 0};
  for (const char* p = format; *p != '\0'; ++p) {
    if (*p != '%') {
      w.Put(*p);
      continue;
    }
    ++p;
    switch (*p) {
      case 'd':
        w.PutSigned(va_arg(args, int));
        break;
      case 'u':
        w.PutUnsigned(va_arg(args, unsigned));
        break;
      case 's': {
        const char* s = va_arg(args, const char*);
        w.Puts(s != nullptr ? s : "(null)");
        break;
      }
      case 'f':
        w.PutDouble(va_arg(args, double));
        break;
      case '%':
        w.Put('%');
        break;
      case '\0':
        --p;
        break;
      default:
        w.Put('%');
        w.Put(*p);
    }
  }
  out[w.len] = '\0';
}

void Format(char* out, size_t size, const char* format, ...) {
  va_list args;
  va_start(args, format);
  FormatV(out, size, format, args);
  va_end(args);
}

}  // namespace tflm_vmcu

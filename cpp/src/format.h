// A tiny printf subset for error messages (%d %u %s %f %%), so the runtime needs
// no stdio. Output is always NUL-terminated and truncated to fit.
#pragma once

#include <stdarg.h>
#include <stddef.h>

namespace tflm_vmcu {

void FormatV(char* out, size_t size, const char* format, va_list args);
void Format(char* out, size_t size, const char* format, ...);

}  // namespace tflm_vmcu

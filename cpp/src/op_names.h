// Human-readable names of tflite builtin operators, for error messages.
#pragma once

#include <stdint.h>

namespace tflm_vmcu {

// "CONV_2D" for 3, "CUSTOM" for -1, "UNKNOWN" for codes the schema does not name.
const char* BuiltinOpName(int32_t code);

}  // namespace tflm_vmcu

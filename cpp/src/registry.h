// The table of builtin ops the runtime can run: builtin code -> kernel.
#pragma once

#include <stdint.h>

#include "kernels/kernel.h"

namespace tflm_vmcu {

// nullptr when the runtime has no kernel for `builtin_code` (-1 = custom op).
const Kernel* FindKernel(int32_t builtin_code);

// "ADD, AVERAGE_POOL_2D, ..." for error messages.
const char* SupportedOpsList();

}  // namespace tflm_vmcu

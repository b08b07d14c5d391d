// Decoding an operator's builtin options table from the model (flash) into OpOptions.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernel.h"
#include "tflm_vmcu/model.h"

namespace tflm_vmcu {

// The options of the table at `options_pos` (0: none) of union type `options_type`; the
// schema's defaults for fields that are absent, or when the table is unreadable.
OpOptions DecodeOptions(const Model& model, uint8_t options_type, size_t options_pos);

}  // namespace tflm_vmcu

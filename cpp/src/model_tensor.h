// The runtime's view (Tensor) of one tensor of the model, checked: shared by the interpreter
// and the TFLM plug-in, so both accept and describe tensors the same way.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "tflm_vmcu/model.h"
#include "tflm_vmcu/status.h"
#include "tflm_vmcu/tensor.h"

namespace tflm_vmcu {

// Fills `t` from tensor `index` of the model (constants point into the model; activations
// get no data yet). On a tensor the runtime cannot hold, writes one line to `why`.
Status TensorFromModel(const TensorInfo& info, int32_t index, Tensor* t, char* why,
                       size_t why_size);

}  // namespace tflm_vmcu

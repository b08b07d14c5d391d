// One operator as the interpreter runs it (runtime state in the tail).
#pragma once

#include <stdint.h>

#include "kernels/kernel.h"

namespace tflm_vmcu {

struct Node {
  const Kernel* kernel;
  void* op_data;
  Tensor** inputs;
  Tensor** outputs;
  int32_t num_inputs;
  int32_t num_outputs;
  int32_t builtin_code;
  uint32_t options_pos;  // builtin options table in the model (0: none)
  uint8_t options_type;
};
TFLM_VMCU_ARM32_LAYOUT(Node, 36, 4);

}  // namespace tflm_vmcu

// Human-readable names of tflite builtin operators, for error messages.
#pragma once

#include <stdint.h>

namespace tflm_vmcu {

// The tflite BuiltinOperator codes of the ops the runtime runs.
enum BuiltinCode : int32_t {
  kOpAdd = 0,
  kOpAveragePool2D = 1,
  kOpConcatenation = 2,
  kOpConv2D = 3,
  kOpDepthwiseConv2D = 4,
  kOpDequantize = 6,
  kOpFullyConnected = 9,
  kOpLogistic = 14,
  kOpMaxPool2D = 17,
  kOpMul = 18,
  kOpRelu = 19,
  kOpRelu6 = 21,
  kOpReshape = 22,
  kOpSoftmax = 25,
  kOpPad = 34,
  kOpTranspose = 39,
  kOpMean = 40,
  kOpQuantize = 114,
  kOpHardSwish = 117,
};

// "CONV_2D" for 3, "CUSTOM" for -1, "UNKNOWN" for codes the schema does not name.
const char* BuiltinOpName(int32_t code);

}  // namespace tflm_vmcu

#include "registry.h"

#include "op_names.h"
#include "tflm_vmcu/interpreter.h"

namespace tflm_vmcu {
namespace {

struct Entry {
  int32_t code;  // tflite BuiltinOperator
  const Kernel* kernel;
};

const Entry kKernels[] = {
    {kOpAdd, &kAdd},
    {kOpAveragePool2D, &kAveragePool2D},
    {kOpConcatenation, &kConcatenation},
    {kOpConv2D, &kConv2D},
    {kOpDepthwiseConv2D, &kDepthwiseConv2D},
    {kOpDequantize, &kDequantize},
    {kOpFullyConnected, &kFullyConnected},
    {kOpLogistic, &kLogistic},
    {kOpMaxPool2D, &kMaxPool2D},
    {kOpMul, &kMul},
    {kOpRelu, &kRelu},
    {kOpRelu6, &kRelu6},
    {kOpReshape, &kReshape},
    {kOpSoftmax, &kSoftmax},
    {kOpPad, &kPad},
    {kOpTranspose, &kTranspose},
    {kOpMean, &kMean},
    {kOpQuantize, &kQuantize},
    {kOpHardSwish, &kHardSwish},
};

}  // namespace

const Kernel* FindKernel(int32_t builtin_code) {
  for (const Entry& e : kKernels) {
    if (e.code == builtin_code) return e.kernel;
  }
  return nullptr;
}

bool IsOpSupported(int32_t builtin_code) { return FindKernel(builtin_code) != nullptr; }

const char* SupportedOpsList() {
  return "ADD, AVERAGE_POOL_2D, CONCATENATION, CONV_2D, DEPTHWISE_CONV_2D, DEQUANTIZE, "
         "FULLY_CONNECTED, HARD_SWISH, LOGISTIC, MAX_POOL_2D, MEAN, MUL, PAD, QUANTIZE, RELU, "
         "RELU6, RESHAPE, SOFTMAX, TRANSPOSE";
}

}  // namespace tflm_vmcu

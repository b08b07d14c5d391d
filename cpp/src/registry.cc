#include "registry.h"

#include "tflm_vmcu/interpreter.h"

namespace tflm_vmcu {
namespace {

struct Entry {
  int32_t code;  // tflite BuiltinOperator
  const Kernel* kernel;
};

const Entry kKernels[] = {
    {0, &kAdd},
    {1, &kAveragePool2D},
    {2, &kConcatenation},
    {3, &kConv2D},
    {4, &kDepthwiseConv2D},
    {6, &kDequantize},
    {9, &kFullyConnected},
    {14, &kLogistic},
    {17, &kMaxPool2D},
    {18, &kMul},
    {19, &kRelu},
    {21, &kRelu6},
    {22, &kReshape},
    {25, &kSoftmax},
    {34, &kPad},
    {39, &kTranspose},
    {40, &kMean},
    {114, &kQuantize},
    {117, &kHardSwish},
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

// Every builtin op that the committed and shared models use (plus a few that generated
// test models use between convolutions), in one list, so that the stock runner and a
// plug-in runner register exactly the same ops.
//
// Stock TFLM:
//   tflite::MicroMutableOpResolver<tflm_vmcu_host::kAllOpsCount> resolver;
//   tflm_vmcu_host::AddAllOps(resolver);
// A plug-in runner registers the plug-in's kernels first; AddAllOps then adds TFLM's kernel
// for every op not registered yet (MicroMutableOpResolver refuses an op added twice).
// Size the resolver kAllOpsCount + the number of custom ops.
#ifndef TFLM_VMCU_TOOLS_TFLM_HOST_ALL_OPS_H_
#define TFLM_VMCU_TOOLS_TFLM_HOST_ALL_OPS_H_

#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

// OP(builtin, adder): an op the plug-in may register a ring kernel for.
// OP(builtin, adder): TFLM's adder takes no registration: always TFLM's kernel.
#define TFLM_VMCU_HOST_ALL_OPS(OP)                      \
  OP(ADD, AddAdd)                                       \
  OP(AVERAGE_POOL_2D, AddAveragePool2D)                 \
  OP(CONCATENATION, AddConcatenation)                   \
  OP(CONV_2D, AddConv2D)                                \
  OP(DEPTHWISE_CONV_2D, AddDepthwiseConv2D)             \
  OP(DEQUANTIZE, AddDequantize)                         \
  OP(FULLY_CONNECTED, AddFullyConnected)                \
  OP(HARD_SWISH, AddHardSwish)                          \
  OP(LOGISTIC, AddLogistic)                             \
  OP(MAX_POOL_2D, AddMaxPool2D)                         \
  OP(MEAN, AddMean)                                     \
  OP(MUL, AddMul)                                       \
  OP(PAD, AddPad)                                       \
  OP(QUANTIZE, AddQuantize)                             \
  OP(RELU, AddRelu)                                     \
  OP(RELU6, AddRelu6)                                   \
  OP(RESHAPE, AddReshape)                               \
  OP(SOFTMAX, AddSoftmax)                               \
  OP(TRANSPOSE, AddTranspose)                           \
  OP(SVDF, AddSvdf)                                     \
  OP(RESIZE_NEAREST_NEIGHBOR, AddResizeNearestNeighbor) \
  OP(STRIDED_SLICE, AddStridedSlice)                    \
  OP(SPLIT, AddSplit)                                   \
  OP(TANH, AddTanh)

namespace tflm_vmcu_host {

#define TFLM_VMCU_HOST_COUNT_OP(builtin, adder) +1
constexpr unsigned int kAllOpsCount = 0 TFLM_VMCU_HOST_ALL_OPS(TFLM_VMCU_HOST_COUNT_OP);
#undef TFLM_VMCU_HOST_COUNT_OP

// Registers TFLM's kernel for every op of the list that `resolver` has no kernel for yet.
// Returns the first failure.
template <unsigned int N>
TfLiteStatus AddAllOps(tflite::MicroMutableOpResolver<N>& resolver) {
#define TFLM_VMCU_HOST_ADD_OP(builtin, adder)                          \
  if (resolver.FindOp(tflite::BuiltinOperator_##builtin) == nullptr && \
      resolver.adder() != kTfLiteOk)                                   \
    return kTfLiteError;
  TFLM_VMCU_HOST_ALL_OPS(TFLM_VMCU_HOST_ADD_OP)
#undef TFLM_VMCU_HOST_ADD_OP
  return kTfLiteOk;
}

}  // namespace tflm_vmcu_host

#endif  // TFLM_VMCU_TOOLS_TFLM_HOST_ALL_OPS_H_

// Every builtin op that the committed and shared models use (plus a few that generated
// test models use between convolutions), in one list, so that the stock runner and a
// plug-in runner register exactly the same ops.
//
// Stock TFLM:
//   tflite::MicroMutableOpResolver<tflm_vmcu_host::kAllOpsCount> resolver;
//   tflm_vmcu_host::AddAllOps(resolver);
// A plug-in runner replaces some kernels (MicroMutableOpResolver refuses an op added
// twice, so replacements go through the same call):
//   tflm_vmcu_host::AddAllOps(resolver, [](tflite::BuiltinOperator op) {
//     return op == tflite::BuiltinOperator_CONV_2D ? &my_conv : nullptr;  // nullptr: TFLM's
//   });
// Size the resolver kAllOpsCount + the number of custom ops added afterwards.
#ifndef TFLM_VMCU_TOOLS_TFLM_HOST_ALL_OPS_H_
#define TFLM_VMCU_TOOLS_TFLM_HOST_ALL_OPS_H_

#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

// OP(builtin, adder): the kernel can be replaced by another registration.
// FIXED(builtin, adder): TFLM's adder takes no registration: always TFLM's kernel
// (pick() returning a replacement for it is an error).
#define TFLM_VMCU_HOST_ALL_OPS(OP, FIXED)                  \
  OP(ADD, AddAdd)                                          \
  OP(AVERAGE_POOL_2D, AddAveragePool2D)                    \
  OP(CONCATENATION, AddConcatenation)                      \
  OP(CONV_2D, AddConv2D)                                   \
  OP(DEPTHWISE_CONV_2D, AddDepthwiseConv2D)                \
  OP(DEQUANTIZE, AddDequantize)                            \
  OP(FULLY_CONNECTED, AddFullyConnected)                   \
  OP(HARD_SWISH, AddHardSwish)                             \
  OP(LOGISTIC, AddLogistic)                                \
  OP(MAX_POOL_2D, AddMaxPool2D)                            \
  OP(MEAN, AddMean)                                        \
  OP(MUL, AddMul)                                          \
  OP(PAD, AddPad)                                          \
  OP(QUANTIZE, AddQuantize)                                \
  OP(RELU, AddRelu)                                        \
  OP(RELU6, AddRelu6)                                      \
  OP(RESHAPE, AddReshape)                                  \
  OP(SOFTMAX, AddSoftmax)                                  \
  OP(TRANSPOSE, AddTranspose)                              \
  OP(SVDF, AddSvdf)                                        \
  FIXED(RESIZE_NEAREST_NEIGHBOR, AddResizeNearestNeighbor) \
  OP(STRIDED_SLICE, AddStridedSlice)                       \
  OP(SPLIT, AddSplit)                                      \
  OP(TANH, AddTanh)

namespace tflm_vmcu_host {

#define TFLM_VMCU_HOST_COUNT_OP(builtin, adder) +1
constexpr unsigned int kAllOpsCount =
    0 TFLM_VMCU_HOST_ALL_OPS(TFLM_VMCU_HOST_COUNT_OP, TFLM_VMCU_HOST_COUNT_OP);
#undef TFLM_VMCU_HOST_COUNT_OP

// Registers every op of the list. pick(op) returns the registration to use instead of
// TFLM's kernel, or nullptr for TFLM's own. Returns the first failure.
template <unsigned int N, typename Pick>
TfLiteStatus AddAllOps(tflite::MicroMutableOpResolver<N>& resolver, Pick pick) {
#define TFLM_VMCU_HOST_ADD_OP(builtin, adder)                                      \
  {                                                                                \
    const TFLMRegistration* replacement = pick(tflite::BuiltinOperator_##builtin); \
    const TfLiteStatus status =                                                    \
        replacement != nullptr ? resolver.adder(*replacement) : resolver.adder();  \
    if (status != kTfLiteOk) return status;                                        \
  }
#define TFLM_VMCU_HOST_ADD_FIXED(builtin, adder)                             \
  if (pick(tflite::BuiltinOperator_##builtin) != nullptr) {                  \
    MicroPrintf("%s: TFLM's resolver cannot take another kernel", #builtin); \
    return kTfLiteError;                                                     \
  }                                                                          \
  if (resolver.adder() != kTfLiteOk) return kTfLiteError;
  TFLM_VMCU_HOST_ALL_OPS(TFLM_VMCU_HOST_ADD_OP, TFLM_VMCU_HOST_ADD_FIXED)
#undef TFLM_VMCU_HOST_ADD_OP
#undef TFLM_VMCU_HOST_ADD_FIXED
  return kTfLiteOk;
}

// Stock TFLM: every op with TFLM's own kernel.
template <unsigned int N>
TfLiteStatus AddAllOps(tflite::MicroMutableOpResolver<N>& resolver) {
  return AddAllOps(resolver,
                   [](tflite::BuiltinOperator) -> const TFLMRegistration* { return nullptr; });
}

}  // namespace tflm_vmcu_host

#endif  // TFLM_VMCU_TOOLS_TFLM_HOST_ALL_OPS_H_

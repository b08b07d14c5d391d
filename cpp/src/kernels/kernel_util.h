// Small helpers shared by kernels' Prepare functions.
#pragma once

#include <stdint.h>
#include <string.h>

#include "kernels/kernel.h"

namespace tflm_vmcu {

// Largest stride, dilation or pooling window accepted: far beyond any real model, small
// enough that index arithmetic on tensor dimensions (at most 2^24) stays within int32.
constexpr int32_t kMaxWindowParameter = 1 << 6;

// TFLM's ComputeOutSize / ComputePadding (tensorflow/lite/kernels/padding.h), computed
// in 64 bits: a hostile model's stride or dilation must not overflow (same results for
// every valid model). Results are clamped to [-1, INT32_MAX]; callers reject sizes <= 0.
// Element i of a PAD op's constant int32 or int64 paddings (possibly unaligned in the model).
inline int64_t LoadPadding(const Tensor* paddings, int i) {
  if (paddings->type == DType::kInt64) {
    int64_t v;
    memcpy(&v, paddings->data + 8 * i, 8);
    return v;
  }
  int32_t v;
  memcpy(&v, paddings->data + 4 * i, 4);
  return v;
}

inline int ClampSize(int64_t v) {
  return v < -1 ? -1 : (v > INT32_MAX ? INT32_MAX : static_cast<int>(v));
}

inline int ComputeOutSize(Padding padding, int image_size, int filter_size, int stride,
                          int dilation_rate) {
  const int64_t effective_filter_size = static_cast<int64_t>(filter_size - 1) * dilation_rate + 1;
  if (stride == 0) return 0;
  if (padding == Padding::kSame) return ClampSize((int64_t{image_size} + stride - 1) / stride);
  return ClampSize((int64_t{image_size} + stride - effective_filter_size) / stride);
}

inline int ComputePadding(int stride, int dilation_rate, int in_size, int filter_size,
                          int out_size) {
  const int64_t effective_filter_size = static_cast<int64_t>(filter_size - 1) * dilation_rate + 1;
  const int64_t padding =
      (static_cast<int64_t>(out_size - 1) * stride + effective_filter_size - in_size) / 2;
  return padding > 0 ? ClampSize(padding) : 0;
}

// `count` objects of T in persistent memory (Prepare only); nullptr when it is full.
template <typename T>
T* AllocateState(OpContext& ctx, size_t count) {
  return static_cast<T*>(ctx.AllocatePersistent(StateOf<T>(count)));
}

// Allocates persistent op data of type T in Prepare and stores it in the context.
template <typename T>
T* AllocateOpData(OpContext& ctx) {
  T* data = AllocateState<T>(ctx, 1);
  if (data != nullptr) {
    *data = T{};
    ctx.set_op_data(data);
  }
  return data;
}

// Fails unless the tensor exists and has the given type; names the tensor and types.
Status ExpectType(OpContext& ctx, const Tensor* t, DType type, const char* role);

// Fails unless the tensor holds constant data in the model (weights and biases computed by
// other operators are not supported; CheckGraph refuses tensors without any data).
Status ExpectConstant(OpContext& ctx, const Tensor* t, const char* role);

// Fails unless the op has exactly these numbers of inputs and outputs (present or not).
Status ExpectArity(OpContext& ctx, int min_inputs, int max_inputs, int outputs);

// Fails unless the tensor is int8, quantised per tensor with a positive scale and an
// int8 zero point (what every int8 kernel needs of its activations).
Status ExpectInt8Activation(OpContext& ctx, const Tensor* t, const char* role);

// Fails for fused activations an int8 kernel cannot apply (TANH, SIGN_BIT).
Status ExpectFusedActivation(OpContext& ctx, Activation activation);

// Fails when an int32 accumulator of `terms` products of int8 values shifted by their
// zero points (each at most 255 * 128 in magnitude) plus any bias value could overflow.
// Valid models are far from the limit; a corrupt bias or shape is refused here rather
// than overflowing (undefined behaviour) in Eval.
Status ExpectAccumulatorFits(OpContext& ctx, const Tensor* bias, int64_t terms);

}  // namespace tflm_vmcu

// Prepare-time helpers shared by CONV_2D and DEPTHWISE_CONV_2D.
#pragma once

#include <stdint.h>

#include "kernels/kernel.h"

namespace tflm_vmcu {

// Filter taps [*start, *end) of one spatial dimension whose input index
// origin + dilation * tap lies inside [0, size); TFLM skips the other (padding) taps.
inline void ValidTaps(int origin, int dilation, int taps, int size, int* start, int* end) {
  *start = origin < 0 ? (-origin + dilation - 1) / dilation : 0;
  int e = 0;
  if (origin < size) {
    e = (size - 1 - origin) / dilation + 1;
    if (e > taps) e = taps;
  }
  *end = e;
}

// Operand checks shared by CONV_2D and DEPTHWISE_CONV_2D: int8 activations, an int8
// filter, an optional int32 bias, a supported fused activation, 4-D shapes, and positive
// strides and dilations.
Status CheckConvOperands(OpContext& ctx);

// TFLM's PopulateConvolutionQuantizationParams (int8): per-channel filter scales, or one
// per-tensor scale broadcast over the channels; effective scale computed in double.
// When the compiled model carries the same values (the plan's op data, in flash), the
// arrays point there and cost no RAM; otherwise they are computed into runtime state.
Status ComputeChannelMultipliers(OpContext& ctx, const Tensor& input, const Tensor& filter,
                                 const Tensor& output, int32_t num_channels,
                                 int32_t expected_quant_dim, const int32_t** multiplier,
                                 const int32_t** shift);

}  // namespace tflm_vmcu

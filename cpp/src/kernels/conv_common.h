// Prepare-time helpers shared by CONV_2D and DEPTHWISE_CONV_2D.
#pragma once

#include <stdint.h>

#include "kernels/dsp.h"
#include "kernels/kernel.h"
#include "kernels/quant_util.h"

namespace tflm_vmcu {

// Op data of CONV_2D and DEPTHWISE_CONV_2D (also read by the fused inverted bottleneck).
struct ConvData {
  const int32_t* multiplier;  // [out_channels]
  const int32_t* shift;       // [out_channels], > 0 shifts left (TFLM's convention)
  int32_t input_offset;       // -input zero point
  int32_t output_offset;      // output zero point
  int16_t act_min;  // the activation range lies in int8: two halfwords leave room for the flag
  int16_t act_max;
  int32_t pad_h;
  int32_t pad_w;
  bool right_shift_only;  // every channel passes RightShiftOnly (quant_util.h)
};
TFLM_VMCU_ARM32_LAYOUT(ConvData, 32, 4);

// act_min and act_max of `data` for a CONV_2D or DEPTHWISE_CONV_2D writing `output`.
inline void SetActivationRange(Activation activation, const Tensor& output, ConvData* data) {
  int32_t act_min = 0;
  int32_t act_max = 0;
  CalculateActivationRangeInt8(activation, output.scale, output.zero_point, &act_min, &act_max);
  data->act_min = static_cast<int16_t>(act_min);
  data->act_max = static_cast<int16_t>(act_max);
}

// sum(w * (x + x_offset)). The fixed-size inner block lets compilers vectorise even at -O2
// (int8 operands shifted by an int8 zero point fit in int16: multiply-add vectors). With the
// DSP extension, two multiply-adds per instruction (kernels/dsp.h).
inline int32_t DotWithOffset(const int8_t* x, const int8_t* w, int n, int32_t x_offset) {
#if TFLM_VMCU_DSP
  return dsp::Dot<false>(x, w, n, x_offset, 0);
#else
  constexpr int kBlock = 16;
  const int16_t offset = static_cast<int16_t>(x_offset);
  int32_t acc = 0;
  int i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    for (int j = 0; j < kBlock; ++j) {
      acc += static_cast<int16_t>(x[i + j] + offset) * static_cast<int16_t>(w[i + j]);
    }
  }
  for (; i < n; ++i) acc += w[i] * (x[i] + x_offset);
  return acc;
#endif
}

// TFLM's per-channel requantisation of one accumulator (bias included): scale, add the
// output zero point, clamp to the activation range.
inline int8_t RequantizeChannel(int32_t acc, int32_t multiplier, int32_t shift,
                                int32_t output_offset, int32_t act_min, int32_t act_max) {
#if TFLM_VMCU_DSP
  acc = dsp::MultiplyByQuantizedMultiplier(acc, multiplier, shift);
#else
  acc = MultiplyByQuantizedMultiplier(acc, multiplier, shift);
#endif
  acc += output_offset;
  acc = acc < act_min ? act_min : acc;
  acc = acc > act_max ? act_max : acc;
  return static_cast<int8_t>(acc);
}

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

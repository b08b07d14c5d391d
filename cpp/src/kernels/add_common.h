// The int8 ADD arithmetic (TFLM's reference_integer_ops::AddFunc), shared by ADD and the
// fused inverted bottleneck's residual add.
#pragma once

#include <stdint.h>

#include "kernels/quant_util.h"

namespace tflm_vmcu {

// The arithmetic of TFLM's ArithmeticParams used by the int8 ADD.
struct AddParams {
  int32_t input1_offset;
  int32_t input2_offset;
  int32_t output_offset;
  int32_t left_shift;
  int32_t input1_multiplier;
  int32_t input2_multiplier;
  int32_t output_multiplier;
  int input1_shift;
  int input2_shift;
  int output_shift;
  int32_t act_min;
  int32_t act_max;
};

// min(hi, max(lo, v)) as TFLM writes it; two selects keep it branch-free (random data
// makes a branchy clamp mispredict).
inline int32_t Clamp(int32_t v, int32_t lo, int32_t hi) {
  v = v > lo ? v : lo;
  return v < hi ? v : hi;
}

// TFLM's reference_integer_ops::AddFunc, split so that a broadcast (repeated) operand
// can be rescaled once: ScaleInput for each operand, then AddOutput on their sum.
inline int32_t ScaleInput(int8_t x, int32_t offset, int32_t left_shift, int32_t multiplier,
                          int shift) {
  const int32_t input_val = offset + x;
  const int32_t shifted_input_val = input_val * (1 << left_shift);
  return MultiplyByQuantizedMultiplierSmallerThanOneExp(shifted_input_val, multiplier, shift);
}

inline int8_t AddOutput(int32_t scaled_input1_val, int32_t scaled_input2_val, const AddParams& d) {
  const int32_t raw_sum = scaled_input1_val + scaled_input2_val;
  const int32_t raw_output =
      MultiplyByQuantizedMultiplierSmallerThanOneExp(raw_sum, d.output_multiplier, d.output_shift) +
      d.output_offset;
  return static_cast<int8_t>(Clamp(raw_output, d.act_min, d.act_max));
}

inline int32_t Scale1(int8_t x, const AddParams& d) {
  return ScaleInput(x, d.input1_offset, d.left_shift, d.input1_multiplier, d.input1_shift);
}

inline int32_t Scale2(int8_t y, const AddParams& d) {
  return ScaleInput(y, d.input2_offset, d.left_shift, d.input2_multiplier, d.input2_shift);
}

}  // namespace tflm_vmcu

// Fixed-point helpers, arithmetically identical to TFLM's
// tensorflow/lite/kernels/internal/{common.h,quantization_util.cc} (double-rounding
// variant, i.e. without TFLITE_SINGLE_ROUNDING, which is how TFLM is built).
#pragma once

#include <stdint.h>

#include "kernels/kernel.h"

namespace tflm_vmcu {

inline int32_t SaturatingRoundingDoublingHighMul(int32_t a, int32_t b) {
  const bool overflow = a == b && a == INT32_MIN;
  const int64_t ab_64 = static_cast<int64_t>(a) * static_cast<int64_t>(b);
  const int32_t nudge = ab_64 >= 0 ? (1 << 30) : (1 - (1 << 30));
  const int32_t ab_x2_high32 = static_cast<int32_t>((ab_64 + nudge) / (int64_t{1} << 31));
  return overflow ? INT32_MAX : ab_x2_high32;
}

// Shift amounts from a valid model lie in [0, 31]; a hostile model can produce any value
// from its scales, so they are clamped to keep every shift defined (no effect otherwise).
inline int ClampShift(int shift) { return shift < 0 ? 0 : (shift > 31 ? 31 : shift); }

inline int32_t RoundingDivideByPOT(int32_t x, int exponent) {
  exponent = ClampShift(exponent);
  const int32_t mask = static_cast<int32_t>((int64_t{1} << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + ((x < 0) ? 1 : 0);
  return (x >> exponent) + ((remainder > threshold) ? 1 : 0);
}

inline int32_t MultiplyByQuantizedMultiplier(int32_t x, int32_t quantized_multiplier, int shift) {
  const int left_shift = ClampShift(shift);
  const int right_shift = shift > 0 ? 0 : -shift;
  return RoundingDivideByPOT(
      SaturatingRoundingDoublingHighMul(
          static_cast<int32_t>(static_cast<uint32_t>(x) << left_shift), quantized_multiplier),
      right_shift);
}

// MultiplyByQuantizedMultiplier(x, multiplier, -right) for multiplier >= 0 and right in
// [1, 31] (every per-channel scale below 1/2 of a valid model), with one 64-bit product and no
// saturation test: the same value for every such input (tests/requantize_check.cc compares
// the two). Why: with P = x * multiplier + 2^30, the doubling high multiply is floor(P / 2^31)
// (dsp.h), and rounding v half away from zero by 2^right is
// floor((v + 2^(right-1) - [v < 0]) / 2^right); nesting the floors, the result is
// floor((P - [P < 0] * 2^31 + 2^(30+right)) / 2^(31+right)). With a multiplier >= 0, [P < 0]
// may be replaced by [x < 0]: they differ only for P in [0, 2^30), where both give 0. The
// last division, by 2D with D = 2^(30+right), is (floor(Q / D) + 1) >> 1 with Q the sum
// before 2^(30+right) is added, and floor(Q / D) = (Q >> 31) >> (right - 1), where Q >> 31
// fits in an int32 (and stays below INT32_MAX, so the + 1 cannot overflow).
inline int32_t MultiplyByQuantizedMultiplierRight(int32_t x, int32_t multiplier, int right) {
  const int64_t q = static_cast<int64_t>(x) * multiplier + (int64_t{1} << 30) -
                    static_cast<int64_t>(static_cast<uint32_t>(x) & 0x80000000u);
  const int32_t t = static_cast<int32_t>(q >> 31) >> (right - 1);
  return static_cast<int32_t>(static_cast<uint32_t>(t) + 1u) >> 1;
}

// Scales MultiplyByQuantizedMultiplierRight takes: a right shift of 1 to 31 and a multiplier
// >= 0 (every per-channel scale below 1/2 of a valid model).
inline bool RightShiftOnly(int32_t multiplier, int32_t shift) {
  return static_cast<uint32_t>(-1 - static_cast<int64_t>(shift)) < 31u && multiplier >= 0;
}

inline bool AllRightShiftOnly(const int32_t* multiplier, const int32_t* shift, int n) {
  for (int i = 0; i < n; ++i) {
    if (!RightShiftOnly(multiplier[i], shift[i])) return false;
  }
  return true;
}

// TFLM's MultiplyByQuantizedMultiplierSmallerThanOneExp.
inline int32_t MultiplyByQuantizedMultiplierSmallerThanOneExp(int32_t x,
                                                              int32_t quantized_multiplier,
                                                              int left_shift) {
  return RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x, quantized_multiplier),
                             -left_shift);
}

// TFLM's MultiplyByQuantizedMultiplierGreaterThanOne.
inline int32_t MultiplyByQuantizedMultiplierGreaterThanOne(int32_t x, int32_t quantized_multiplier,
                                                           int left_shift) {
  return SaturatingRoundingDoublingHighMul(
      static_cast<int32_t>(static_cast<uint32_t>(x) << ClampShift(left_shift)),
      quantized_multiplier);
}

// TFLM's QuantizeMultiplier: multiplier = quantized_multiplier * 2^(shift - 31), for every
// finite double as TFLM computes it (negative multipliers give negative quantized ones; below
// 2^-31 they flush to 0). False (and 0, 0) for NaN or infinity, where TFLM's conversion of the
// fraction to an integer is undefined.
bool QuantizeMultiplier(double double_multiplier, int32_t* quantized_multiplier, int* shift);

// The largest left shift TFLM's MultiplyByQuantizedMultiplier defines: it computes
// x * (1 << shift), undefined for a shift of 32 or more.
constexpr int kMaxLeftShift = 31;

// QuantizeMultiplier for a multiplier applied with MultiplyByQuantizedMultiplier: false where
// TFLM's arithmetic is undefined (NaN, infinity, or 2^31 and more: a shift beyond 31).
bool QuantizeRequantMultiplier(double double_multiplier, int32_t* quantized_multiplier, int* shift);

// TFLM's QuantizeMultiplierSmallerThanOneExp (double_multiplier in (0, 1)).
void QuantizeMultiplierSmallerThanOneExp(double double_multiplier, int32_t* quantized_multiplier,
                                         int* left_shift);

// TFLM's QuantizeMultiplierGreaterThanOne (double_multiplier > 1).
void QuantizeMultiplierGreaterThanOne(double double_multiplier, int32_t* quantized_multiplier,
                                      int* left_shift);

// TFLM's PreprocessSoftmaxScaling / CalculateInputRadius.
void PreprocessSoftmaxScaling(double beta, double input_scale, int input_integer_bits,
                              int32_t* quantized_multiplier, int* left_shift);
int CalculateInputRadius(int input_integer_bits, int input_left_shift, int total_signed_bits);

// TFLM's CalculateActivationRangeQuantized for int8 output (uses the output tensor's
// scale and zero point; rounds like TfLiteRound).
void CalculateActivationRangeInt8(Activation activation, float scale, int32_t zero_point,
                                  int32_t* act_min, int32_t* act_max);

// TfLiteRound / std::round without <cmath> (freestanding).
double RoundHalfAwayFromZero(double x);
float RoundHalfAwayFromZeroF(float x);

inline int32_t ClampInt32(int32_t v, int32_t lo, int32_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

}  // namespace tflm_vmcu

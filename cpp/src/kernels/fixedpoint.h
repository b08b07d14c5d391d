// Scalar int32 fixed-point math used by SOFTMAX and LOGISTIC: exactly the functions of
// gemmlowp/fixedpoint/fixedpoint.h (TFLM's tensorflow/lite/micro/kernels/internal/
// fixedpoint.h) and TFLM's GetReciprocal, restricted to the int32 raw type. A value
// in Qm.(31-m) is an int32_t "raw" number; kIntegerBits template arguments give m.
#pragma once

#include <stdint.h>

#include "kernels/quant_util.h"

namespace tflm_vmcu {
namespace fixedpoint {

// gemmlowp::RoundingHalfSum<int32_t>: (a + b) / 2 rounded half away from zero.
inline int32_t RoundingHalfSum(int32_t a, int32_t b) {
  const int64_t sum = static_cast<int64_t>(a) + static_cast<int64_t>(b);
  const int64_t sign = sum >= 0 ? 1 : -1;
  return static_cast<int32_t>((sum + sign) / 2);
}

// gemmlowp::SaturatingRoundingMultiplyByPOT<kExponent> for kExponent > 0: a left
// shift saturating to [INT32_MIN, INT32_MAX].
template <int kExponent>
inline int32_t SaturatingShiftLeft(int32_t x) {
  static_assert(kExponent > 0 && kExponent < 31, "shift out of range");
  constexpr int32_t kThreshold = (int32_t{1} << (31 - kExponent)) - 1;
  if (x > kThreshold) return INT32_MAX;
  if (x < -kThreshold) return INT32_MIN;
  return static_cast<int32_t>(static_cast<uint32_t>(x) << kExponent);
}

// Wrapping add/sub: gemmlowp's plain int32 Add/Sub (never overflows on the paths
// used here; unsigned arithmetic keeps it well defined regardless).
inline int32_t Add(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b));
}
inline int32_t Sub(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) - static_cast<uint32_t>(b));
}

// exp(x) for x in [-1/4, 0), Q0.31 in and out.
inline int32_t ExpOnIntervalBetweenNegativeOneQuarterAnd0Excl(int32_t a) {
  constexpr int32_t kConstantTerm = 1895147668;   // exp(-1/8)
  constexpr int32_t kConstant1Over3 = 715827883;  // 1/3
  const int32_t x = Add(a, int32_t{1} << 28);     // a + 1/8
  const int32_t x2 = SaturatingRoundingDoublingHighMul(x, x);
  const int32_t x3 = SaturatingRoundingDoublingHighMul(x2, x);
  const int32_t x4 = SaturatingRoundingDoublingHighMul(x2, x2);
  const int32_t x4_over_4 = RoundingDivideByPOT(x4, 2);
  const int32_t x4_over_24_plus_x3_over_6_plus_x2_over_2 = RoundingDivideByPOT(
      Add(SaturatingRoundingDoublingHighMul(Add(x4_over_4, x3), kConstant1Over3), x2), 1);
  return Add(kConstantTerm, SaturatingRoundingDoublingHighMul(
                                kConstantTerm, Add(x, x4_over_24_plus_x3_over_6_plus_x2_over_2)));
}

// One step of exp_on_negative_values' barrel shifter (GEMMLOWP_EXP_BARREL_SHIFTER):
// if bit kExponent of the remainder is set, multiply by exp(-2^kExponent).
template <int kIntegerBits, int kExponent, int32_t kMultiplier>
inline void BarrelStep(int32_t remainder, int32_t* result) {
  if constexpr (kIntegerBits > kExponent) {
    constexpr int kShift = 31 - kIntegerBits + kExponent;
    // Computed unconditionally and selected, like gemmlowp (branch-free on random data).
    const int32_t product = SaturatingRoundingDoublingHighMul(*result, kMultiplier);
    *result = (remainder & (int32_t{1} << kShift)) ? product : *result;
  }
}

// exp(a) for a <= 0; a in Q(kIntegerBits), result in Q0.31.
template <int kIntegerBits>
inline int32_t ExpOnNegativeValues(int32_t a) {
  static_assert(kIntegerBits >= 1 && kIntegerBits <= 5, "only the formats used here");
  constexpr int kFractionalBits = 31 - kIntegerBits;
  constexpr int32_t kOneQuarter = int32_t{1} << (kFractionalBits - 2);
  constexpr int32_t kMask = kOneQuarter - 1;
  const int32_t a_mod_quarter_minus_one_quarter = Sub(a & kMask, kOneQuarter);
  int32_t result = ExpOnIntervalBetweenNegativeOneQuarterAnd0Excl(
      SaturatingShiftLeft<kIntegerBits>(a_mod_quarter_minus_one_quarter));
  const int32_t remainder = Sub(a_mod_quarter_minus_one_quarter, a);

  // Barrel shifter: multiply by exp(-2^k) for each set bit k of the remainder.
  BarrelStep<kIntegerBits, -2, 1672461947>(remainder, &result);
  BarrelStep<kIntegerBits, -1, 1302514674>(remainder, &result);
  BarrelStep<kIntegerBits, 0, 790015084>(remainder, &result);
  BarrelStep<kIntegerBits, 1, 290630308>(remainder, &result);
  BarrelStep<kIntegerBits, 2, 39332535>(remainder, &result);
  BarrelStep<kIntegerBits, 3, 720401>(remainder, &result);
  BarrelStep<kIntegerBits, 4, 242>(remainder, &result);
  // (The clamp for inputs below -32 only exists for kIntegerBits > 5.)
  return a == 0 ? INT32_MAX : result;
}

// 1 / (1 + x) for x in [0, 1), Q0.31 in and out (Newton-Raphson division).
inline int32_t OneOverOnePlusXForXIn01(int32_t a) {
  const int32_t half_denominator = RoundingHalfSum(a, INT32_MAX);
  constexpr int32_t kConstant48Over17 = 1515870810;      // Q2.29
  constexpr int32_t kConstantNeg32Over17 = -1010580540;  // Q2.29
  constexpr int32_t kOneQ2 = int32_t{1} << 29;
  int32_t x = Add(kConstant48Over17,
                  SaturatingRoundingDoublingHighMul(half_denominator, kConstantNeg32Over17));
  for (int i = 0; i < 3; ++i) {
    const int32_t half_denominator_times_x = SaturatingRoundingDoublingHighMul(half_denominator, x);
    const int32_t one_minus_half_denominator_times_x = Sub(kOneQ2, half_denominator_times_x);
    x = Add(x, SaturatingShiftLeft<2>(
                   SaturatingRoundingDoublingHighMul(x, one_minus_half_denominator_times_x)));
  }
  // Rescale<0>(ExactMulByPot<-1>(x)): Q1 -> Q0.
  return SaturatingShiftLeft<1>(x);
}

// gemmlowp::logistic for a in Q(kIntegerBits); result in Q0.31.
template <int kIntegerBits>
inline int32_t Logistic(int32_t a) {
  const bool positive = a > 0;
  const int32_t abs_input = positive ? a : Sub(0, a);
  const int32_t result_if_positive =
      OneOverOnePlusXForXIn01(ExpOnNegativeValues<kIntegerBits>(Sub(0, abs_input)));
  const int32_t result_if_negative = Sub(INT32_MAX, result_if_positive);
  if (a == 0) return int32_t{1} << 30;  // one half
  return positive ? result_if_positive : result_if_negative;
}

// TFLM's GetReciprocal: x (> 0) in Q(x_integer_digits); returns 1/x in Q0.31 scaled
// by 2^num_bits_over_unit.
inline int32_t GetReciprocal(int32_t x, int x_integer_digits, int* num_bits_over_unit) {
  const int headroom_plus_one = __builtin_clz(static_cast<uint32_t>(x));
  *num_bits_over_unit = x_integer_digits - headroom_plus_one;
  const int32_t shifted_sum_minus_one = static_cast<int32_t>(
      (static_cast<uint32_t>(x) << headroom_plus_one) - (static_cast<uint32_t>(1) << 31));
  return OneOverOnePlusXForXIn01(shifted_sum_minus_one);
}

}  // namespace fixedpoint
}  // namespace tflm_vmcu

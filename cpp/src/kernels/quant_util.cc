#include "kernels/quant_util.h"

#include <math.h>

namespace tflm_vmcu {

double RoundHalfAwayFromZero(double x) { return round(x); }
float RoundHalfAwayFromZeroF(float x) { return roundf(x); }

bool QuantizeMultiplier(double double_multiplier, int32_t* quantized_multiplier, int* shift) {
  *quantized_multiplier = 0;
  *shift = 0;
  if (double_multiplier == 0.) return true;
  // NaN or infinity: TFLM converts frexp's NaN or infinite fraction to int64 (undefined).
  if (!(double_multiplier - double_multiplier == 0.)) return false;
  // As TFLM, negative multipliers included: the fraction lies in (-1, -1/2], q_fixed in
  // [-2^31, -2^30], which int32 holds.
  const double q = frexp(double_multiplier, shift);
  auto q_fixed = static_cast<int64_t>(round(q * static_cast<double>(int64_t{1} << 31)));
  if (q_fixed == (int64_t{1} << 31)) {
    q_fixed /= 2;
    ++*shift;
  }
  // Shifts below -31 would shift every bit out: TFLM flushes such tiny multipliers to zero.
  if (*shift < -31) {
    *shift = 0;
    q_fixed = 0;
  }
  *quantized_multiplier = static_cast<int32_t>(q_fixed);
  return true;
}

bool QuantizeRequantMultiplier(double double_multiplier, int32_t* quantized_multiplier,
                               int* shift) {
  return QuantizeMultiplier(double_multiplier, quantized_multiplier, shift) &&
         *shift <= kMaxLeftShift;
}

void QuantizeMultiplierSmallerThanOneExp(double double_multiplier, int32_t* quantized_multiplier,
                                         int* left_shift) {
  QuantizeMultiplier(double_multiplier, quantized_multiplier, left_shift);
}

void QuantizeMultiplierGreaterThanOne(double double_multiplier, int32_t* quantized_multiplier,
                                      int* left_shift) {
  QuantizeMultiplier(double_multiplier, quantized_multiplier, left_shift);
}

void PreprocessSoftmaxScaling(double beta, double input_scale, int input_integer_bits,
                              int32_t* quantized_multiplier, int* left_shift) {
  double real = beta * input_scale * static_cast<double>(1 << (31 - input_integer_bits));
  const double cap = static_cast<double>(int64_t{1} << 31) - 1.0;
  if (real > cap) real = cap;
  QuantizeMultiplierGreaterThanOne(real, quantized_multiplier, left_shift);
}

int CalculateInputRadius(int input_integer_bits, int input_left_shift, int total_signed_bits) {
  const double max_input_rescaled =
      1.0 * ((1 << input_integer_bits) - 1) *
      static_cast<double>(int64_t{1} << (total_signed_bits - input_integer_bits)) /
      static_cast<double>(int64_t{1} << input_left_shift);
  return static_cast<int>(floor(max_input_rescaled));
}

namespace {
int32_t QuantizeFloat(float scale, int32_t zero_point, float f) {
  const float q = roundf(f / scale);
  // As TFLM's Quantize(), which fails outside int32; corrupt scales saturate here.
  if (!(q >= -2147483648.0f)) return INT32_MIN;
  if (!(q <= 2147483520.0f)) return INT32_MAX;
  const int64_t v = static_cast<int64_t>(zero_point) + static_cast<int64_t>(q);
  return v < INT32_MIN ? INT32_MIN : (v > INT32_MAX ? INT32_MAX : static_cast<int32_t>(v));
}
}  // namespace

void CalculateActivationRangeInt8(Activation activation, float scale, int32_t zero_point,
                                  int32_t* act_min, int32_t* act_max) {
  const int32_t qmin = INT8_MIN;
  const int32_t qmax = INT8_MAX;
  *act_min = qmin;
  *act_max = qmax;
  if (activation == Activation::kRelu) {
    const int32_t z = QuantizeFloat(scale, zero_point, 0.0f);
    *act_min = z > qmin ? z : qmin;
  } else if (activation == Activation::kRelu6) {
    const int32_t z = QuantizeFloat(scale, zero_point, 0.0f);
    const int32_t six = QuantizeFloat(scale, zero_point, 6.0f);
    *act_min = z > qmin ? z : qmin;
    *act_max = six < qmax ? six : qmax;
  } else if (activation == Activation::kReluN1To1) {
    const int32_t lo = QuantizeFloat(scale, zero_point, -1.0f);
    const int32_t hi = QuantizeFloat(scale, zero_point, 1.0f);
    *act_min = lo > qmin ? lo : qmin;
    *act_max = hi < qmax ? hi : qmax;
  }
}

}  // namespace tflm_vmcu

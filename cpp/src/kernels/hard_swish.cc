// HARD_SWISH int8 -> int8, x * relu6(x + 3) / 6 (TFLM reference_ops::HardSwish with
// int16 fixed point). Loop order: one forward sweep over the flat tensor, out[i] = f(in[i]),
// in units of kElementwiseChunk elements (kernels/elementwise.h).
#include "kernels/elementwise.h"
#include "kernels/kernel.h"
#include "kernels/kernel_util.h"
#include "kernels/quant_util.h"

namespace tflm_vmcu {
namespace {

struct HardSwishData {
  int32_t input_zero_point;
  int32_t output_zero_point;
  int16_t reluish_multiplier_fixedpoint_int16;
  int32_t reluish_multiplier_exponent;
  int16_t output_multiplier_fixedpoint_int16;
  int32_t output_multiplier_exponent;
  int64_t size;
};
TFLM_VMCU_ARM32_LAYOUT(HardSwishData, 32, 8);

// TFLM's DownScaleInt32ToInt16Multiplier.
int16_t DownScaleInt32ToInt16Multiplier(int32_t multiplier_int32) {
  constexpr int32_t kRoundingOffset = 1 << 15;
  if (multiplier_int32 >= INT32_MAX - kRoundingOffset) return INT16_MAX;
  return static_cast<int16_t>((multiplier_int32 + kRoundingOffset) >> 16);
}

// gemmlowp::SaturatingRoundingDoublingHighMul<int16_t>.
inline int16_t SaturatingRoundingDoublingHighMul16(int16_t a, int16_t b) {
  const bool overflow = a == b && a == INT16_MIN;
  const int32_t ab_32 = static_cast<int32_t>(a) * static_cast<int32_t>(b);
  const int16_t nudge = ab_32 >= 0 ? (1 << 14) : (1 - (1 << 14));
  const int16_t ab_x2_high16 = static_cast<int16_t>((ab_32 + nudge) / (1 << 15));
  return overflow ? INT16_MAX : ab_x2_high16;
}

// TFLM's SaturatingDoublingHighMul (like SQDMULH: rounds toward zero).
inline int16_t SaturatingDoublingHighMul16(int16_t a, int16_t b) {
  const bool overflow = a == b && a == INT16_MIN;
  const int32_t ab_32 = static_cast<int32_t>(a) * static_cast<int32_t>(b);
  const int16_t ab_x2_high16 = static_cast<int16_t>(ab_32 / (1 << 15));
  return overflow ? INT16_MAX : ab_x2_high16;
}

// gemmlowp::RoundingDivideByPOT<int16_t>, including its int16 truncation of the mask
// for exponents >= 16.
inline int16_t RoundingDivideByPOT16(int16_t x, int exponent) {
  const int16_t mask = static_cast<int16_t>((int64_t{1} << exponent) - 1);
  const int16_t remainder = static_cast<int16_t>(x & mask);
  const int16_t threshold = static_cast<int16_t>((mask >> 1) + (x < 0 ? 1 : 0));
  return static_cast<int16_t>((x >> exponent) + (remainder > threshold ? 1 : 0));
}

// TFLM's SaturatingLeftShift (amount <= 30, checked in Prepare).
inline int16_t SaturatingLeftShift16(int16_t value, int amount) {
  int64_t result = static_cast<int64_t>(value) * (int64_t{1} << amount);
  if (result > INT16_MAX) result = INT16_MAX;
  if (result < INT16_MIN) result = INT16_MIN;
  return static_cast<int16_t>(result);
}

Status HardSwishPrepare(OpContext& ctx) {
  if (ctx.num_inputs() != 1 || ctx.num_outputs() != 1 || ctx.input(0) == nullptr) {
    return ctx.Fail(Status::kInvalidModel, "has %d inputs and %d outputs, expected 1 and 1",
                    ctx.num_inputs(), ctx.num_outputs());
  }
  const Tensor* input = ctx.input(0);
  const Tensor* output = ctx.output(0);
  if (Status s = ExpectType(ctx, input, DType::kInt8, "input"); s != Status::kOk) return s;
  if (Status s = ExpectType(ctx, output, DType::kInt8, "output"); s != Status::kOk) return s;
  if (input->shape != output->shape) {
    return ctx.Fail(Status::kInvalidShape,
                    "output tensor '%s' shape differs from input tensor '%s' shape", output->name,
                    input->name);
  }
  if (input->zero_point < INT8_MIN || input->zero_point > INT8_MAX ||
      output->zero_point < INT8_MIN || output->zero_point > INT8_MAX) {
    return ctx.Fail(Status::kUnsupportedType,
                    "zero points (input %d, output %d) must be in the int8 range",
                    static_cast<int>(input->zero_point), static_cast<int>(output->zero_point));
  }
  if (!(input->scale > 0.0f) || !(output->scale > 0.0f)) {
    return ctx.Fail(Status::kUnsupportedType, "scales must be positive (input %f, output %f)",
                    static_cast<double>(input->scale), static_cast<double>(output->scale));
  }

  HardSwishData* data = AllocateOpData<HardSwishData>(ctx);
  if (data == nullptr) return Status::kOutOfMemory;
  data->input_zero_point = input->zero_point;
  data->output_zero_point = output->zero_point;

  // Float arithmetic as in TFLM's HardSwishPrepare, widened to double at the end.
  const float input_scale = input->scale;
  const float hires_input_scale = (1.0f / 128.0f) * input_scale;
  const float reluish_scale = 3.0f / 32768.0f;
  const float output_scale = output->scale;

  const double output_multiplier = static_cast<double>(hires_input_scale / output_scale);
  int32_t output_multiplier_fixedpoint_int32 = 0;
  int output_exponent = 0;
  QuantizeMultiplier(output_multiplier, &output_multiplier_fixedpoint_int32, &output_exponent);
  data->output_multiplier_fixedpoint_int16 =
      DownScaleInt32ToInt16Multiplier(output_multiplier_fixedpoint_int32);
  data->output_multiplier_exponent = output_exponent;
  if (output_exponent > 0) {
    return ctx.Fail(Status::kUnsupportedType,
                    "input scale %f / 128 over output scale %f must be < 1 (TFLM requires it)",
                    static_cast<double>(input_scale), static_cast<double>(output_scale));
  }

  const double reluish_multiplier = static_cast<double>(hires_input_scale / reluish_scale);
  int32_t reluish_multiplier_fixedpoint_int32 = 0;
  int reluish_exponent = 0;
  QuantizeMultiplier(reluish_multiplier, &reluish_multiplier_fixedpoint_int32, &reluish_exponent);
  data->reluish_multiplier_fixedpoint_int16 =
      DownScaleInt32ToInt16Multiplier(reluish_multiplier_fixedpoint_int32);
  data->reluish_multiplier_exponent = reluish_exponent;
  if (reluish_exponent > 31) {
    return ctx.Fail(Status::kUnsupportedType, "input scale %f is too large",
                    static_cast<double>(input_scale));
  }
  data->size = input->shape.FlatSize();
  return Status::kOk;
}

// One unit; `in` and `out` never overlap (see elementwise.h).
void HardSwishChunk(const int8_t* __restrict input, int8_t* __restrict output, uint32_t n,
                    const HardSwishData& p) {
  const int16_t output_multiplier = p.output_multiplier_fixedpoint_int16;
  const int16_t reluish_multiplier = p.reluish_multiplier_fixedpoint_int16;
  const int reluish_exponent = p.reluish_multiplier_exponent;
  const int output_right_shift = -p.output_multiplier_exponent;
  const int32_t input_zero_point = p.input_zero_point;
  const int32_t output_zero_point = p.output_zero_point;

  for (uint32_t i = 0; i < n; ++i) {
    const int16_t input_value = static_cast<int16_t>(input[i] - input_zero_point);
    // Put the significant bits high in the int16 (|input_value| <= 255 fits after << 7).
    const int16_t input_value_on_hires_input_scale = static_cast<int16_t>(input_value * (1 << 7));
    const int16_t input_value_on_preshift_output_scale =
        SaturatingRoundingDoublingHighMul16(input_value_on_hires_input_scale, output_multiplier);
    // "Relu-ish" multiplier: x rescaled from [-3, 3] to [-1, 1], saturating; the left
    // shift is split so that only its last bit can saturate.
    int16_t reluish_value = input_value_on_hires_input_scale;
    if (reluish_exponent > 0) {
      reluish_value = SaturatingLeftShift16(reluish_value, reluish_exponent - 1);
    }
    reluish_value = SaturatingRoundingDoublingHighMul16(reluish_value, reluish_multiplier);
    if (reluish_exponent > 0) {
      reluish_value = SaturatingLeftShift16(reluish_value, 1);
    }
    if (reluish_exponent < 0) {
      reluish_value = RoundingDivideByPOT16(reluish_value, -reluish_exponent);
    }
    // [-1, 1] -> [0, 1].
    reluish_value = static_cast<int16_t>((reluish_value + (1 << 15)) >> 1);
    const int16_t preshift_output_value =
        SaturatingDoublingHighMul16(reluish_value, input_value_on_preshift_output_scale);
    int16_t output_value = RoundingDivideByPOT16(preshift_output_value, output_right_shift);
    output_value = static_cast<int16_t>(output_value + output_zero_point);
    if (output_value > INT8_MAX) output_value = INT8_MAX;
    if (output_value < INT8_MIN) output_value = INT8_MIN;
    output[i] = static_cast<int8_t>(output_value);
  }
}

Status HardSwishEval(OpContext& ctx) {
  const HardSwishData p = *static_cast<const HardSwishData*>(ctx.op_data());
  UnaryChunks<1, 1>(
      ctx.bytes(ctx.input(0)), ctx.bytes(ctx.output(0)), static_cast<uint32_t>(p.size),
      [&p](const int8_t* src, int8_t* dst, uint32_t m) { HardSwishChunk(src, dst, m, p); });
  return Status::kOk;
}

}  // namespace

const Kernel kHardSwish = {HardSwishPrepare, HardSwishEval};

}  // namespace tflm_vmcu

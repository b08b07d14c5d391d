// LOGISTIC int8 -> int8 (TFLM reference_integer_ops::Logistic with gemmlowp fixed
// point). Loop order: one forward sweep over the flat tensor, out[i] = f(in[i]), in
// units of kElementwiseChunk elements (kernels/elementwise.h).
#include <math.h>

#include "kernels/elementwise.h"
#include "kernels/fixedpoint.h"
#include "kernels/kernel.h"
#include "kernels/kernel_util.h"
#include "kernels/quant_util.h"

namespace tflm_vmcu {
namespace {

// The input is rescaled to Q4.27; the output is Q0.31 rescaled to 1/256 steps.
constexpr int kInputIntegerBits = 4;
constexpr int kOutputIntegerBits = 8;

struct LogisticData {
  int32_t input_zero_point;
  int32_t input_range_radius;
  int32_t input_multiplier;
  int32_t input_left_shift;
  int64_t size;
};
TFLM_VMCU_ARM32_LAYOUT(LogisticData, 24, 8);

Status LogisticPrepare(OpContext& ctx) {
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
  if (input->zero_point < INT8_MIN || input->zero_point > INT8_MAX) {
    return ctx.Fail(Status::kUnsupportedType, "input tensor '%s' zero point %d out of int8 range",
                    input->name, static_cast<int>(input->zero_point));
  }
  // TFLM only checks the output zero point; the kernel writes values on a 1/256 scale.
  if (output->zero_point != -128) {
    return ctx.Fail(Status::kUnsupportedType,
                    "output tensor '%s' must have zero point -128 (got %d)", output->name,
                    static_cast<int>(output->zero_point));
  }

  LogisticData* data = AllocateOpData<LogisticData>(ctx);
  if (data == nullptr) return Status::kOutOfMemory;
  const double input_real_multiplier =
      static_cast<double>(input->scale) * static_cast<double>(1 << (31 - kInputIntegerBits));
  data->input_zero_point = input->zero_point;
  int left_shift = 0;
  const double q = frexp(input_real_multiplier, &left_shift);
  // Outside [0, 62] TFLM's CalculateInputRadius shifts out of range (undefined).
  if (!(input->scale > 0.0f) || left_shift < 0 || left_shift > 62) {
    return ctx.Fail(Status::kUnsupportedType, "input tensor '%s' scale %f is out of range",
                    input->name, static_cast<double>(input->scale));
  }
  data->input_left_shift = left_shift;
  data->input_multiplier =
      static_cast<int32_t>(RoundHalfAwayFromZero(q * static_cast<double>(int64_t{1} << 31)));
  data->input_range_radius = CalculateInputRadius(kInputIntegerBits, left_shift, 31);
  data->size = input->shape.FlatSize();
  return Status::kOk;
}

// One unit; `in` and `out` never overlap (see elementwise.h).
void LogisticChunk(const int8_t* __restrict input, int8_t* __restrict output, uint32_t n,
                   const LogisticData& data) {
  const int32_t zero_point = data.input_zero_point;
  const int32_t radius = data.input_range_radius;
  const int32_t multiplier = data.input_multiplier;
  const int shift = data.input_left_shift;
  for (uint32_t i = 0; i < n; ++i) {
    const int32_t x = static_cast<int32_t>(input[i]) - zero_point;
    if (x <= -radius) {
      output[i] = INT8_MIN;
    } else if (x >= radius) {
      output[i] = INT8_MAX;
    } else {
      const int32_t input_in_q4 = MultiplyByQuantizedMultiplier(x, multiplier, shift);
      const int32_t output_in_q0 = fixedpoint::Logistic<kInputIntegerBits>(input_in_q4);
      const int32_t output_in_q23 = RoundingDivideByPOT(output_in_q0, 31 - kOutputIntegerBits);
      output[i] = static_cast<int8_t>(ClampInt32(output_in_q23 - 128, INT8_MIN, INT8_MAX));
    }
  }
}

Status LogisticEval(OpContext& ctx) {
  const LogisticData data = *static_cast<const LogisticData*>(ctx.op_data());
  UnaryChunks<1, 1>(
      ctx.bytes(ctx.input(0)), ctx.bytes(ctx.output(0)), static_cast<uint32_t>(data.size),
      [&data](const int8_t* src, int8_t* dst, uint32_t m) { LogisticChunk(src, dst, m, data); });
  return Status::kOk;
}

}  // namespace

const Kernel kLogistic = {LogisticPrepare, LogisticEval};

}  // namespace tflm_vmcu

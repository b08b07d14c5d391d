// RELU and RELU6, int8 -> int8 (TFLM micro/kernels/activations.cc): RELU requantizes
// to the output scale then clamps at the output zero point; RELU6 clamps the raw input
// to [quantized 0, quantized 6] on the input scale. Loop order: one forward sweep over
// the flat tensor, out[i] = f(in[i]), in units of kElementwiseChunk elements
// (kernels/elementwise.h).
#include <math.h>

#include "kernels/elementwise.h"
#include "kernels/kernel.h"
#include "kernels/kernel_util.h"
#include "kernels/quant_util.h"

namespace tflm_vmcu {
namespace {

struct ReluData {
  int32_t input_offset;
  int32_t output_offset;
  int32_t output_multiplier;
  int32_t output_shift;
  int32_t quantized_activation_min;
  int32_t quantized_activation_max;
  int64_t size;
};
TFLM_VMCU_ARM32_LAYOUT(ReluData, 32, 8);

struct Relu6Data {
  int8_t zero;
  int8_t six;
  int64_t size;
};
TFLM_VMCU_ARM32_LAYOUT(Relu6Data, 16, 8);

// Shared checks: one int8 input, one int8 output of the same shape, int8 zero points.
Status CheckUnaryInt8(OpContext& ctx) {
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
  return Status::kOk;
}

// TFLM's ReluPrepare + CalculateReluOpData<int8_t> (act_min 0, act_max +inf).
Status ReluPrepare(OpContext& ctx) {
  if (Status s = CheckUnaryInt8(ctx); s != Status::kOk) return s;
  const Tensor* input = ctx.input(0);
  const Tensor* output = ctx.output(0);
  ReluData* data = AllocateOpData<ReluData>(ctx);
  if (data == nullptr) return Status::kOutOfMemory;
  const double real_multiplier =
      static_cast<double>(input->scale) / static_cast<double>(output->scale);
  int shift = 0;
  QuantizeMultiplier(real_multiplier, &data->output_multiplier, &shift);
  if (shift > 30) {
    return ctx.Fail(Status::kUnsupportedType, "input scale %f over output scale %f is too large",
                    static_cast<double>(input->scale), static_cast<double>(output->scale));
  }
  data->output_shift = shift;
  const float act_min = 0.0f;
  const int32_t min_q =
      output->zero_point + static_cast<int32_t>(RoundHalfAwayFromZeroF(act_min / output->scale));
  data->quantized_activation_min = min_q > INT8_MIN ? min_q : INT8_MIN;
  data->quantized_activation_max = INT8_MAX;
  data->input_offset = input->zero_point;
  data->output_offset = output->zero_point;
  data->size = input->shape.FlatSize();
  return Status::kOk;
}

// One unit; `in` and `out` never overlap (see elementwise.h).
void ReluChunk(const int8_t* __restrict input, int8_t* __restrict output, uint32_t n,
               const ReluData& p) {
  const int32_t input_offset = p.input_offset;
  const int32_t output_offset = p.output_offset;
  const int32_t multiplier = p.output_multiplier;
  const int shift = p.output_shift;
  const int32_t act_min = p.quantized_activation_min;
  const int32_t act_max = p.quantized_activation_max;
  for (uint32_t i = 0; i < n; ++i) {
    int32_t clamped =
        output_offset + MultiplyByQuantizedMultiplier(static_cast<int32_t>(input[i]) - input_offset,
                                                      multiplier, shift);
    clamped = clamped > act_min ? clamped : act_min;
    clamped = clamped < act_max ? clamped : act_max;
    output[i] = static_cast<int8_t>(clamped);
  }
}

Status ReluEval(OpContext& ctx) {
  const ReluData p = *static_cast<const ReluData*>(ctx.op_data());
  UnaryChunks<1, 1>(
      ctx.bytes(ctx.input(0)), ctx.bytes(ctx.output(0)), static_cast<uint32_t>(p.size),
      [&p](const int8_t* src, int8_t* dst, uint32_t m) { ReluChunk(src, dst, m, p); });
  return Status::kOk;
}

// TFLM's Relu6Prepare: zero and six quantized with the INPUT parameters (the output
// parameters are not used; TFLM assumes they equal the input's).
Status Relu6Prepare(OpContext& ctx) {
  if (Status s = CheckUnaryInt8(ctx); s != Status::kOk) return s;
  const Tensor* input = ctx.input(0);
  // FloatToQuantizedType<int8_t>(6.0f, scale, zero_point): round(6 / scale) + zp,
  // clamped to int8. Refuse scales so small that the int32 conversion overflows.
  const float six_over_scale = 6.0f / input->scale;
  if (!(six_over_scale < 1e9f)) {
    return ctx.Fail(Status::kUnsupportedType, "input tensor '%s' scale %f is too small",
                    input->name, static_cast<double>(input->scale));
  }
  Relu6Data* data = AllocateOpData<Relu6Data>(ctx);
  if (data == nullptr) return Status::kOutOfMemory;
  int32_t six = static_cast<int32_t>(round(static_cast<double>(six_over_scale)) +
                                     static_cast<double>(input->zero_point));
  six = ClampInt32(six, INT8_MIN, INT8_MAX);
  data->zero = static_cast<int8_t>(input->zero_point);
  data->six = static_cast<int8_t>(six);
  data->size = input->shape.FlatSize();
  return Status::kOk;
}

void Relu6Chunk(const int8_t* __restrict input, int8_t* __restrict output, uint32_t n, int8_t lower,
                int8_t upper) {
  for (uint32_t i = 0; i < n; ++i) {
    const int8_t val = input[i];
    output[i] = val > upper ? upper : (val < lower ? lower : val);
  }
}

Status Relu6Eval(OpContext& ctx) {
  const Relu6Data& p = *static_cast<const Relu6Data*>(ctx.op_data());
  const int8_t lower = p.zero;
  const int8_t upper = p.six;
  UnaryChunks<1, 1>(ctx.bytes(ctx.input(0)), ctx.bytes(ctx.output(0)),
                    static_cast<uint32_t>(p.size),
                    [lower, upper](const int8_t* src, int8_t* dst, uint32_t m) {
                      Relu6Chunk(src, dst, m, lower, upper);
                    });
  return Status::kOk;
}

}  // namespace

const Kernel kRelu = {ReluPrepare, ReluEval};
const Kernel kRelu6 = {Relu6Prepare, Relu6Eval};

}  // namespace tflm_vmcu

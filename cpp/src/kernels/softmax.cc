// SOFTMAX int8 -> int8 / int16 over the last axis (TFLM reference_ops::Softmax with
// gemmlowp fixed point). Loop order: row > {pass 1: read the row for its max; pass 2:
// read the row, sum exps; pass 3: per element c, read input c then write output c}.
// Units (cpp/src/ring.h): pass 3 goes in chunks of kSoftmaxChunk elements, each read
// then written; passes 1 and 2 only read, so they join the unit of the row's first
// chunk. The access-order model is cpp/src/access_order.cc.
#include <string.h>

#include "kernels/fixedpoint.h"
#include "kernels/kernel.h"
#include "kernels/kernel_util.h"
#include "kernels/quant_util.h"

namespace tflm_vmcu {
namespace {

// Integer bits of the scaled input differences (Q5.26) and of the sum of exps (Q12.19).
constexpr int kScaledDiffIntegerBits = 5;
constexpr int kAccumulationIntegerBits = 12;

// Elements per unit of pass 3 (SOFTMAX_CHUNK in the model), and per read view of
// passes 1 and 2 (any size: those reads belong to one unit).
constexpr uint32_t kSoftmaxChunk = kUnitChunk;
constexpr uint32_t kSoftmaxStatsPiece = 256;

struct SoftmaxData {
  int32_t input_multiplier;
  int32_t input_left_shift;
  int32_t diff_min;
  int32_t outer_size;
  int32_t depth;
  bool int16_output;
};
TFLM_VMCU_ARM32_LAYOUT(SoftmaxData, 24, 4);

Status SoftmaxPrepare(OpContext& ctx) {
  if (ctx.num_inputs() != 1 || ctx.num_outputs() != 1 || ctx.input(0) == nullptr) {
    return ctx.Fail(Status::kInvalidModel, "has %d inputs and %d outputs, expected 1 and 1",
                    ctx.num_inputs(), ctx.num_outputs());
  }
  const Tensor* input = ctx.input(0);
  const Tensor* output = ctx.output(0);
  if (Status s = ExpectType(ctx, input, DType::kInt8, "input"); s != Status::kOk) return s;
  if (output == nullptr) return ctx.Fail(Status::kInvalidModel, "missing output tensor");
  if (output->type != DType::kInt8 && output->type != DType::kInt16) {
    return ctx.Fail(Status::kUnsupportedType,
                    "output tensor '%s' has type %s, expected INT8 or INT16", output->name,
                    DTypeName(static_cast<uint8_t>(output->type)));
  }
  if (input->shape.rank < 1) {
    return ctx.Fail(Status::kInvalidShape, "input tensor '%s' has rank 0, expected >= 1",
                    input->name);
  }
  if (input->shape != output->shape) {
    return ctx.Fail(Status::kInvalidShape,
                    "output tensor '%s' shape differs from input tensor '%s' shape", output->name,
                    input->name);
  }
  if (input->zero_point < INT8_MIN || input->zero_point > INT8_MAX) {
    return ctx.Fail(Status::kUnsupportedType, "input tensor '%s' zero point %d out of int8 range",
                    input->name, static_cast<int>(input->zero_point));
  }
  const bool int16_output = output->type == DType::kInt16;
  if (int16_output) {
    // TFLM: zero point -32768, scale 1/65536 within 0.1%.
    const float expected = 1.f / 65536;
    const float diff =
        output->scale > expected ? output->scale - expected : expected - output->scale;
    if (output->zero_point != -32768 || diff > 0.001f * 1.f / 65536) {
      return ctx.Fail(Status::kUnsupportedType,
                      "int16 output tensor '%s' must have zero point -32768 and scale 1/65536 "
                      "(got %d and %f)",
                      output->name, static_cast<int>(output->zero_point),
                      static_cast<double>(output->scale));
    }
  } else if (output->zero_point != -128 || output->scale != 1.f / 256) {
    return ctx.Fail(Status::kUnsupportedType,
                    "int8 output tensor '%s' must have zero point -128 and scale 1/256 "
                    "(got %d and %f)",
                    output->name, static_cast<int>(output->zero_point),
                    static_cast<double>(output->scale));
  }

  // PreprocessSoftmaxScaling ends in QuantizeMultiplierGreaterThanOne, which TFLM
  // CHECKs (abort) to be > 1: refuse such (degenerate) scales instead.
  const double beta = static_cast<double>(ctx.options().beta);
  const double input_scale = static_cast<double>(input->scale);
  const double real_multiplier =
      beta * input_scale * static_cast<double>(1 << (31 - kScaledDiffIntegerBits));
  if (!(real_multiplier > 1.0)) {
    return ctx.Fail(Status::kUnsupportedType,
                    "beta %f * input scale %f of tensor '%s' is too small (TFLM aborts)", beta,
                    input_scale, input->name);
  }

  SoftmaxData* data = AllocateOpData<SoftmaxData>(ctx);
  if (data == nullptr) return Status::kOutOfMemory;
  int input_left_shift = 0;
  PreprocessSoftmaxScaling(beta, input_scale, kScaledDiffIntegerBits, &data->input_multiplier,
                           &input_left_shift);
  data->input_left_shift = input_left_shift;
  // TFLM: diff_min = -1.0 * CalculateInputRadius(...), stored in an int.
  data->diff_min = static_cast<int32_t>(
      -1.0 * CalculateInputRadius(kScaledDiffIntegerBits, input_left_shift, 31));

  const int last = input->shape.rank - 1;
  data->depth = input->shape.dims[last];
  int64_t outer = 1;
  for (int i = 0; i < last; ++i) outer *= input->shape.dims[i];
  data->outer_size = static_cast<int32_t>(outer);
  data->int16_output = int16_output;
  return Status::kOk;
}

template <typename OutputT>
Status SoftmaxRows(OpContext& ctx, const SoftmaxData& data, const RingBytes& input,
                   const RingBytes& output) {
  constexpr int32_t kOutMin = sizeof(OutputT) == 1 ? INT8_MIN : INT16_MIN;
  constexpr int32_t kOutMax = sizeof(OutputT) == 1 ? INT8_MAX : INT16_MAX;
  constexpr uint32_t kOutBytes = sizeof(OutputT);
  const int32_t multiplier = data.input_multiplier;
  const int left_shift = data.input_left_shift;
  const int32_t diff_min = data.diff_min;
  const uint32_t depth = static_cast<uint32_t>(data.depth);
  int8_t in_scratch[kSoftmaxStatsPiece];
  int8_t out_scratch[kSoftmaxChunk * kOutBytes];

  for (int32_t row = 0; row < data.outer_size; ++row) {
    const uint32_t base = static_cast<uint32_t>(row) * depth;

    int32_t max_in_row = INT8_MIN;
    for (uint32_t c0 = 0; c0 < depth; c0 += kSoftmaxStatsPiece) {
      const uint32_t m = depth - c0 < kSoftmaxStatsPiece ? depth - c0 : kSoftmaxStatsPiece;
      const int8_t* in = input.Read(base + c0, m, in_scratch);
      for (uint32_t c = 0; c < m; ++c) {
        if (in[c] > max_in_row) max_in_row = in[c];
      }
    }

    // Sum in Q12.19; gemmlowp's plain int32 add (wrapping kept well defined).
    uint32_t sum_of_exps = 0;
    for (uint32_t c0 = 0; c0 < depth; c0 += kSoftmaxStatsPiece) {
      const uint32_t m = depth - c0 < kSoftmaxStatsPiece ? depth - c0 : kSoftmaxStatsPiece;
      const int8_t* in = input.Read(base + c0, m, in_scratch);
      for (uint32_t c = 0; c < m; ++c) {
        const int32_t input_diff = static_cast<int32_t>(in[c]) - max_in_row;
        if (input_diff >= diff_min) {
          const int32_t scaled_diff =
              MultiplyByQuantizedMultiplierGreaterThanOne(input_diff, multiplier, left_shift);
          const int32_t exp_q0 =
              fixedpoint::ExpOnNegativeValues<kScaledDiffIntegerBits>(scaled_diff);
          sum_of_exps +=
              static_cast<uint32_t>(RoundingDivideByPOT(exp_q0, kAccumulationIntegerBits));
        }
      }
    }

    if (sum_of_exps == 0) {
      return ctx.Fail(Status::kInvalidShape, "sum of exponentials overflowed (depth %d)",
                      data.depth);
    }
    int num_bits_over_unit = 0;
    const int32_t shifted_scale = fixedpoint::GetReciprocal(
        static_cast<int32_t>(sum_of_exps), kAccumulationIntegerBits, &num_bits_over_unit);
    const int exponent = num_bits_over_unit + 31 - static_cast<int>(sizeof(OutputT) * 8);
    if (exponent < 0 || exponent > 31) {
      // TFLM TFLITE_CHECKs this (abort): too many values close to the row maximum.
      return ctx.Fail(Status::kInvalidShape,
                      "sum of exponentials out of range (depth %d, TFLM aborts)", data.depth);
    }

    // Units: read kSoftmaxChunk inputs, then write their outputs.
    for (uint32_t c0 = 0; c0 < depth; c0 += kSoftmaxChunk) {
      const uint32_t m = depth - c0 < kSoftmaxChunk ? depth - c0 : kSoftmaxChunk;
      const int8_t* in = input.Read(base + c0, m, in_scratch);
      const uint32_t out_at = (base + c0) * kOutBytes;
      int8_t* out = output.BeginWrite(out_at, m * kOutBytes, out_scratch);
      for (uint32_t c = 0; c < m; ++c) {
        const int32_t input_diff = static_cast<int32_t>(in[c]) - max_in_row;
        OutputT value = static_cast<OutputT>(kOutMin);
        if (input_diff >= diff_min) {
          const int32_t scaled_diff =
              MultiplyByQuantizedMultiplierGreaterThanOne(input_diff, multiplier, left_shift);
          const int32_t exp_q0 =
              fixedpoint::ExpOnNegativeValues<kScaledDiffIntegerBits>(scaled_diff);
          const int32_t unsat_output = RoundingDivideByPOT(
              SaturatingRoundingDoublingHighMul(shifted_scale, exp_q0), exponent);
          value = static_cast<OutputT>(ClampInt32(unsat_output + kOutMin, kOutMin, kOutMax));
        }
        memcpy(out + c * kOutBytes, &value, kOutBytes);  // int16 output may be unaligned
      }
      output.EndWrite(out_at, m * kOutBytes, out);
    }
  }
  return Status::kOk;
}

Status SoftmaxEval(OpContext& ctx) {
  const SoftmaxData& data = *static_cast<const SoftmaxData*>(ctx.op_data());
  const RingBytes input = ctx.bytes(ctx.input(0));
  const RingBytes output = ctx.bytes(ctx.output(0));
  if (data.int16_output) return SoftmaxRows<int16_t>(ctx, data, input, output);
  return SoftmaxRows<int8_t>(ctx, data, input, output);
}

}  // namespace

const Kernel kSoftmax = {SoftmaxPrepare, SoftmaxEval};

}  // namespace tflm_vmcu

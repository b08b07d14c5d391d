// MUL (int8): out = clamp(requantize((in1 - zp1) * (in2 - zp2))), same shape (any rank)
// or numpy-style broadcast up to 4D. Loop order: output elements in row-major order
// (batch > y > x > channel), each reading one element of each input (broadcast inputs
// re-read).
// Units (kernels/elementwise.h): same shape, chunks of kElementwiseChunk elements of
// the flat tensors; broadcast, each innermost row of the broadcast plan in chunks of
// kElementwiseChunk outputs.
#include "kernels/elementwise.h"
#include "kernels/kernel.h"
#include "kernels/kernel_util.h"
#include "kernels/quant_util.h"

namespace tflm_vmcu {
namespace {

// TFLM's BroadcastMul4DSlow works on shapes extended to 4D.
constexpr int32_t kMaxBroadcastRank = 4;

// The arithmetic of TFLM's ArithmeticParams used by the int8 MUL.
struct MulParams {
  int32_t input1_offset;
  int32_t input2_offset;
  int32_t output_offset;
  int32_t output_multiplier;
  int output_shift;
  int32_t act_min;
  int32_t act_max;
};

struct MulOpData {
  MulParams params;
  bool broadcast;  // TFLM's ProcessBroadcastShapes() result
  int32_t flat_size;
  BroadcastPlan plan;
};
TFLM_VMCU_ARM32_LAYOUT(MulOpData, 112, 4);

// min(hi, max(lo, v)) as TFLM writes it; two selects keep it branch-free (random data
// makes a branchy clamp mispredict).
inline int32_t Clamp(int32_t v, int32_t lo, int32_t hi) {
  v = v > lo ? v : lo;
  return v < hi ? v : hi;
}

// One element of TFLM's reference_integer_ops::MulElementwise / BroadcastMul4DSlow, on
// the zero-point-corrected inputs.
inline int8_t MulOutput(int32_t input1_val, int32_t input2_val, const MulParams& d) {
  const int32_t unclamped_result =
      d.output_offset +
      MultiplyByQuantizedMultiplier(input1_val * input2_val, d.output_multiplier, d.output_shift);
  return static_cast<int8_t>(Clamp(unclamped_result, d.act_min, d.act_max));
}

// One unit: `n` outputs, inputs advancing by s1 and s2 (0 or 1).
void MulRow(const int8_t* a, int32_t s1, const int8_t* b, int32_t s2, int8_t* out, int32_t n,
            const MulParams& params) {
  // A local copy: stores through the int8_t output pointer may alias `params`.
  const MulParams d = params;
  const int32_t off1 = d.input1_offset;
  const int32_t off2 = d.input2_offset;
  if (s1 == 1 && s2 == 1) {
    for (int32_t i = 0; i < n; ++i) out[i] = MulOutput(off1 + a[i], off2 + b[i], d);
  } else if (s1 == 1 && s2 == 0) {
    const int32_t y = off2 + *b;
    for (int32_t i = 0; i < n; ++i) out[i] = MulOutput(off1 + a[i], y, d);
  } else if (s1 == 0 && s2 == 1) {
    const int32_t x = off1 + *a;
    for (int32_t i = 0; i < n; ++i) out[i] = MulOutput(x, off2 + b[i], d);
  } else {  // both 0 (a one-element output)
    for (int32_t i = 0; i < n; ++i) out[i] = MulOutput(off1 + *a, off2 + *b, d);
  }
}

// Fails unless the output tensor has the shape the op computes; names the first
// mismatching dimension.
Status ExpectShape(OpContext& ctx, const Tensor* output, const Shape& expected) {
  if (output->shape.rank != expected.rank) {
    return ctx.Fail(Status::kInvalidShape, "output '%s' has rank %d, expected %d", output->name,
                    output->shape.rank, expected.rank);
  }
  for (int32_t i = 0; i < expected.rank; ++i) {
    if (output->shape.dims[i] != expected.dims[i]) {
      return ctx.Fail(Status::kInvalidShape, "output '%s' has dim %d = %d, expected %d",
                      output->name, i, output->shape.dims[i], expected.dims[i]);
    }
  }
  return Status::kOk;
}

Status MulPrepare(OpContext& ctx) {
  Status s = ExpectArity(ctx, 2, 2, 1);
  if (s != Status::kOk) return s;
  const Tensor* input1 = ctx.input(0);
  const Tensor* input2 = ctx.input(1);
  const Tensor* output = ctx.output(0);
  if ((s = ExpectInt8Activation(ctx, output, "output")) != Status::kOk) return s;
  if ((s = ExpectInt8Activation(ctx, input1, "input1")) != Status::kOk) return s;
  if ((s = ExpectInt8Activation(ctx, input2, "input2")) != Status::kOk) return s;
  const Activation act = ctx.options().activation;
  if ((s = ExpectFusedActivation(ctx, act)) != Status::kOk) return s;

  Shape out_shape;
  if (!BroadcastShape(input1->shape, input2->shape, &out_shape)) {
    return ctx.Fail(Status::kInvalidShape,
                    "inputs '%s' (rank %d) and '%s' (rank %d) are not broadcast-compatible",
                    input1->name, input1->shape.rank, input2->name, input2->shape.rank);
  }
  if ((s = ExpectShape(ctx, output, out_shape)) != Status::kOk) return s;
  if (out_shape.FlatSize() > INT32_MAX) {
    return ctx.Fail(Status::kInvalidShape, "output '%s' is too large", output->name);
  }
  const bool broadcast = !SameExtendedShape(input1->shape, input2->shape);
  if (broadcast && out_shape.rank > kMaxBroadcastRank) {
    return ctx.Fail(Status::kInvalidShape,
                    "broadcast MUL supports up to %d dimensions, output '%s' has %d",
                    kMaxBroadcastRank, output->name, out_shape.rank);
  }

  MulOpData* data = AllocateOpData<MulOpData>(ctx);
  if (data == nullptr) return Status::kOutOfMemory;
  // TFLM's CalculateOpDataMul (mul_common.cc), int8 branch.
  const double real_multiplier = static_cast<double>(input1->scale) *
                                 static_cast<double>(input2->scale) /
                                 static_cast<double>(output->scale);
  if (!QuantizeRequantMultiplier(real_multiplier, &data->params.output_multiplier,
                                 &data->params.output_shift)) {
    return ctx.Fail(Status::kInvalidModel,
                    "input '%s' scale %f * input '%s' scale %f / output '%s' scale %f = %f "
                    "is outside TFLM's requantisation range (finite, magnitude below 2^31)",
                    input1->name, static_cast<double>(input1->scale), input2->name,
                    static_cast<double>(input2->scale), output->name,
                    static_cast<double>(output->scale), real_multiplier);
  }
  data->params.input1_offset = -input1->zero_point;
  data->params.input2_offset = -input2->zero_point;
  data->params.output_offset = output->zero_point;
  CalculateActivationRangeInt8(act, output->scale, output->zero_point, &data->params.act_min,
                               &data->params.act_max);

  data->flat_size = static_cast<int32_t>(out_shape.FlatSize());
  // An empty output takes the flat loop, which then does nothing.
  data->broadcast = broadcast && data->flat_size > 0;
  if (data->broadcast) MakeBroadcastPlan(input1->shape, input2->shape, out_shape, &data->plan);
  return Status::kOk;
}

Status MulEval(OpContext& ctx) {
  // A local copy: stores through int8_t pointers may alias the op data.
  const MulOpData& data = *static_cast<const MulOpData*>(ctx.op_data());
  const MulParams params = data.params;
  const RingBytes in1 = ctx.bytes(ctx.input(0));
  const RingBytes in2 = ctx.bytes(ctx.input(1));
  const RingBytes out = ctx.bytes(ctx.output(0));
  auto row = [&params](const int8_t* a, int32_t s1, const int8_t* b, int32_t s2, int8_t* o,
                       int32_t n) { MulRow(a, s1, b, s2, o, n, params); };
  if (!data.broadcast) {
    BinaryChunks(in1, in2, out, static_cast<uint32_t>(data.flat_size), row);
  } else {
    BroadcastChunks(in1, in2, out, data.plan, row);
  }
  return Status::kOk;
}

}  // namespace

const Kernel kMul = {MulPrepare, MulEval};

}  // namespace tflm_vmcu

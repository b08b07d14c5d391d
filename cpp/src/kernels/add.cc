// ADD (int8): out = clamp(rescale(in1) + rescale(in2)), same shape or numpy-style
// broadcast up to 6D. Loop order: output elements in row-major order (batch > ... >
// innermost dim), each reading one element of each input (broadcast inputs re-read).
// Units (kernels/elementwise.h): same shape, chunks of kElementwiseChunk elements of
// the flat tensors; broadcast, each innermost row of the broadcast plan in chunks of
// kElementwiseChunk outputs.
#include <stddef.h>

#include "kernels/add_common.h"
#include "kernels/elementwise.h"
#include "kernels/kernel.h"
#include "kernels/kernel_util.h"
#include "kernels/quant_util.h"

namespace tflm_vmcu {
namespace {

struct AddOpData {
  AddParams params;
  bool broadcast;  // TFLM's ProcessBroadcastShapes() result
  int32_t flat_size;
  BroadcastPlan plan;
};
TFLM_VMCU_ARM32_LAYOUT(AddOpData, 132, 4);
// The fused inverted bottleneck reads an ADD's op data as its AddParams.
static_assert(offsetof(AddOpData, params) == 0, "AddParams must come first");

// One unit: `n` outputs, inputs advancing by s1 and s2 (0 or 1). (No __restrict here:
// GCC then picks a slower vectorisation of this loop.)
void AddRow(const int8_t* a, int32_t s1, const int8_t* b, int32_t s2, int8_t* out, int32_t n,
            const AddParams& params) {
  // A local copy: stores through the int8_t output pointer may alias `params`.
  const AddParams d = params;
  if (s1 == 1 && s2 == 1) {
    for (int32_t i = 0; i < n; ++i) out[i] = AddOutput(Scale1(a[i], d), Scale2(b[i], d), d);
  } else if (s1 == 1 && s2 == 0) {
    const int32_t scaled2 = Scale2(*b, d);
    for (int32_t i = 0; i < n; ++i) out[i] = AddOutput(Scale1(a[i], d), scaled2, d);
  } else if (s1 == 0 && s2 == 1) {
    const int32_t scaled1 = Scale1(*a, d);
    for (int32_t i = 0; i < n; ++i) out[i] = AddOutput(scaled1, Scale2(b[i], d), d);
  } else {  // both 0 (a one-element output)
    for (int32_t i = 0; i < n; ++i) out[i] = AddOutput(Scale1(*a, d), Scale2(*b, d), d);
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

Status AddPrepare(OpContext& ctx) {
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

  // TFLM's CalculateOpDataAdd (add_common.cc), int8 branch.
  const double twice_max_input_scale =
      2 * static_cast<double>(input1->scale > input2->scale ? input1->scale : input2->scale);
  const double real_input1_multiplier = static_cast<double>(input1->scale) / twice_max_input_scale;
  const double real_input2_multiplier = static_cast<double>(input2->scale) / twice_max_input_scale;
  const int32_t left_shift = 20;
  const double real_output_multiplier =
      twice_max_input_scale / ((1 << left_shift) * static_cast<double>(output->scale));
  // TFLM's QuantizeMultiplierSmallerThanOneExp aborts outside (0, 1).
  if (!(real_output_multiplier > 0.0 && real_output_multiplier < 1.0)) {
    return ctx.Fail(Status::kUnsupportedType,
                    "output scale %f is too small for the input scales (%f, %f)",
                    static_cast<double>(output->scale), static_cast<double>(input1->scale),
                    static_cast<double>(input2->scale));
  }

  AddOpData* data = AllocateOpData<AddOpData>(ctx);
  if (data == nullptr) return Status::kOutOfMemory;
  data->params.input1_offset = -input1->zero_point;
  data->params.input2_offset = -input2->zero_point;
  data->params.output_offset = output->zero_point;
  data->params.left_shift = left_shift;
  QuantizeMultiplierSmallerThanOneExp(real_input1_multiplier, &data->params.input1_multiplier,
                                      &data->params.input1_shift);
  QuantizeMultiplierSmallerThanOneExp(real_input2_multiplier, &data->params.input2_multiplier,
                                      &data->params.input2_shift);
  QuantizeMultiplierSmallerThanOneExp(real_output_multiplier, &data->params.output_multiplier,
                                      &data->params.output_shift);
  CalculateActivationRangeInt8(act, output->scale, output->zero_point, &data->params.act_min,
                               &data->params.act_max);

  data->flat_size = static_cast<int32_t>(out_shape.FlatSize());
  // An empty output takes the flat loop, which then does nothing.
  data->broadcast = data->flat_size > 0 && !SameExtendedShape(input1->shape, input2->shape);
  if (data->broadcast) MakeBroadcastPlan(input1->shape, input2->shape, out_shape, &data->plan);
  return Status::kOk;
}

Status AddEval(OpContext& ctx) {
  // A local copy: stores through int8_t pointers may alias the op data.
  const AddOpData& data = *static_cast<const AddOpData*>(ctx.op_data());
  const AddParams params = data.params;
  const RingBytes in1 = ctx.bytes(ctx.input(0));
  const RingBytes in2 = ctx.bytes(ctx.input(1));
  const RingBytes out = ctx.bytes(ctx.output(0));
  auto row = [&params](const int8_t* a, int32_t s1, const int8_t* b, int32_t s2, int8_t* o,
                       int32_t n) { AddRow(a, s1, b, s2, o, n, params); };
  if (!data.broadcast) {
    BinaryChunks(in1, in2, out, static_cast<uint32_t>(data.flat_size), row);
  } else {
    BroadcastChunks(in1, in2, out, data.plan, row);
  }
  return Status::kOk;
}

}  // namespace

const Kernel kAdd = {AddPrepare, AddEval};

}  // namespace tflm_vmcu

// CONCATENATION: for each outer index, copies one slice of every input in input order
// (TFLM's reference: raw copy; the converter gives inputs and output one scale).
// Unit of work: a chunk of at most kConcatChunk bytes of one slice, read then written.
#include <string.h>

#include "kernels/kernel_util.h"

namespace tflm_vmcu {
namespace {

constexpr int kMaxInputs = 10;  // as TFLM

struct OpData {
  int32_t outer;                    // product of dims before the axis
  int32_t slice_bytes[kMaxInputs];  // bytes of one input slice (dims from the axis on)
};
TFLM_VMCU_ARM32_LAYOUT(OpData, 44, 4);

Status Prepare(OpContext& ctx) {
  Status s = ExpectArity(ctx, 1, kMaxInputs, 1);
  if (s != Status::kOk) return s;
  const Tensor* out = ctx.output(0);
  if (ctx.options().activation != Activation::kNone)
    return ctx.Fail(Status::kUnsupportedType, "fused activation is not supported");
  const int rank = out->shape.rank;
  int axis = ctx.options().axis;
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank)
    return ctx.Fail(Status::kInvalidShape, "axis %d out of range for rank %d", ctx.options().axis,
                    rank);
  const size_t elem = DTypeSize(static_cast<uint8_t>(out->type));
  if (elem == 0)
    return ctx.Fail(Status::kUnsupportedType, "output '%s' has type %s", out->name,
                    DTypeName(static_cast<uint8_t>(out->type)));
  OpData* data = AllocateOpData<OpData>(ctx);
  if (data == nullptr) return Status::kOutOfMemory;
  data->outer = 1;
  for (int d = 0; d < axis; ++d) data->outer *= out->shape.dims[d];
  int32_t axis_sum = 0;
  for (int i = 0; i < ctx.num_inputs(); ++i) {
    const Tensor* in = ctx.input(i);
    if ((s = ExpectType(ctx, in, out->type, "input")) != Status::kOk) return s;
    // As TFLM: int8 inputs are copied without rescaling, so they must share the output's
    // quantisation; int16 ones must have zero point 0.
    if (out->type == DType::kInt8 && (in->scale != out->scale || in->zero_point != out->zero_point))
      return ctx.Fail(Status::kInvalidModel,
                      "input '%s' (scale %f, zero point %d) and output '%s' (scale %f, zero "
                      "point %d) quantisation differ",
                      in->name, static_cast<double>(in->scale), in->zero_point, out->name,
                      static_cast<double>(out->scale), out->zero_point);
    if (out->type == DType::kInt16 && in->zero_point != 0)
      return ctx.Fail(Status::kInvalidModel, "int16 input '%s' has zero point %d, expected 0",
                      in->name, in->zero_point);
    if (in->shape.rank != rank)
      return ctx.Fail(Status::kInvalidShape, "input '%s' has rank %d, output has %d", in->name,
                      in->shape.rank, rank);
    int64_t inner = 1;
    for (int d = 0; d < rank; ++d) {
      if (d != axis && in->shape.dims[d] != out->shape.dims[d])
        return ctx.Fail(Status::kInvalidShape, "input '%s' dim %d is %d, output's is %d", in->name,
                        d, in->shape.dims[d], out->shape.dims[d]);
      if (d >= axis) inner *= in->shape.dims[d];
    }
    axis_sum += in->shape.dims[axis];
    data->slice_bytes[i] = static_cast<int32_t>(inner * static_cast<int64_t>(elem));
  }
  if (axis_sum != out->shape.dims[axis])
    return ctx.Fail(Status::kInvalidShape, "inputs add up to %d along axis %d, output has %d",
                    axis_sum, axis, out->shape.dims[axis]);
  return Status::kOk;
}

Status Eval(OpContext& ctx) {
  const OpData* data = static_cast<const OpData*>(ctx.op_data());
  const RingBytes out = ctx.bytes(ctx.output(0));
  const int n = ctx.num_inputs();
  int8_t scratch[kConcatChunk];
  uint32_t at = 0;
  // Unit = one chunk of one input slice: read it, then write it.
  for (int32_t o = 0; o < data->outer; ++o) {
    for (int i = 0; i < n; ++i) {
      const RingBytes in = ctx.bytes(ctx.input(i));
      const uint32_t bytes = static_cast<uint32_t>(data->slice_bytes[i]);
      const uint32_t from = static_cast<uint32_t>(o) * bytes;
      for (uint32_t k = 0; k < bytes; k += kConcatChunk) {
        const uint32_t m = bytes - k < kConcatChunk ? bytes - k : kConcatChunk;
        out.Store(at + k, in.Read(from + k, m, scratch), m);
      }
      at += bytes;
    }
  }
  return Status::kOk;
}

}  // namespace

const Kernel kConcatenation = {Prepare, Eval};

}  // namespace tflm_vmcu

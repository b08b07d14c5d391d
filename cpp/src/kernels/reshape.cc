// RESHAPE: the bytes are unchanged. Planned in place (same offset) it moves nothing;
// otherwise it copies in units of kReshapeChunk bytes, each read before it is written.
#include <string.h>

#include "kernels/kernel_util.h"

namespace tflm_vmcu {
namespace {

Status Prepare(OpContext& ctx) {
  Status s = ExpectArity(ctx, 1, 2, 1);
  if (s != Status::kOk) return s;
  const Tensor* in = ctx.input(0);
  const Tensor* out = ctx.output(0);
  if ((s = ExpectType(ctx, out, in->type, "output")) != Status::kOk) return s;
  if (in->bytes != out->bytes) {
    return ctx.Fail(Status::kInvalidShape, "input '%s' has %u bytes but output '%s' has %u",
                    in->name, static_cast<unsigned>(in->bytes), out->name,
                    static_cast<unsigned>(out->bytes));
  }
  return Status::kOk;
}

Status Eval(OpContext& ctx) {
  const Tensor* in = ctx.input(0);
  const Tensor* out = ctx.output(0);
  const RingBytes src = ctx.bytes(in);
  if (!in->is_const && in->offset == out->offset) {  // planned in place: nothing moves
    src.Rename(out);
    return Status::kOk;
  }
  // Units of kReshapeChunk bytes: read a chunk, then write it.
  const RingBytes dst = ctx.bytes(out);
  int8_t scratch[kReshapeChunk];
  const uint32_t n = static_cast<uint32_t>(out->bytes);
  for (uint32_t i = 0; i < n; i += kReshapeChunk) {
    const uint32_t m = n - i < kReshapeChunk ? n - i : kReshapeChunk;
    dst.Store(i, src.Read(i, m, scratch), m);
  }
  return Status::kOk;
}

}  // namespace

const Kernel kReshape = {Prepare, Eval};

}  // namespace tflm_vmcu

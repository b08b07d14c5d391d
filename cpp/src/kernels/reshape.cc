// RESHAPE: the bytes are unchanged; copies input to output unless both share memory.
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
  Tensor* out = ctx.output(0);
  if (in->data != out->data) memmove(out->data, in->data, out->bytes);
  return Status::kOk;
}

}  // namespace

const Kernel kReshape = {Prepare, Eval};

}  // namespace tflm_vmcu

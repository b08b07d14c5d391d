#include "kernels/kernel_util.h"

namespace tflm_vmcu {

Status ExpectType(OpContext& ctx, const Tensor* t, DType type, const char* role) {
  if (t == nullptr) return ctx.Fail(Status::kInvalidModel, "missing %s tensor", role);
  if (t->type != type) {
    return ctx.Fail(Status::kUnsupportedType, "%s tensor '%s' has type %s, expected %s", role,
                    t->name, DTypeName(static_cast<uint8_t>(t->type)),
                    DTypeName(static_cast<uint8_t>(type)));
  }
  return Status::kOk;
}

Status ExpectArity(OpContext& ctx, int min_inputs, int max_inputs, int outputs) {
  if (ctx.num_inputs() < min_inputs || ctx.num_inputs() > max_inputs) {
    return ctx.Fail(Status::kInvalidModel, "has %d inputs, expected %d to %d", ctx.num_inputs(),
                    min_inputs, max_inputs);
  }
  if (ctx.num_outputs() != outputs) {
    return ctx.Fail(Status::kInvalidModel, "has %d outputs, expected %d", ctx.num_outputs(),
                    outputs);
  }
  for (int i = 0; i < min_inputs; ++i) {
    if (ctx.input(i) == nullptr) return ctx.Fail(Status::kInvalidModel, "input %d missing", i);
  }
  return Status::kOk;
}

}  // namespace tflm_vmcu

#include "kernels/kernel_util.h"

#include <float.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#include "format.h"

namespace tflm_vmcu {

Status OpContext::Fail(Status status, const char* format, ...) {
  char detail[192];
  va_list args;
  va_start(args, format);
  FormatV(detail, sizeof(detail), format, args);
  va_end(args);
  char message[256];
  Format(message, sizeof(message), "operator %d (%s): %s", op_index_, op_name_, detail);
  return Report(status, message);
}

Status ExpectType(OpContext& ctx, const Tensor* t, DType type, const char* role) {
  if (t == nullptr) return ctx.Fail(Status::kInvalidModel, "missing %s tensor", role);
  if (t->type != type) {
    return ctx.Fail(Status::kUnsupportedType, "%s tensor '%s' has type %s, expected %s", role,
                    t->name, DTypeName(static_cast<uint8_t>(t->type)),
                    DTypeName(static_cast<uint8_t>(type)));
  }
  return Status::kOk;
}

Status ExpectConstant(OpContext& ctx, const Tensor* t, const char* role) {
  if (t->is_const) return Status::kOk;
  return ctx.Fail(Status::kUnsupportedType,
                  "%s tensor '%s' is not constant data in the model: unsupported", role, t->name);
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

Status ExpectInt8Activation(OpContext& ctx, const Tensor* t, const char* role) {
  Status s = ExpectType(ctx, t, DType::kInt8, role);
  if (s != Status::kOk) return s;
  if (t->scale == 0.0f) {
    return ctx.Fail(Status::kUnsupportedType, "%s tensor '%s' is not quantised (scale 0)", role,
                    t->name);
  }
  if (!(t->scale > 0.0f && t->scale <= FLT_MAX)) {
    return ctx.Fail(Status::kInvalidModel,
                    "%s tensor '%s' has scale %f: a quantised activation needs a finite positive "
                    "scale",
                    role, t->name, static_cast<double>(t->scale));
  }
  if (t->channels.count > 1) {
    return ctx.Fail(Status::kUnsupportedType,
                    "%s tensor '%s' is quantised per channel; only per-tensor is supported", role,
                    t->name);
  }
  if (t->zero_point < INT8_MIN || t->zero_point > INT8_MAX) {
    return ctx.Fail(Status::kInvalidModel, "%s tensor '%s' has zero point %d outside int8", role,
                    t->name, t->zero_point);
  }
  return Status::kOk;
}

Status ExpectFusedActivation(OpContext& ctx, Activation a) {
  if (a == Activation::kNone || a == Activation::kRelu || a == Activation::kReluN1To1 ||
      a == Activation::kRelu6) {
    return Status::kOk;
  }
  return ctx.Fail(Status::kUnsupportedType, "fused activation %d is not supported",
                  static_cast<int>(a));
}

Status ExpectAccumulatorFits(OpContext& ctx, const Tensor* bias, int64_t terms) {
  int64_t max_bias = 0;
  if (bias != nullptr && bias->type == DType::kInt32 && bias->is_const) {
    const size_t n = bias->bytes / 4;
    for (size_t i = 0; i < n; ++i) {
      int32_t b;
      memcpy(&b, bias->data + 4 * i, 4);
      const int64_t mag = b < 0 ? -static_cast<int64_t>(b) : b;
      if (mag > max_bias) max_bias = mag;
    }
  }
  const int64_t worst = terms * 255 * 128 + max_bias;
  if (worst > INT32_MAX) {
    return ctx.Fail(Status::kInvalidShape,
                    "%d products plus a bias of up to %d can overflow the int32 accumulator",
                    static_cast<int>(terms > INT32_MAX ? INT32_MAX : terms),
                    static_cast<int>(max_bias > INT32_MAX ? INT32_MAX : max_bias));
  }
  return Status::kOk;
}

}  // namespace tflm_vmcu

// QUANTIZE (float32 -> int8: round(x / scale) + zp; int8 -> int8: requantisation
// through a 256-entry table built in Prepare) and DEQUANTIZE (int8 -> float32:
// scale * (q - zp)). Loop order: flat, element i of the output reads element i of the
// input only. Units (kernels/elementwise.h): chunks of kElementwiseChunk elements (for
// float32 4 bytes per element on that side).
#include <string.h>

#include "kernels/elementwise.h"
#include "kernels/kernel.h"
#include "kernels/kernel_util.h"
#include "kernels/quant_util.h"

namespace tflm_vmcu {
namespace {

// min(hi, max(lo, v)) as TFLM writes it; two selects keep it branch-free (random data
// makes a branchy clamp mispredict).
inline int32_t Clamp(int32_t v, int32_t lo, int32_t hi) {
  v = v > lo ? v : lo;
  return v < hi ? v : hi;
}

struct QuantizeOpData {
  int32_t flat_size;
  float output_scale;  // float32 -> int8
  int32_t output_zero_point;
  const int8_t* table;  // int8 -> int8: output for input q at table[q + 128]
};
TFLM_VMCU_ARM32_LAYOUT(QuantizeOpData, 16, 4);

struct DequantizeOpData {
  int32_t flat_size;
  float scale;
  int32_t zero_point;
};
TFLM_VMCU_ARM32_LAYOUT(DequantizeOpData, 12, 4);

const char* TypeName(const Tensor* t) { return DTypeName(static_cast<uint8_t>(t->type)); }

Status CheckSameSize(OpContext& ctx, const Tensor* input, const Tensor* output) {
  if (input->shape.FlatSize() != output->shape.FlatSize()) {
    return ctx.Fail(Status::kInvalidShape, "input '%s' has %d elements but output '%s' has %d",
                    input->name, static_cast<int>(input->shape.FlatSize()), output->name,
                    static_cast<int>(output->shape.FlatSize()));
  }
  if (output->shape.FlatSize() > INT32_MAX) {
    return ctx.Fail(Status::kInvalidShape, "output '%s' is too large", output->name);
  }
  return Status::kOk;
}

Status QuantizePrepare(OpContext& ctx) {
  Status s = ExpectArity(ctx, 1, 1, 1);
  if (s != Status::kOk) return s;
  const Tensor* input = ctx.input(0);
  const Tensor* output = ctx.output(0);
  if (output == nullptr) return ctx.Fail(Status::kInvalidModel, "missing output tensor");
  const bool from_float = input->type == DType::kFloat32;
  if ((!from_float && input->type != DType::kInt8) || output->type != DType::kInt8) {
    return ctx.Fail(Status::kUnsupportedType,
                    "%s -> %s is not supported (only FLOAT32 -> INT8 and INT8 -> INT8); "
                    "input '%s', output '%s'",
                    TypeName(input), TypeName(output), input->name, output->name);
  }
  if ((s = ExpectInt8Activation(ctx, output, "output")) != Status::kOk) return s;
  if (!from_float && (s = ExpectInt8Activation(ctx, input, "input")) != Status::kOk) return s;
  if ((s = CheckSameSize(ctx, input, output)) != Status::kOk) return s;

  QuantizeOpData* data = AllocateOpData<QuantizeOpData>(ctx);
  if (data == nullptr) return Status::kOutOfMemory;
  data->flat_size = static_cast<int32_t>(output->shape.FlatSize());
  // TFLM keeps the scale as double and casts it back to float: the float scale itself.
  data->output_scale = output->scale;
  data->output_zero_point = output->zero_point;
  data->table = nullptr;
  if (!from_float) {
    // TFLM's PrepareQuantizeReference (quantize_common.cc), then reference_ops::Requantize
    // evaluated once for each of the 256 possible inputs.
    const double effective_scale =
        static_cast<double>(input->scale) / static_cast<double>(output->scale);
    int32_t multiplier;
    int shift;
    if (!QuantizeRequantMultiplier(effective_scale, &multiplier, &shift)) {
      return ctx.Fail(Status::kInvalidModel,
                      "input '%s' scale %f / output '%s' scale %f = %f is outside TFLM's "
                      "requantisation range (finite, magnitude below 2^31)",
                      input->name, static_cast<double>(input->scale), output->name,
                      static_cast<double>(output->scale), effective_scale);
    }
    int8_t* table = AllocateState<int8_t>(ctx, 256);
    if (table == nullptr) return Status::kOutOfMemory;
    for (int32_t q = INT8_MIN; q <= INT8_MAX; ++q) {
      const int32_t value =
          MultiplyByQuantizedMultiplier(q - input->zero_point, multiplier, shift) +
          output->zero_point;
      table[q + 128] = static_cast<int8_t>(Clamp(value, INT8_MIN, INT8_MAX));
    }
    data->table = table;
  }
  return Status::kOk;
}

// static_cast<int32_t>(roundf(x)) as it behaves on x86-64, without the libm call:
// rounding half away from zero, and INT32_MIN for NaN and for values outside the
// int32 range. Below 2^23 in magnitude x - trunc(x) is exact; above, x is integral.
inline int32_t RoundToInt32(float x) {
  if (x > -8388608.0f && x < 8388608.0f) {
    const int32_t t = static_cast<int32_t>(x);
    const float frac = x - static_cast<float>(t);
    return t + (frac >= 0.5f ? 1 : 0) - (frac <= -0.5f ? 1 : 0);
  }
  if (x > -2147483648.0f && x < 2147483648.0f) return static_cast<int32_t>(x);
  return INT32_MIN;
}

// TFLM's reference_ops::AffineQuantize for one value: static_cast<int32_t>(
// TfLiteRound(val / scale)) + zero_point (wrapping like the x86-64 host TFLM runs on),
// then clamp.
inline int8_t QuantizeValue(float val, float scale, int32_t zero_point) {
  const int32_t q = RoundToInt32(val / scale);
  const int32_t unclamped =
      static_cast<int32_t>(static_cast<uint32_t>(q) + static_cast<uint32_t>(zero_point));
  return static_cast<int8_t>(Clamp(unclamped, INT8_MIN, INT8_MAX));
}

// One unit of each conversion. (__restrict only where it helps: a table lookup
// "vectorised" by GCC is slower than the plain loop.)
void QuantizeChunk(const int8_t* in, int8_t* out, uint32_t n, float scale, int32_t zp) {
  for (uint32_t i = 0; i < n; ++i) {
    float v;
    memcpy(&v, in + 4 * i, 4);
    out[i] = QuantizeValue(v, scale, zp);
  }
}

void RequantizeChunk(const int8_t* in, int8_t* out, uint32_t n, const int8_t* table) {
  for (uint32_t i = 0; i < n; ++i) out[i] = table[in[i]];
}

Status QuantizeEval(OpContext& ctx) {
  const QuantizeOpData& d = *static_cast<const QuantizeOpData*>(ctx.op_data());
  const RingBytes in = ctx.bytes(ctx.input(0));
  const RingBytes out = ctx.bytes(ctx.output(0));
  const uint32_t n = static_cast<uint32_t>(d.flat_size);
  if (d.table == nullptr) {
    const float scale = d.output_scale;
    const int32_t zp = d.output_zero_point;
    UnaryChunks<4, 1>(in, out, n, [scale, zp](const int8_t* src, int8_t* dst, uint32_t m) {
      QuantizeChunk(src, dst, m, scale, zp);
    });
    return Status::kOk;
  }
  const int8_t* table = d.table + 128;
  UnaryChunks<1, 1>(in, out, n, [table](const int8_t* src, int8_t* dst, uint32_t m) {
    RequantizeChunk(src, dst, m, table);
  });
  return Status::kOk;
}

Status DequantizePrepare(OpContext& ctx) {
  Status s = ExpectArity(ctx, 1, 1, 1);
  if (s != Status::kOk) return s;
  const Tensor* input = ctx.input(0);
  const Tensor* output = ctx.output(0);
  if (output == nullptr) return ctx.Fail(Status::kInvalidModel, "missing output tensor");
  if (input->type != DType::kInt8 || output->type != DType::kFloat32) {
    return ctx.Fail(Status::kUnsupportedType,
                    "%s -> %s is not supported (only INT8 -> FLOAT32); input '%s', output '%s'",
                    TypeName(input), TypeName(output), input->name, output->name);
  }
  if ((s = ExpectInt8Activation(ctx, input, "input")) != Status::kOk) return s;
  if ((s = CheckSameSize(ctx, input, output)) != Status::kOk) return s;

  DequantizeOpData* data = AllocateOpData<DequantizeOpData>(ctx);
  if (data == nullptr) return Status::kOutOfMemory;
  data->flat_size = static_cast<int32_t>(output->shape.FlatSize());
  data->scale = input->scale;
  data->zero_point = input->zero_point;
  return Status::kOk;
}

// TFLM computes static_cast<float>(double(scale) * (q - zp)). The exact product of a
// float and an integer of at most 9 bits fits in a double, so that is the exact product
// rounded once to float: the same value as the float product used here.
void DequantizeChunk(const int8_t* __restrict in, int8_t* __restrict out, uint32_t n, float scale,
                     int32_t zp) {
  for (uint32_t i = 0; i < n; ++i) {
    const float v = scale * static_cast<float>(in[i] - zp);
    memcpy(out + 4 * i, &v, 4);
  }
}

Status DequantizeEval(OpContext& ctx) {
  const DequantizeOpData& d = *static_cast<const DequantizeOpData*>(ctx.op_data());
  const RingBytes in = ctx.bytes(ctx.input(0));
  const RingBytes out = ctx.bytes(ctx.output(0));
  const float scale = d.scale;
  const int32_t zp = d.zero_point;
  UnaryChunks<1, 4>(in, out, static_cast<uint32_t>(d.flat_size),
                    [scale, zp](const int8_t* src, int8_t* dst, uint32_t m) {
                      DequantizeChunk(src, dst, m, scale, zp);
                    });
  return Status::kOk;
}

}  // namespace

const Kernel kQuantize = {QuantizePrepare, QuantizeEval};
const Kernel kDequantize = {DequantizePrepare, DequantizeEval};

}  // namespace tflm_vmcu

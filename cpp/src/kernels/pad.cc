// PAD: one forward sweep over the output in row-major order, writing the pad value
// (the output zero point) or the matching input element (TFLM's reference PadImpl).
// Unit of work: one innermost output row, after reading its input row.
#include <string.h>

#include "kernels/kernel_util.h"

namespace tflm_vmcu {
namespace {

constexpr int kMaxDims = 5;  // as TFLM

struct OpData {
  int32_t rank;
  int32_t out_dims[kMaxDims];
  int32_t before[kMaxDims];
  int32_t in_dims[kMaxDims];
  int8_t pad_value;
  int32_t elem;  // bytes per element
};
TFLM_VMCU_ARM32_LAYOUT(OpData, 72, 4);

Status Prepare(OpContext& ctx) {
  Status s = ExpectArity(ctx, 2, 2, 1);
  if (s != Status::kOk) return s;
  const Tensor* in = ctx.input(0);
  const Tensor* paddings = ctx.input(1);
  const Tensor* out = ctx.output(0);
  if ((s = ExpectType(ctx, in, DType::kInt8, "input")) != Status::kOk) return s;
  if ((s = ExpectType(ctx, out, DType::kInt8, "output")) != Status::kOk) return s;
  // The padding value is the output's zero point, as in TFLM, which refuses one outside int8.
  if (out->zero_point < INT8_MIN || out->zero_point > INT8_MAX)
    return ctx.Fail(Status::kInvalidModel, "output tensor '%s' has zero point %d outside int8",
                    out->name, out->zero_point);
  const int rank = in->shape.rank;
  if (rank > kMaxDims || out->shape.rank != rank)
    return ctx.Fail(Status::kInvalidShape, "input rank %d, output rank %d (at most %d)", rank,
                    out->shape.rank, kMaxDims);
  if (!paddings->is_const || (paddings->type != DType::kInt32 && paddings->type != DType::kInt64) ||
      paddings->shape.rank != 2 || paddings->shape.dims[0] != rank || paddings->shape.dims[1] != 2)
    return ctx.Fail(Status::kInvalidShape,
                    "paddings '%s' must be a constant int32/int64 tensor of shape [%d, 2]",
                    paddings->name, rank);
  OpData* data = AllocateOpData<OpData>(ctx);
  if (data == nullptr) return Status::kOutOfMemory;
  // Left-align to kMaxDims like TFLM so the sweep has a fixed depth.
  const int lead = kMaxDims - rank;
  for (int d = 0; d < kMaxDims; ++d) {
    data->out_dims[d] = 1;
    data->in_dims[d] = 1;
    data->before[d] = 0;
  }
  for (int d = 0; d < rank; ++d) {
    const int64_t before = LoadPadding(paddings, 2 * d);
    const int64_t after = LoadPadding(paddings, 2 * d + 1);
    if (before < 0 || after < 0 || in->shape.dims[d] + before + after != out->shape.dims[d])
      return ctx.Fail(
          Status::kInvalidShape, "dim %d: input %d padded by (%d, %d) does not give output %d", d,
          in->shape.dims[d], static_cast<int>(before), static_cast<int>(after), out->shape.dims[d]);
    data->before[lead + d] = static_cast<int32_t>(before);
    data->in_dims[lead + d] = in->shape.dims[d];
    data->out_dims[lead + d] = out->shape.dims[d];
  }
  data->rank = rank;
  data->pad_value = static_cast<int8_t>(out->zero_point);
  return Status::kOk;
}

// Writes one output row: `lo` pad bytes, `copy` bytes of `src`, then pad to `n` bytes.
void WriteRow(const RingBytes& dst, uint32_t at, uint32_t n, uint32_t lo, uint32_t copy,
              const int8_t* src, int8_t pad, int8_t* scratch) {
  int8_t* p = dst.BeginWrite(at, n, scratch);
  memset(p, pad, lo);
  if (copy > 0) memcpy(p + lo, src, copy);
  memset(p + lo + copy, pad, n - lo - copy);
  dst.EndWrite(at, n, p);
}

Status Eval(OpContext& ctx) {
  const OpData* p = static_cast<const OpData*>(ctx.op_data());
  const RingBytes in = ctx.bytes(ctx.input(0));
  const RingBytes out = ctx.bytes(ctx.output(0));
  const int32_t* od = p->out_dims;
  const int32_t* b = p->before;
  const int32_t* id = p->in_dims;
  const uint32_t out_row = static_cast<uint32_t>(od[4]);
  const uint32_t in_row = static_cast<uint32_t>(id[4]);
  const bool staged = out_row <= kPadScratch;  // else byte by byte (rows wider than scratch)
  int8_t in_scratch[kPadScratch];
  int8_t out_scratch[kPadScratch];
  uint32_t in_at = 0;
  uint32_t out_at = 0;
  const int8_t* flat_in = reinterpret_cast<const int8_t*>(in.Flat());
  int8_t* flat_out = reinterpret_cast<int8_t*>(out.Flat());
  // Unit = one innermost output row: read its input row (if any), then write it.
  for (int32_t i0 = 0; i0 < od[0]; ++i0) {
    const bool p0 = i0 < b[0] || i0 >= b[0] + id[0];
    for (int32_t i1 = 0; i1 < od[1]; ++i1) {
      const bool p1 = p0 || i1 < b[1] || i1 >= b[1] + id[1];
      for (int32_t i2 = 0; i2 < od[2]; ++i2) {
        const bool p2 = p1 || i2 < b[2] || i2 >= b[2] + id[2];
        for (int32_t i3 = 0; i3 < od[3]; ++i3, out_at += out_row) {
          const bool pad_row = p2 || i3 < b[3] || i3 >= b[3] + id[3];
          const uint32_t lo = pad_row ? out_row : static_cast<uint32_t>(b[4]);
          const uint32_t copy = pad_row ? 0 : in_row;
          if (flat_in != nullptr && flat_out != nullptr) {
            int8_t* dst = flat_out + out_at;
            memset(dst, p->pad_value, lo);
            if (copy > 0) memcpy(dst + lo, flat_in + in_at, copy);
            memset(dst + lo + copy, p->pad_value, out_row - lo - copy);
          } else if (staged) {
            const int8_t* src = copy > 0 ? in.Read(in_at, copy, in_scratch) : nullptr;
            WriteRow(out, out_at, out_row, lo, copy, src, p->pad_value, out_scratch);
          } else {
            for (uint32_t k = 0; k < out_row; ++k) {
              const bool data = k >= lo && k < lo + copy;
              out.WriteByte(out_at + k, data ? in.ReadByte(in_at + k - lo) : p->pad_value);
            }
          }
          in_at += copy;
        }
      }
    }
  }
  return Status::kOk;
}

}  // namespace

const Kernel kPad = {Prepare, Eval};

}  // namespace tflm_vmcu

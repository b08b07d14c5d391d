// TRANSPOSE: walks the output in row-major order, reading input[perm-mapped index].
// Unit of work: one innermost output row, gathered element by element, then written.
#include <string.h>

#include "kernels/kernel_util.h"

namespace tflm_vmcu {
namespace {

struct OpData {
  int32_t rank;
  int32_t out_dims[kMaxRank];
  int32_t in_stride[kMaxRank];  // input stride (elements) of each output dim
};
TFLM_VMCU_ARM32_LAYOUT(OpData, 52, 4);

Status Prepare(OpContext& ctx) {
  Status s = ExpectArity(ctx, 2, 2, 1);
  if (s != Status::kOk) return s;
  const Tensor* in = ctx.input(0);
  const Tensor* perm = ctx.input(1);
  const Tensor* out = ctx.output(0);
  if ((s = ExpectType(ctx, in, DType::kInt8, "input")) != Status::kOk) return s;
  if ((s = ExpectType(ctx, out, DType::kInt8, "output")) != Status::kOk) return s;
  const int rank = in->shape.rank;
  if (!perm->is_const || perm->type != DType::kInt32 || perm->shape.rank != 1 ||
      perm->shape.dims[0] != rank || out->shape.rank != rank)
    return ctx.Fail(Status::kInvalidShape, "perm '%s' must be a constant int32 vector of length %d",
                    perm->name, rank);
  OpData* data = AllocateOpData<OpData>(ctx);
  if (data == nullptr) return Status::kOutOfMemory;
  int32_t stride[kMaxRank];
  int32_t acc = 1;
  for (int d = rank - 1; d >= 0; --d) {
    stride[d] = acc;
    acc *= in->shape.dims[d];
  }
  bool used[kMaxRank] = {};
  for (int d = 0; d < rank; ++d) {
    int32_t p;
    memcpy(&p, perm->data + 4 * d, 4);
    if (p < 0) p += rank;
    if (p < 0 || p >= rank || used[p] || out->shape.dims[d] != in->shape.dims[p])
      return ctx.Fail(Status::kInvalidShape, "perm[%d] = %d does not match the output shape", d, p);
    used[p] = true;
    data->out_dims[d] = out->shape.dims[d];
    data->in_stride[d] = stride[p];
  }
  data->rank = rank;
  return Status::kOk;
}

Status Eval(OpContext& ctx) {
  const OpData* p = static_cast<const OpData*>(ctx.op_data());
  const RingBytes in = ctx.bytes(ctx.input(0));
  const RingBytes out = ctx.bytes(ctx.output(0));
  const int rank = p->rank;
  if (rank == 0) {
    out.WriteByte(0, in.ReadByte(0));
    return Status::kOk;
  }
  const int last = rank - 1;
  const uint32_t row = static_cast<uint32_t>(p->out_dims[last]);
  const uint32_t step = static_cast<uint32_t>(p->in_stride[last]);
  const int64_t total = ctx.output(0)->shape.FlatSize();
  int8_t staged[kTransposeScratch];
  int32_t idx[kMaxRank] = {};
  uint32_t src = 0;
  const int8_t* flat_in = reinterpret_cast<const int8_t*>(in.Flat());
  int8_t* flat_out = reinterpret_cast<int8_t*>(out.Flat());
  // Unit = one innermost output row: gather its input elements, then write the row.
  for (int64_t n = 0; n < total; n += row) {
    const uint32_t at = static_cast<uint32_t>(n);
    if (flat_in != nullptr && flat_out != nullptr) {
      // The plan keeps a row's writes off the bytes it reads: no staging needed.
      const int8_t* from = flat_in + src;
      int8_t* to = flat_out + at;
      for (uint32_t i = 0; i < row; ++i) to[i] = from[i * step];
    } else if (row <= kTransposeScratch) {
      for (uint32_t i = 0; i < row; ++i) staged[i] = in.ReadByte(src + i * step);
      out.Store(at, staged, row);
    } else {
      for (uint32_t i = 0; i < row; ++i) out.WriteByte(at + i, in.ReadByte(src + i * step));
    }
    // Advance the odometer over the outer output dims.
    for (int d = last - 1; d >= 0; --d) {
      src += static_cast<uint32_t>(p->in_stride[d]);
      if (++idx[d] < p->out_dims[d]) break;
      src -= static_cast<uint32_t>(p->in_stride[d] * p->out_dims[d]);
      idx[d] = 0;
    }
  }
  return Status::kOk;
}

}  // namespace

const Kernel kTranspose = {Prepare, Eval};

}  // namespace tflm_vmcu

// MEAN (int8): mean over the axes given by the constant int32 input 1 (negative axes
// allowed, duplicates ignored), keep_dims or not. Loop order: output elements in
// row-major order over the kept dims; for each, its reduced elements are summed in
// row-major order over the reduced dims (int32 accumulator), then rescaled.
//
// The tflite-micro runtime we match sends every int8 MEAN (keep_dims 4D over {1, 2}
// included, and equal input/output quantisation included) through
// reference_ops::QuantizedMeanOrSum with integer rescaling: the count is folded into
// the multiplier and the result is MultiplyByQuantizedMultiplier(sum - count * zp_in)
// + zp_out. Older releases used reference_integer_ops::Mean or a float rescale on some
// paths; those give different roundings and are not reproduced.
//
// Units (cpp/src/ring.h; model in cpp/src/access_order.cc). The sums are
// exact int32 sums, so their order is free:
//  - the input's innermost dim is kept (e.g. NHWC reduced over H, W): a unit is a block
//    of up to kMeanBlock consecutive outputs along the innermost kept dim; it reads the
//    matching run of the input for every reduced position (accumulating per output),
//    then writes the block;
//  - otherwise (the innermost dim is reduced): a unit is one output; it reads its
//    contiguous runs of reduced elements, then writes the output byte.
#include "kernels/dim_list.h"
#include "kernels/kernel.h"
#include "kernels/kernel_util.h"
#include "kernels/quant_util.h"

namespace tflm_vmcu {
namespace {

constexpr uint32_t kMeanBlock = kUnitChunk;  // outputs per unit
constexpr uint32_t kMeanPiece = 256;         // bytes per read view of a contiguous reduced run

// min(hi, max(lo, v)) as TFLM writes it; two selects keep it branch-free (random data
// makes a branchy clamp mispredict).
inline int32_t Clamp(int32_t v, int32_t lo, int32_t hi) {
  v = v > lo ? v : lo;
  return v < hi ? v : hi;
}

using DimList = DimListOf<int32_t>;  // op data: kept small

struct MeanOpData {
  DimList kept;            // output dims, row-major
  DimList reduced;         // summed dims
  int32_t zero_point_sum;  // input zero point * elements summed per output
  int32_t output_zero_point;
  int32_t multiplier;  // input_scale / output_scale / count
  int shift;
};
TFLM_VMCU_ARM32_LAYOUT(MeanOpData, 120, 4);

// Row-major walk over the first `rank` dims of a DimList: `offset` is the input offset
// (in elements) of the current position.
struct Odometer {
  int32_t index[kMaxRank] = {};
  uint32_t offset = 0;

  // Steps to the next position; false (back at the start) after the last one.
  bool Next(const DimList& l, int32_t rank) {
    for (int32_t dim = rank - 1; dim >= 0; --dim) {
      offset += static_cast<uint32_t>(l.strides[dim]);
      if (++index[dim] < l.dims[dim]) return true;
      offset -= static_cast<uint32_t>(l.strides[dim] * l.dims[dim]);
      index[dim] = 0;
    }
    return false;
  }
};

// One output of TFLM's reference_ops::QuantizedMeanOrSum (compute_sum false): the sum
// minus count * zero point, rescaled by a multiplier that includes 1 / count.
inline int8_t MeanOutput(int32_t sum, const MeanOpData& d) {
  const int32_t out = MultiplyByQuantizedMultiplier(sum - d.zero_point_sum, d.multiplier, d.shift) +
                      d.output_zero_point;
  return static_cast<int8_t>(Clamp(out, INT8_MIN, INT8_MAX));
}

Status MeanPrepare(OpContext& ctx) {
  Status s = ExpectArity(ctx, 2, 2, 1);
  if (s != Status::kOk) return s;
  const Tensor* input = ctx.input(0);
  const Tensor* axis = ctx.input(1);
  const Tensor* output = ctx.output(0);
  if ((s = ExpectInt8Activation(ctx, input, "input")) != Status::kOk) return s;
  if ((s = ExpectType(ctx, axis, DType::kInt32, "axis")) != Status::kOk) return s;
  if ((s = ExpectInt8Activation(ctx, output, "output")) != Status::kOk) return s;
  if (axis->shape.FlatSize() > 0 && (!axis->is_const || axis->data == nullptr)) {
    return ctx.Fail(Status::kUnsupportedType, "axis tensor '%s' must be a constant", axis->name);
  }
  if (axis->shape.rank > 1) {
    return ctx.Fail(Status::kInvalidShape, "axis tensor '%s' has rank %d, expected 0 or 1",
                    axis->name, axis->shape.rank);
  }

  const Shape& in_shape = input->shape;
  const int32_t rank = in_shape.rank;
  for (int32_t i = 0; i < rank; ++i) {
    if (in_shape.dims[i] <= 0) {
      return ctx.Fail(Status::kInvalidShape, "input '%s' has empty dimension %d", input->name, i);
    }
  }
  // Keeps every int32 sum (and count * zero point) free of overflow.
  if (in_shape.FlatSize() > INT32_MAX / 256) {
    return ctx.Fail(Status::kInvalidShape, "input '%s' is too large", input->name);
  }

  // TFLM's reference_ops::ResolveAxis: negative axes wrap, duplicates are dropped, and
  // a scalar input ignores the axes.
  const int32_t num_axis = static_cast<int32_t>(axis->shape.FlatSize());
  bool reduced_dim[kMaxRank] = {};
  for (int32_t i = 0; i < num_axis; ++i) {
    int32_t a;
    memcpy(&a, axis->data + 4 * i, 4);
    if (rank == 0) continue;
    const int32_t resolved = a < 0 ? a + rank : a;
    if (resolved < 0 || resolved >= rank) {
      return ctx.Fail(Status::kInvalidShape, "axis %d is out of range for input '%s' of rank %d", a,
                      input->name, rank);
    }
    reduced_dim[resolved] = true;
  }

  // Expected output shape; kept and reduced dims with their input strides.
  const bool keep_dims = ctx.options().keep_dims;
  Shape expected;
  DimList kept;
  DimList reduced;
  int32_t strides[kMaxRank];
  int32_t step = 1;
  for (int32_t i = rank - 1; i >= 0; --i) {
    strides[i] = step;
    step *= in_shape.dims[i];
  }
  int64_t num_elements = 1;
  for (int32_t i = 0; i < rank; ++i) {
    if (reduced_dim[i]) {
      reduced.Append(in_shape.dims[i], strides[i]);
      num_elements *= in_shape.dims[i];
      if (keep_dims) expected.dims[expected.rank++] = 1;
    } else {
      kept.Append(in_shape.dims[i], strides[i]);
      expected.dims[expected.rank++] = in_shape.dims[i];
    }
  }
  if (output->shape.rank != expected.rank) {
    return ctx.Fail(Status::kInvalidShape, "output '%s' has rank %d, expected %d (keep_dims %d)",
                    output->name, output->shape.rank, expected.rank, keep_dims ? 1 : 0);
  }
  for (int32_t i = 0; i < expected.rank; ++i) {
    if (output->shape.dims[i] != expected.dims[i]) {
      return ctx.Fail(Status::kInvalidShape, "output '%s' has dim %d = %d, expected %d",
                      output->name, i, output->shape.dims[i], expected.dims[i]);
    }
  }

  MeanOpData* data = AllocateOpData<MeanOpData>(ctx);
  if (data == nullptr) return Status::kOutOfMemory;
  data->kept = kept;
  data->reduced = reduced;
  data->zero_point_sum = static_cast<int32_t>(input->zero_point * num_elements);
  data->output_zero_point = output->zero_point;

  // TFLM's PrepareSimple, then QuantizedMeanOrSum folds 1 / count into the multiplier.
  const double real_multiplier =
      static_cast<double>(input->scale) / static_cast<double>(output->scale);
  int32_t multiplier;
  int shift;
  const bool defined = QuantizeMultiplier(real_multiplier, &multiplier, &shift);
  int count_shift = 0;  // 63 - CountLeadingZeros(count), i.e. floor(log2(count))
  while ((uint64_t{1} << (count_shift + 1)) <= static_cast<uint64_t>(num_elements)) {
    ++count_shift;
  }
  if (count_shift > 32) count_shift = 32;
  if (count_shift > 31 + shift) count_shift = 31 + shift;
  data->multiplier =
      static_cast<int32_t>((static_cast<int64_t>(multiplier) << count_shift) / num_elements);
  data->shift = shift - count_shift;
  if (!defined || data->shift > kMaxLeftShift) {
    return ctx.Fail(Status::kInvalidModel,
                    "input '%s' scale %f / output '%s' scale %f = %f is outside TFLM's "
                    "requantisation range (finite, below 2^31 times the element count)",
                    input->name, static_cast<double>(input->scale), output->name,
                    static_cast<double>(output->scale), real_multiplier);
  }
  return Status::kOk;
}

// The input's innermost dim is kept (stride 1): units of kMeanBlock outputs along it.
void MeanBlocks(const RingBytes& in, const RingBytes& out, const MeanOpData& d) {
  const DimList& k = d.kept;
  const DimList& r = d.reduced;
  const int32_t outer_rank = k.rank - 1;
  const uint32_t inner = static_cast<uint32_t>(k.dims[outer_rank]);
  int32_t acc[kMeanBlock];
  int8_t in_scratch[kMeanBlock];
  Odometer kept;
  uint32_t out_at = 0;
  do {
    for (uint32_t i0 = 0; i0 < inner; i0 += kMeanBlock) {
      const uint32_t m = inner - i0 < kMeanBlock ? inner - i0 : kMeanBlock;
      for (uint32_t j = 0; j < m; ++j) acc[j] = 0;
      Odometer red;
      do {
        const int8_t* p = in.Read(kept.offset + i0 + red.offset, m, in_scratch);
        for (uint32_t j = 0; j < m; ++j) acc[j] += p[j];
      } while (red.Next(r, r.rank));
      int8_t result[kMeanBlock];  // a local: its stores cannot alias the op data
      for (uint32_t j = 0; j < m; ++j) result[j] = MeanOutput(acc[j], d);
      out.Store(out_at + i0, result, m);
    }
    out_at += inner;
  } while (kept.Next(k, outer_rank));
}

// The input's innermost dim is reduced (or there is one element): one output per unit,
// its innermost reduced runs read in views of up to kMeanPiece bytes.
void MeanSingles(const RingBytes& in, const RingBytes& out, const MeanOpData& d) {
  const DimList& k = d.kept;
  const DimList& r = d.reduced;
  const int32_t outer_rank = r.rank > 0 ? r.rank - 1 : 0;
  const uint32_t run = r.rank > 0 ? static_cast<uint32_t>(r.dims[outer_rank]) : 1;
  const uint32_t step = r.rank > 0 ? static_cast<uint32_t>(r.strides[outer_rank]) : 1;
  int8_t scratch[kMeanPiece];
  Odometer kept;
  uint32_t out_at = 0;
  do {
    int32_t sum = 0;
    Odometer red;
    do {
      const uint32_t at = kept.offset + red.offset;
      if (step == 1) {
        for (uint32_t c0 = 0; c0 < run; c0 += kMeanPiece) {
          const uint32_t m = run - c0 < kMeanPiece ? run - c0 : kMeanPiece;
          const int8_t* p = in.Read(at + c0, m, scratch);
          for (uint32_t j = 0; j < m; ++j) sum += p[j];
        }
      } else {  // not reached: the innermost non-unit input dim has stride 1
        for (uint32_t j = 0; j < run; ++j) sum += in.ReadByte(at + j * step);
      }
    } while (red.Next(r, outer_rank));
    out.WriteByte(out_at++, MeanOutput(sum, d));
  } while (kept.Next(k, k.rank));
}

Status MeanEval(OpContext& ctx) {
  const MeanOpData& d = *static_cast<const MeanOpData*>(ctx.op_data());
  const RingBytes in = ctx.bytes(ctx.input(0));
  const RingBytes out = ctx.bytes(ctx.output(0));
  if (d.kept.rank > 0 && d.kept.strides[d.kept.rank - 1] == 1) {
    MeanBlocks(in, out, d);
  } else {
    MeanSingles(in, out, d);
  }
  return Status::kOk;
}

}  // namespace

const Kernel kMean = {MeanPrepare, MeanEval};

}  // namespace tflm_vmcu

// MEAN (int8): mean over the axes given by the constant int32 input 1 (negative axes
// allowed, duplicates ignored), keep_dims or not. Loop order: output elements in
// row-major order over the kept dims; for each, its reduced elements are summed in
// row-major order over the reduced dims (int32 accumulator), then rescaled.
#include "kernels/kernel.h"
#include "kernels/kernel_util.h"
#include "kernels/quant_util.h"

namespace tflm_vmcu {
namespace {

// TFLM (micro/kernels/reduce_common.cc) picks one of three int8 implementations.
enum class MeanPath : uint8_t {
  // keep_dims, 4D input, axis tensor exactly {1, 2} or {2, 1}:
  // reference_integer_ops::Mean (integer rescale, then rounded division by the count).
  kSpecial4D,
  // Same input/output scale and zero point: reference_ops::Mean (truncating division).
  kSameQuant,
  // Otherwise: reference_ops::QuantizedMeanOrSum (float rescale).
  kRequant,
};

// A set of dims of the input as extents and input strides (in elements), after dropping
// unit dims and merging dims that are contiguous in the input.
struct DimList {
  int32_t rank = 0;
  int32_t dims[kMaxRank] = {};
  int32_t strides[kMaxRank] = {};

  void Append(int32_t dim, int32_t stride) {
    if (dim == 1) return;
    if (rank > 0 && strides[rank - 1] == stride * dim) {
      dims[rank - 1] *= dim;
      strides[rank - 1] = stride;
      return;
    }
    dims[rank] = dim;
    strides[rank] = stride;
    ++rank;
  }
};

struct MeanOpData {
  MeanPath path;
  DimList kept;     // output dims, row-major
  DimList reduced;  // summed dims
  int32_t num_elements;  // elements summed per output
  int32_t input_zero_point;
  int32_t output_zero_point;
  int32_t multiplier;  // kSpecial4D
  int shift;
  float scale;  // kRequant
  float bias;
};

// Sums the reduced elements starting at `base`: odometer over the outer reduced dims,
// tight strided loop over the innermost one.
inline int32_t SumReduced(const int8_t* base, const DimList& r) {
  if (r.rank == 0) return *base;
  const int32_t last = r.rank - 1;
  const int32_t inner = r.dims[last];
  const int32_t step = r.strides[last];
  int32_t index[kMaxRank] = {};
  int32_t offset = 0;
  int32_t sum = 0;
  for (;;) {
    const int8_t* p = base + offset;
    for (int32_t i = 0; i < inner; ++i) {
      sum += *p;
      p += step;
    }
    int32_t dim = last - 1;
    for (; dim >= 0; --dim) {
      offset += r.strides[dim];
      if (++index[dim] < r.dims[dim]) break;
      offset -= r.strides[dim] * r.dims[dim];
      index[dim] = 0;
    }
    if (dim < 0) return sum;
  }
}

// reference_integer_ops::Mean, per output.
inline int8_t MeanSpecial4D(int32_t sum, const MeanOpData& d) {
  const int32_t n = d.num_elements;
  // TFLM accumulates (q - zp) per element; the int32 sums are identical.
  int32_t acc = sum - n * d.input_zero_point;
  acc = MultiplyByQuantizedMultiplier(acc, d.multiplier, d.shift);
  acc = acc > 0 ? (acc + n / 2) / n : (acc - n / 2) / n;
  acc += d.output_zero_point;
  return static_cast<int8_t>(ClampInt32(acc, INT8_MIN, INT8_MAX));
}

// reference_ops::Mean<int8_t, int32_t>, per output: C++ division truncates.
inline int8_t MeanSameQuant(int32_t sum, const MeanOpData& d) {
  return static_cast<int8_t>(sum / d.num_elements);
}

// reference_ops::QuantizedMeanOrSum<int8_t, int32_t> (compute_sum false), per output.
inline int8_t MeanRequant(int32_t sum, const MeanOpData& d) {
  const float float_mean = static_cast<float>(sum) / static_cast<float>(d.num_elements);
  float result = RoundHalfAwayFromZeroF(float_mean * d.scale + d.bias) +
                 static_cast<float>(d.output_zero_point);
  if (result > 127.0f) result = 127.0f;
  if (result < -128.0f) result = -128.0f;
  return static_cast<int8_t>(result);
}

Status MeanPrepare(OpContext& ctx) {
  Status s = ExpectArity(ctx, 2, 2, 1);
  if (s != Status::kOk) return s;
  const Tensor* input = ctx.input(0);
  const Tensor* axis = ctx.input(1);
  const Tensor* output = ctx.output(0);
  if ((s = ExpectType(ctx, input, DType::kInt8, "input")) != Status::kOk) return s;
  if ((s = ExpectType(ctx, axis, DType::kInt32, "axis")) != Status::kOk) return s;
  if ((s = ExpectType(ctx, output, DType::kInt8, "output")) != Status::kOk) return s;
  const Tensor* quantized[2] = {input, output};
  for (const Tensor* t : quantized) {
    if (!(t->scale > 0.0f) || t->channels.count > 1) {
      return ctx.Fail(Status::kUnsupportedType,
                      "tensor '%s' must be quantised per tensor (scale %f, %d channels)",
                      t->name, static_cast<double>(t->scale), t->channels.count);
    }
    if (t->zero_point < -128 || t->zero_point > 127) {
      return ctx.Fail(Status::kUnsupportedType, "tensor '%s' has zero point %d outside int8",
                      t->name, t->zero_point);
    }
  }
  if (!axis->is_const || axis->data == nullptr) {
    return ctx.Fail(Status::kUnsupportedType, "axis tensor '%s' must be a constant",
                    axis->name);
  }
  if (axis->shape.rank > 1) {
    return ctx.Fail(Status::kInvalidShape, "axis tensor '%s' has rank %d, expected 0 or 1",
                    axis->name, axis->shape.rank);
  }

  const Shape& in_shape = input->shape;
  const int32_t rank = in_shape.rank;
  for (int32_t i = 0; i < rank; ++i) {
    if (in_shape.dims[i] <= 0) {
      return ctx.Fail(Status::kInvalidShape, "input '%s' has empty dimension %d",
                      input->name, i);
    }
  }
  if (in_shape.FlatSize() > INT32_MAX / 256) {
    return ctx.Fail(Status::kInvalidShape, "input '%s' is too large", input->name);
  }

  // TFLM's reference_ops::ResolveAxis: negative axes wrap, duplicates are dropped, and
  // a scalar input ignores the axes.
  const int32_t num_axis = static_cast<int32_t>(axis->shape.FlatSize());
  int32_t raw_axes[kMaxRank * 2];
  if (num_axis > kMaxRank * 2) {
    return ctx.Fail(Status::kInvalidShape, "axis tensor '%s' has %d entries", axis->name,
                    num_axis);
  }
  bool reduced_dim[kMaxRank] = {};
  for (int32_t i = 0; i < num_axis; ++i) {
    int32_t a;
    memcpy(&a, axis->data + 4 * i, 4);
    raw_axes[i] = a;
    if (rank == 0) continue;
    const int32_t resolved = a < 0 ? a + rank : a;
    if (resolved < 0 || resolved >= rank) {
      return ctx.Fail(Status::kInvalidShape, "axis %d is out of range for input '%s' of rank %d",
                      a, input->name, rank);
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
  if (expected != output->shape) {
    return ctx.Fail(Status::kInvalidShape,
                    "output '%s' has rank %d and %d elements, expected rank %d and %d elements",
                    output->name, output->shape.rank,
                    static_cast<int>(output->shape.FlatSize()), expected.rank,
                    static_cast<int>(expected.FlatSize()));
  }

  MeanOpData* data = AllocateOpData<MeanOpData>(ctx);
  if (data == nullptr) return Status::kOutOfMemory;
  data->kept = kept;
  data->reduced = reduced;
  data->num_elements = static_cast<int32_t>(num_elements);
  data->input_zero_point = input->zero_point;
  data->output_zero_point = output->zero_point;

  // TFLM's EvalMean path selection uses the raw axis values, before resolution.
  const bool special_case_4d_axes_1_and_2 =
      rank == 4 && num_axis == 2 &&
      ((raw_axes[0] == 1 && raw_axes[1] == 2) || (raw_axes[0] == 2 && raw_axes[1] == 1));
  if (keep_dims && special_case_4d_axes_1_and_2) {
    data->path = MeanPath::kSpecial4D;
    // TFLM's PrepareSimple.
    const double real_multiplier =
        static_cast<double>(input->scale) / static_cast<double>(output->scale);
    QuantizeMultiplier(real_multiplier, &data->multiplier, &data->shift);
  } else if (input->zero_point == output->zero_point && input->scale == output->scale) {
    data->path = MeanPath::kSameQuant;
  } else {
    data->path = MeanPath::kRequant;
    data->scale = input->scale / output->scale;
    data->bias = static_cast<float>(-input->zero_point) * data->scale;
  }
  return Status::kOk;
}

template <int8_t (*Finish)(int32_t, const MeanOpData&)>
void MeanLoop(const int8_t* in, int8_t* out, const MeanOpData& d) {
  const DimList& k = d.kept;
  if (k.rank == 0) {
    *out = Finish(SumReduced(in, d.reduced), d);
    return;
  }
  const int32_t last = k.rank - 1;
  const int32_t inner = k.dims[last];
  const int32_t step = k.strides[last];
  int32_t index[kMaxRank] = {};
  int32_t offset = 0;
  for (;;) {
    const int8_t* p = in + offset;
    for (int32_t i = 0; i < inner; ++i) {
      *out++ = Finish(SumReduced(p, d.reduced), d);
      p += step;
    }
    int32_t dim = last - 1;
    for (; dim >= 0; --dim) {
      offset += k.strides[dim];
      if (++index[dim] < k.dims[dim]) break;
      offset -= k.strides[dim] * k.dims[dim];
      index[dim] = 0;
    }
    if (dim < 0) return;
  }
}

Status MeanEval(OpContext& ctx) {
  const MeanOpData& d = *static_cast<const MeanOpData*>(ctx.op_data());
  const int8_t* in = ctx.input(0)->Data<int8_t>();
  int8_t* out = ctx.output(0)->Data<int8_t>();
  switch (d.path) {
    case MeanPath::kSpecial4D:
      MeanLoop<MeanSpecial4D>(in, out, d);
      break;
    case MeanPath::kSameQuant:
      MeanLoop<MeanSameQuant>(in, out, d);
      break;
    case MeanPath::kRequant:
      MeanLoop<MeanRequant>(in, out, d);
      break;
  }
  return Status::kOk;
}

}  // namespace

const Kernel kMean = {MeanPrepare, MeanEval};

}  // namespace tflm_vmcu

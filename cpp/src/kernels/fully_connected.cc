// FULLY_CONNECTED int8 (TFLM reference FullyConnected / FullyConnectedPerChannel): loop order
// batch > out_channel, each output byte reading its input row and filter row in order.
//
// Unit of work (cpp/src/ring.h; model: cpp/src/access_order.cc): one batch row: its input
// row is read through one view, then its output_depth bytes are written. When the input wraps
// and its row is longer than the scratch, each output byte reads the row again through chunked
// views (TFLM's own order: the same displacement bound). The DSP loops take two batch rows as
// one unit where both are read in place (kernels/dsp_pairs.h): reads earlier and writes later
// than row by row, so the same displacement stays safe.
#include <math.h>

#include "kernels/dsp.h"
#include "kernels/dsp_pairs.h"
#include "kernels/kernel.h"
#include "kernels/kernel_util.h"
#include "kernels/quant_util.h"

namespace tflm_vmcu {
namespace {

constexpr int kInScratch = 512;  // input row bytes staged when a row view wraps
constexpr int kOutChunk = 256;   // output bytes staged when the output wraps

struct FullyConnectedData {
  // Per-channel filters: one multiplier/shift per output channel; nullptr when per-tensor.
  const int32_t* channel_multiplier;
  const int32_t* channel_shift;
  int32_t multiplier;     // per-tensor
  int32_t shift;          // per-tensor, > 0 shifts left (TFLM's convention)
  int32_t input_offset;   // -input zero point
  int32_t filter_offset;  // -filter zero point (per-tensor only, as in TFLM)
  int32_t output_offset;  // output zero point
  int16_t act_min;  // the activation range lies in int8: two halfwords leave room for the flag
  int16_t act_max;
  int32_t batches;
  int32_t accum_depth;
  int32_t output_depth;
  bool right_shift_only;  // every channel passes RightShiftOnly (quant_util.h)
};
TFLM_VMCU_ARM32_LAYOUT(FullyConnectedData, 48, 4);

// sum((w + w_offset) * (x + x_offset)). Both operands are int8 shifted by minus an int8 zero
// point, so each fits in int16; the fixed-size inner block lets compilers vectorise the
// int16 x int16 -> int32 multiply-adds even at -O2.
template <bool kFilterOffset>
inline int32_t Dot(const int8_t* x, const int8_t* w, int n, int32_t x_offset, int32_t w_offset) {
  constexpr int kBlock = 16;
  const int16_t xo = static_cast<int16_t>(x_offset);
  const int16_t wo = static_cast<int16_t>(kFilterOffset ? w_offset : 0);
  int32_t acc = 0;
  int i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    for (int j = 0; j < kBlock; ++j) {
      const int16_t wv = kFilterOffset ? static_cast<int16_t>(w[i + j] + wo) : w[i + j];
      acc += static_cast<int16_t>(x[i + j] + xo) * wv;
    }
  }
  for (; i < n; ++i) acc += (w[i] + (kFilterOffset ? w_offset : 0)) * (x[i] + x_offset);
  return acc;
}

inline int8_t Requantize(const FullyConnectedData& d, int32_t acc, const int32_t* bias_data,
                         int oc) {
  if (bias_data != nullptr) acc += bias_data[oc];
#if TFLM_VMCU_DSP
  acc = d.channel_multiplier != nullptr
            ? dsp::MultiplyByQuantizedMultiplier(acc, d.channel_multiplier[oc], d.channel_shift[oc])
            : dsp::MultiplyByQuantizedMultiplier(acc, d.multiplier, d.shift);
#else
  acc = d.channel_multiplier != nullptr
            ? MultiplyByQuantizedMultiplier(acc, d.channel_multiplier[oc], d.channel_shift[oc])
            : MultiplyByQuantizedMultiplier(acc, d.multiplier, d.shift);
#endif
  acc += d.output_offset;
  acc = acc < d.act_min ? d.act_min : acc;
  acc = acc > d.act_max ? d.act_max : acc;
  return static_cast<int8_t>(acc);
}

#if TFLM_VMCU_DSP
// Output channels whose sums are accumulated at a time (the DSP loops' int32 sums on the stack).
constexpr int kChannelBlock = 32;

// The DSP loops for output channels [q, q + m) of one batch row into dst (w: filter row q), in
// blocks of up to kChannelBlock channels whose sums start from the bias and are requantised
// together (kernels/dsp.h). Without a filter offset, the input row is extended into `extended`
// in runs of up to kInScratch values: by the caller, once for the whole row, when
// `extended_once` (x may then be the buffer's upper half, overwritten by then except for the
// int8 tail the loops read), else here per block (x is then the input tensor itself).
inline void RowOutputs(const FullyConnectedData& d, const int8_t* x, const int8_t* w,
                       const int32_t* bias, int q, int m, uint32_t* extended, bool extended_once,
                       int8_t* dst) {
  const int n = d.accum_depth;
  for (int b = 0; b < m; b += kChannelBlock) {
    const int oc = q + b;
    const int channels = m - b < kChannelBlock ? m - b : kChannelBlock;
    const int8_t* w_b = w + static_cast<size_t>(b) * n;
    int32_t acc[kChannelBlock];
    const int32_t* init = bias != nullptr ? bias + oc : nullptr;  // sums start from the bias
    if (d.filter_offset != 0) {
      for (int i = 0; i < channels; ++i) acc[i] = init != nullptr ? init[i] : 0;
      int k = 0;
      for (; k + 2 <= channels; k += 2) {
        const int8_t* w_k = w_b + static_cast<size_t>(k) * n;
        dsp::Dot2<true>(x, w_k, w_k + n, n, d.input_offset, d.filter_offset, acc + k);
      }
      if (k < channels) {
        acc[k] +=
            dsp::Dot<true>(x, w_b + static_cast<size_t>(k) * n, n, d.input_offset, d.filter_offset);
      }
    } else if (d.output_depth <= dsp::kFewRows) {
      dsp::AddDots(x, n, d.input_offset, w_b, n, channels, init, acc);
    } else if (extended_once) {
      dsp::AddDotsExtended(extended, x, n, d.input_offset, w_b, n, channels, init, acc);
    } else {
      for (int c = 0; c < n; c += kInScratch) {  // n > kInScratch: at least two runs
        const int len = n - c < kInScratch ? n - c : kInScratch;
        dsp::Extend(x + c, len, d.input_offset, extended);
        dsp::AddDotsExtended(extended, x + c, len, d.input_offset, w_b + c, n, channels,
                             c == 0 ? init : acc, acc);
      }
    }
    if (d.channel_multiplier != nullptr) {
      dsp::RequantizeBlock(acc, channels, d.channel_multiplier + oc, d.channel_shift + oc, 1,
                           d.output_offset, d.act_min, d.act_max, dst + b, d.right_shift_only);
    } else {
      dsp::RequantizeBlock(acc, channels, &d.multiplier, &d.shift, 0, d.output_offset, d.act_min,
                           d.act_max, dst + b, d.right_shift_only);
    }
  }
}
#endif

Status FullyConnectedPrepare(OpContext& ctx) {
  Status s = ExpectArity(ctx, 2, 3, 1);
  if (s != Status::kOk) return s;
  const OpOptions& opt = ctx.options();
  const Tensor* input = ctx.input(0);
  const Tensor* filter = ctx.input(1);
  const Tensor* bias = ctx.num_inputs() > 2 ? ctx.input(2) : nullptr;
  const Tensor* output = ctx.output(0);
  if ((s = ExpectInt8Activation(ctx, input, "input")) != Status::kOk) return s;
  if ((s = ExpectInt8Activation(ctx, output, "output")) != Status::kOk) return s;
  if ((s = ExpectType(ctx, filter, DType::kInt8, "filter")) != Status::kOk) return s;
  if (bias != nullptr && (s = ExpectType(ctx, bias, DType::kInt32, "bias")) != Status::kOk) {
    return s;
  }
  if ((s = ExpectConstant(ctx, filter, "filter")) != Status::kOk) return s;
  if (bias != nullptr && (s = ExpectConstant(ctx, bias, "bias")) != Status::kOk) return s;
  const Activation act = opt.activation;
  if (act != Activation::kNone && act != Activation::kRelu && act != Activation::kReluN1To1 &&
      act != Activation::kRelu6) {
    return ctx.Fail(Status::kUnsupportedType, "fused activation %d is not supported",
                    static_cast<int>(act));
  }
  if (opt.weights_format != 0) {
    return ctx.Fail(Status::kUnsupportedType, "weights format %d is not supported (only DEFAULT)",
                    static_cast<int>(opt.weights_format));
  }

  // Filter [output_depth, accum_depth]; the input is read as [batches, accum_depth].
  if (filter->shape.rank != 2 || filter->shape.dims[0] <= 0 || filter->shape.dims[1] <= 0) {
    return ctx.Fail(Status::kInvalidShape, "filter '%s' must be 2-D and non-empty (rank %d)",
                    filter->name, filter->shape.rank);
  }
  const int32_t output_depth = filter->shape.dims[0];
  const int32_t accum_depth = filter->shape.dims[1];
  const int64_t input_size = input->shape.FlatSize();
  if (input_size % accum_depth != 0) {
    return ctx.Fail(Status::kInvalidShape,
                    "input '%s' has %d elements, not a multiple of the filter depth %d",
                    input->name, static_cast<int>(input_size), accum_depth);
  }
  const int64_t batches = input_size / accum_depth;
  if (output->shape.rank < 1 || output->shape.dims[output->shape.rank - 1] != output_depth ||
      output->shape.FlatSize() != batches * output_depth) {
    return ctx.Fail(Status::kInvalidShape,
                    "output '%s' has %d elements and last dimension %d, expected %d x %d",
                    output->name, static_cast<int>(output->shape.FlatSize()),
                    output->shape.rank > 0 ? output->shape.dims[output->shape.rank - 1] : 0,
                    static_cast<int>(batches), output_depth);
  }
  if (bias != nullptr && bias->shape.FlatSize() != output_depth) {
    return ctx.Fail(Status::kInvalidShape, "bias '%s' has %d elements, expected %d", bias->name,
                    static_cast<int>(bias->shape.FlatSize()), output_depth);
  }

  s = ExpectAccumulatorFits(ctx, bias, accum_depth);
  if (s != Status::kOk) return s;
  FullyConnectedData* data = AllocateOpData<FullyConnectedData>(ctx);
  if (data == nullptr) return Status::kOutOfMemory;
  const ChannelQuant& q = filter->channels;
  if (q.count > 1) {
    // TFLM's CalculateOpDataFullyConnected, per-channel branch.
    if (q.count != output_depth || q.quantized_dimension != 0) {
      return ctx.Fail(Status::kUnsupportedType,
                      "filter '%s' has %d scales along dimension %d, expected 1 or %d along "
                      "dimension 0",
                      filter->name, q.count, q.quantized_dimension, output_depth);
    }
    const size_t n = static_cast<size_t>(output_depth);
    int32_t* multiplier = AllocateState<int32_t>(ctx, n);
    int32_t* shift = AllocateState<int32_t>(ctx, n);
    if (multiplier == nullptr || shift == nullptr) return Status::kOutOfMemory;
    const double input_scale = static_cast<double>(input->scale);
    const double output_scale = static_cast<double>(output->scale);
    for (int32_t c = 0; c < output_depth; ++c) {
      const double filter_scale = static_cast<double>(q.Scale(c));
      const double effective_scale = input_scale * filter_scale / output_scale;
      int channel_shift = 0;
      if (!QuantizeRequantMultiplier(effective_scale, &multiplier[c], &channel_shift)) {
        return ctx.Fail(Status::kInvalidModel,
                        "channel %d: input scale %f * filter '%s' scale %f / output scale %f = %f "
                        "is outside TFLM's requantisation range (finite, magnitude below 2^31)",
                        c, input_scale, filter->name, filter_scale, output_scale, effective_scale);
      }
      shift[c] = channel_shift;
    }
    data->channel_multiplier = multiplier;
    data->channel_shift = shift;
    data->filter_offset = 0;  // symmetric per-channel weights: TFLM ignores the zero point
  } else {
    // TFLM's GetQuantizedConvolutionMultipler: the bias scale must match input * filter scale,
    // and the multiplier uses the product of the two scales in double precision (a float
    // product rounds differently and flips an output LSB now and then).
    if (!(filter->scale > 0.0f)) {
      return ctx.Fail(Status::kUnsupportedType, "filter '%s' is not quantised (scale %f)",
                      filter->name, static_cast<double>(filter->scale));
    }
    if (filter->zero_point < INT8_MIN || filter->zero_point > INT8_MAX) {
      return ctx.Fail(Status::kInvalidModel, "filter '%s' has zero point %d outside int8",
                      filter->name, filter->zero_point);
    }
    if (bias != nullptr) {
      const double product_scale =
          static_cast<double>(input->scale) * static_cast<double>(filter->scale);
      const double scale_diff = fabs(product_scale - static_cast<double>(bias->scale));
      if (scale_diff / static_cast<double>(output->scale) > 0.02) {
        return ctx.Fail(Status::kInvalidModel,
                        "bias '%s' scale %f does not match input scale * filter scale %f",
                        bias->name, static_cast<double>(bias->scale), product_scale);
      }
    }
    const double real_multiplier = static_cast<double>(input->scale) *
                                   static_cast<double>(filter->scale) /
                                   static_cast<double>(output->scale);
    int shift = 0;
    if (!QuantizeRequantMultiplier(real_multiplier, &data->multiplier, &shift)) {
      return ctx.Fail(Status::kInvalidModel,
                      "input scale %f * filter '%s' scale %f / output scale %f = %f is outside "
                      "TFLM's requantisation range (finite, magnitude below 2^31)",
                      static_cast<double>(input->scale), filter->name,
                      static_cast<double>(filter->scale), static_cast<double>(output->scale),
                      real_multiplier);
    }
    data->shift = shift;
    data->channel_multiplier = nullptr;
    data->channel_shift = nullptr;
    data->filter_offset = -filter->zero_point;
  }
  data->input_offset = -input->zero_point;
  data->output_offset = output->zero_point;
  int32_t act_min = 0;
  int32_t act_max = 0;
  CalculateActivationRangeInt8(act, output->scale, output->zero_point, &act_min, &act_max);
  data->act_min = static_cast<int16_t>(act_min);
  data->act_max = static_cast<int16_t>(act_max);
  data->right_shift_only =
      data->channel_multiplier != nullptr
          ? AllRightShiftOnly(data->channel_multiplier, data->channel_shift, output_depth)
          : RightShiftOnly(data->multiplier, data->shift);
  data->batches = static_cast<int32_t>(batches);
  data->accum_depth = accum_depth;
  data->output_depth = output_depth;
  return Status::kOk;
}

Status FullyConnectedEval(OpContext& ctx) {
  const FullyConnectedData& d = *static_cast<const FullyConnectedData*>(ctx.op_data());
  const Tensor* bias = ctx.num_inputs() > 2 ? ctx.input(2) : nullptr;
  const RingBytes in = ctx.bytes(ctx.input(0));
  const RingBytes out = ctx.bytes(ctx.output(0));
  const int8_t* filter = ctx.input(1)->Data<int8_t>();
  const int32_t* bias_data = bias != nullptr ? bias->Data<int32_t>() : nullptr;
  const int batches = d.batches;
  const int accum_depth = d.accum_depth;
  const int output_depth = d.output_depth;
  const int32_t input_offset = d.input_offset;
  const int32_t filter_offset = d.filter_offset;
  // One view per input row unless a wrapping row could exceed the scratch.
  const bool row_views = in.Contiguous() || accum_depth <= kInScratch;
  const int out_step = out.Contiguous() ? output_depth : kOutChunk;
#if TFLM_VMCU_DSP
  // Input values extended to 16-bit (x + offset) pairs for SMLAD (dsp::Extend); the int8 read
  // scratch is the buffer's upper half: extending it front to back overwrites only bytes
  // already extended.
  uint32_t extended[kInScratch / 2];
  int8_t* const in_scratch = reinterpret_cast<int8_t*>(extended) + kInScratch;
#else
  int8_t in_scratch[kInScratch];
#endif
  int8_t out_scratch[kOutChunk];

#if TFLM_VMCU_DSP
  // Two batch rows at a time (kernels/dsp_pairs.h) where both are read in place and written
  // at once: the pair is then the unit of work, which only delays writes.
  const bool pairs = filter_offset == 0 && accum_depth <= dsp::kPairPatch;
  const dsp::OutputScale scale =
      d.channel_multiplier != nullptr
          ? dsp::OutputScale{d.channel_multiplier, d.channel_shift, 1,
                             d.output_offset,      d.act_min,       d.act_max,
                             d.right_shift_only}
          : dsp::OutputScale{&d.multiplier, &d.shift,          0, d.output_offset, d.act_min,
                             d.act_max,     d.right_shift_only};
#endif

  for (int b = 0; b < batches; ++b) {
    const uint32_t in_at = static_cast<uint32_t>(b) * accum_depth;
    const uint32_t out_at = static_cast<uint32_t>(b) * output_depth;
#if TFLM_VMCU_DSP
    if (pairs && b + 1 < batches && !in.Wraps(in_at, 2 * accum_depth) &&
        (2 * output_depth <= kOutChunk || !out.Wraps(out_at, 2 * output_depth))) {
      const int8_t* xa = in.Read(in_at, 2 * accum_depth, in_scratch);  // never staged
      const int8_t* xb = xa + accum_depth;
      int8_t tails[2][4];
      dsp::ExtendPair(xa, xb, accum_depth, input_offset, extended, tails);
      in.ReadsDone();
      int8_t* dst = out.BeginWrite(out_at, 2 * output_depth, out_scratch);
      dsp::PairOutputs(extended, tails, accum_depth, input_offset, filter, accum_depth,
                       output_depth, bias_data, scale, dst, dst + output_depth);
      out.EndWrite(out_at, 2 * output_depth, dst);
      ++b;
      continue;
    }
#endif
    if (row_views) {
      const int8_t* x = in.Read(in_at, accum_depth, in_scratch);
#if TFLM_VMCU_DSP
      const bool extended_once =
          filter_offset == 0 && accum_depth <= kInScratch && output_depth > dsp::kFewRows;
      if (extended_once) dsp::Extend(x, accum_depth, input_offset, extended);
#endif
      for (int q = 0; q < output_depth; q += out_step) {
        const int m = output_depth - q < out_step ? output_depth - q : out_step;
        int8_t* dst = out.BeginWrite(out_at + q, m, out_scratch);
        const int8_t* w = filter + static_cast<size_t>(q) * accum_depth;
#if TFLM_VMCU_DSP
        RowOutputs(d, x, w, bias_data, q, m, extended, extended_once, dst);
#else
        for (int oc = q; oc < q + m; ++oc, w += accum_depth) {
          const int32_t acc = filter_offset == 0
                                  ? Dot<false>(x, w, accum_depth, input_offset, 0)
                                  : Dot<true>(x, w, accum_depth, input_offset, filter_offset);
          dst[oc - q] = Requantize(d, acc, bias_data, oc);
        }
#endif
        out.EndWrite(out_at + q, m, dst);
      }
    } else {
      // Each output byte reads the row again through views of at most kInScratch bytes and
      // is written on its own (TFLM's order). A plain loop here keeps Dot inlined in one
      // place only (a second inlined copy stops GCC vectorising the first).
      const int8_t* w = filter;
      for (int oc = 0; oc < output_depth; ++oc, w += accum_depth) {
        int32_t acc = 0;
        for (int i = 0; i < accum_depth; i += kInScratch) {
          const int n = accum_depth - i < kInScratch ? accum_depth - i : kInScratch;
          const int8_t* x = in.Read(in_at + i, n, in_scratch);
#if TFLM_VMCU_DSP
          acc += filter_offset == 0 ? dsp::Dot<false>(x, w + i, n, input_offset, 0)
                                    : dsp::Dot<true>(x, w + i, n, input_offset, filter_offset);
#else
          for (int k = 0; k < n; ++k) acc += (w[i + k] + filter_offset) * (x[k] + input_offset);
#endif
        }
        out.WriteByte(out_at + oc, Requantize(d, acc, bias_data, oc));
      }
    }
  }
  return Status::kOk;
}

}  // namespace

const Kernel kFullyConnected = {FullyConnectedPrepare, FullyConnectedEval};

}  // namespace tflm_vmcu

// CONV_2D int8 (TFLM reference ConvPerChannel): loop order batch > out_y > out_x > out_channel,
// each output byte reading its receptive field (filter_y > filter_x > in_channel of its group).
//
// Unit of work (cpp/src/ring.h; model: cpp/src/access_order.cc): one output pixel. Its
// receptive field is read first (all channels of every valid tap), then its out_channels
// bytes are written. Receptive fields of <= kMaxPatch bytes are gathered into a patch through
// one read view per valid filter row (per tap with horizontal dilation); larger ones are read
// through one view of the window's span when the input does not wrap, and otherwise, per
// output byte, through chunked views (TFLM's own order: the same displacement bound).
// The DSP loops (kernels/dsp_pairs.h) take two consecutive pixels as one unit: both receptive
// fields are read before either pixel is written. That only moves reads earlier and writes
// later than one pixel at a time does, so the model's displacement stays safe.
#include <string.h>

#include "kernels/conv_common.h"
#include "kernels/dsp.h"
#include "kernels/dsp_pairs.h"
#include "kernels/kernel.h"
#include "kernels/kernel_util.h"
#include "kernels/quant_util.h"

namespace tflm_vmcu {
namespace {

// Stack bytes for one gathered receptive field (see GatherPatch); also the read scratch of
// the chunked path.
constexpr int kMaxPatch = 512;
// Output bytes staged at a time when the output tensor wraps around the pool end.
constexpr int kOutChunk = 256;

Status ConvPrepare(OpContext& ctx) {
  Status s = ExpectArity(ctx, 2, 3, 1);
  if (s != Status::kOk) return s;
  const OpOptions& opt = ctx.options();
  const Tensor* input = ctx.input(0);
  const Tensor* filter = ctx.input(1);
  const Tensor* bias = ctx.num_inputs() > 2 ? ctx.input(2) : nullptr;
  const Tensor* output = ctx.output(0);
  if ((s = CheckConvOperands(ctx)) != Status::kOk) return s;
  const int32_t batches = input->shape.dims[0];
  const int32_t in_h = input->shape.dims[1];
  const int32_t in_w = input->shape.dims[2];
  const int32_t in_d = input->shape.dims[3];
  const int32_t out_d = filter->shape.dims[0];
  const int32_t f_h = filter->shape.dims[1];
  const int32_t f_w = filter->shape.dims[2];
  const int32_t f_in_d = filter->shape.dims[3];
  if (out_d <= 0 || f_h <= 0 || f_w <= 0 || f_in_d <= 0) {
    return ctx.Fail(Status::kInvalidShape, "filter '%s' has an empty dimension", filter->name);
  }
  // Grouped convolution as in TFLM: input channels are a multiple of the filter's.
  if (in_d < f_in_d || in_d % f_in_d != 0 || out_d % (in_d / f_in_d) != 0) {
    return ctx.Fail(Status::kInvalidShape,
                    "input has %d channels, filter '%s' has %d input and %d output channels "
                    "(need input channels = groups * filter channels, output channels "
                    "divisible by groups)",
                    in_d, filter->name, f_in_d, out_d);
  }
  const int32_t out_h = ComputeOutSize(opt.padding, in_h, f_h, opt.stride_h, opt.dilation_h);
  const int32_t out_w = ComputeOutSize(opt.padding, in_w, f_w, opt.stride_w, opt.dilation_w);
  if (out_h <= 0 || out_w <= 0) {
    return ctx.Fail(Status::kInvalidShape,
                    "filter %dx%d with dilation %dx%d does not fit the %dx%d input", f_h, f_w,
                    opt.dilation_h, opt.dilation_w, in_h, in_w);
  }
  if (output->shape.dims[0] != batches || output->shape.dims[1] != out_h ||
      output->shape.dims[2] != out_w || output->shape.dims[3] != out_d) {
    return ctx.Fail(Status::kInvalidShape,
                    "output '%s' has shape [%d,%d,%d,%d], expected [%d,%d,%d,%d]", output->name,
                    output->shape.dims[0], output->shape.dims[1], output->shape.dims[2],
                    output->shape.dims[3], batches, out_h, out_w, out_d);
  }
  if (bias != nullptr && bias->shape.FlatSize() != out_d) {
    return ctx.Fail(Status::kInvalidShape, "bias '%s' has %d elements, expected %d", bias->name,
                    static_cast<int>(bias->shape.FlatSize()), out_d);
  }

  s = ExpectAccumulatorFits(
      ctx, bias,
      static_cast<int64_t>(filter->shape.dims[1]) * filter->shape.dims[2] * filter->shape.dims[3]);
  if (s != Status::kOk) return s;
  ConvData* data = AllocateOpData<ConvData>(ctx);
  if (data == nullptr) return Status::kOutOfMemory;
  const int32_t* multiplier = nullptr;
  const int32_t* shift = nullptr;
  s = ComputeChannelMultipliers(ctx, *input, *filter, *output, out_d, 0, &multiplier, &shift);
  if (s != Status::kOk) return s;
  data->multiplier = multiplier;
  data->shift = shift;
  data->right_shift_only = AllRightShiftOnly(multiplier, shift, out_d);
  data->input_offset = -input->zero_point;
  data->output_offset = output->zero_point;
  SetActivationRange(opt.activation, *output, data);
  data->pad_h = ComputePadding(opt.stride_h, opt.dilation_h, in_h, f_h, out_h);
  data->pad_w = ComputePadding(opt.stride_w, opt.dilation_w, in_w, f_w, out_w);
  return Status::kOk;
}

// Copies the receptive field of one output pixel into `patch` in [filter_y][filter_x][in_d]
// order (all input channels of each tap), reading the input through one view per valid filter
// row (dil_w == 1) or per valid tap. Padding taps get the input zero point, whose
// (x - zero_point) term is 0: the same sum as TFLM skipping those taps.
inline void GatherPatch(const RingBytes& in, uint32_t batch_at, int in_y_origin, int in_x_origin,
                        int fy_start, int fy_end, int fx_start, int fx_end, int f_h, int f_w,
                        int in_d, int in_row_stride, int dil_h, int dil_w, int8_t pad_value,
                        int8_t* patch) {
  const int row_bytes = f_w * in_d;
  for (int fy = 0; fy < f_h; ++fy, patch += row_bytes) {
    if (fy < fy_start || fy >= fy_end || fx_start >= fx_end) {
      memset(patch, pad_value, row_bytes);
      continue;
    }
    const uint32_t row_at = batch_at + (in_y_origin + dil_h * fy) * in_row_stride;
    memset(patch, pad_value, fx_start * in_d);
    if (dil_w == 1) {
      int8_t* dst = patch + fx_start * in_d;
      const uint32_t n = (fx_end - fx_start) * in_d;
      const int8_t* src = in.Read(row_at + (in_x_origin + fx_start) * in_d, n, dst);
      if (src != dst) memcpy(dst, src, n);
    } else {
      for (int fx = fx_start; fx < fx_end; ++fx) {
        int8_t* dst = patch + fx * in_d;
        const int8_t* src = in.Read(row_at + (in_x_origin + dil_w * fx) * in_d, in_d, dst);
        if (src != dst) memcpy(dst, src, in_d);
      }
    }
    memset(patch + fx_end * in_d, pad_value, (f_w - fx_end) * in_d);
  }
}

// DotWithOffset over input bytes [at, at + n) read through views of at most `chunk` bytes
// (for input tensors that wrap around the pool end).
inline int32_t ViewDot(const RingBytes& in, uint32_t at, int n, const int8_t* w, int32_t x_offset,
                       int8_t* scratch, int chunk) {
  int32_t acc = 0;
  for (int i = 0; i < n; i += chunk) {
    const int m = n - i < chunk ? n - i : chunk;
    acc += DotWithOffset(in.Read(at + i, m, scratch), w + i, m, x_offset);
  }
  return acc;
}

// Writes output bytes [at, at + n) = value(0..n-1) in pieces of `step` bytes (all of them
// when the output does not wrap).
template <typename F>
inline void WriteBytes(const RingBytes& out, uint32_t at, int n, int step, int8_t* scratch,
                       F value) {
  for (int q = 0; q < n; q += step) {
    const int m = n - q < step ? n - q : step;
    int8_t* dst = out.BeginWrite(at + q, m, scratch);
    for (int i = 0; i < m; ++i) dst[i] = value(q + i);
    out.EndWrite(at + q, m, dst);
  }
}

#if TFLM_VMCU_DSP
// Output channels whose sums are accumulated at a time (the DSP loops' int32 sums on the stack).
constexpr int kChannelBlock = 32;

// WriteBytes for the DSP loops: for blocks of up to kChannelBlock output channels,
// sums(oc, channels, acc) sets acc[0 .. channels) to the sums of channels oc .. oc + channels - 1
// (bias included), and the block is requantised.
template <typename Sums>
inline void WriteBlocks(const RingBytes& out, uint32_t at, int n, int step, int8_t* scratch,
                        Sums sums, const ConvData& d) {
  for (int q = 0; q < n; q += step) {
    const int m = n - q < step ? n - q : step;
    int8_t* dst = out.BeginWrite(at + q, m, scratch);
    for (int b = 0; b < m; b += kChannelBlock) {
      const int oc = q + b;
      const int channels = m - b < kChannelBlock ? m - b : kChannelBlock;
      int32_t acc[kChannelBlock];
      sums(oc, channels, acc);
      dsp::RequantizeBlock(acc, channels, d.multiplier + oc, d.shift + oc, 1, d.output_offset,
                           d.act_min, d.act_max, dst + b, d.right_shift_only);
    }
    out.EndWrite(at + q, m, dst);
  }
}
#endif

Status ConvEval(OpContext& ctx) {
  const ConvData& d = *static_cast<const ConvData*>(ctx.op_data());
  const OpOptions& opt = ctx.options();
  const Tensor& input = *ctx.input(0);
  const Tensor& filter = *ctx.input(1);
  const Tensor* bias = ctx.num_inputs() > 2 ? ctx.input(2) : nullptr;
  const Tensor& output = *ctx.output(0);

  const int batches = input.shape.dims[0];
  const int in_h = input.shape.dims[1];
  const int in_w = input.shape.dims[2];
  const int in_d = input.shape.dims[3];
  const int out_d = filter.shape.dims[0];
  const int f_h = filter.shape.dims[1];
  const int f_w = filter.shape.dims[2];
  const int f_in_d = filter.shape.dims[3];
  const int out_h = output.shape.dims[1];
  const int out_w = output.shape.dims[2];
  const int groups = in_d / f_in_d;
  const int filters_per_group = out_d / groups;
  const int stride_h = opt.stride_h;
  const int stride_w = opt.stride_w;
  const int dil_h = opt.dilation_h;
  const int dil_w = opt.dilation_w;
  const int filter_row_stride = f_w * f_in_d;
  const int filter_oc_stride = f_h * filter_row_stride;
  const int in_row_stride = in_w * in_d;
  const int taps = f_h * f_w;
  // Small receptive fields (all channels of all taps) are gathered once per pixel, so each
  // output channel is one dot product over the whole filter (one group); larger ones run a
  // dot product per filter row.
  const bool use_patch = taps * in_d <= kMaxPatch;
  // With unit horizontal dilation and one group, the valid taps of a filter row are one
  // contiguous run of (taps * channels) bytes in both the input row and the filter.
  const bool contiguous_rows = dil_w == 1 && groups == 1;
  // A 1xN window without padding is one run of input bytes: read it in place.
  const bool single_run = f_h == 1 && dil_w == 1;

  const RingBytes in = ctx.bytes(&input);
  const RingBytes out = ctx.bytes(&output);
  const bool in_flat = in.Contiguous();
  const int out_step = out.Contiguous() ? out_d : kOutChunk;
  const int8_t* filter_data = filter.Data<int8_t>();
  const int32_t* bias_data = bias != nullptr ? bias->Data<int32_t>() : nullptr;
  const int32_t* multiplier = d.multiplier;
  const int32_t* shift = d.shift;
  const int32_t input_offset = d.input_offset;
  const int8_t pad_value = static_cast<int8_t>(-input_offset);
  const int32_t output_offset = d.output_offset;
  const int32_t act_min = d.act_min;
  const int32_t act_max = d.act_max;
  auto requantize = [&](int32_t acc, int oc) {
    if (bias_data != nullptr) acc += bias_data[oc];
#if TFLM_VMCU_DSP
    acc = dsp::MultiplyByQuantizedMultiplier(acc, multiplier[oc], shift[oc]);
#else
    acc = MultiplyByQuantizedMultiplier(acc, multiplier[oc], shift[oc]);
#endif
    acc += output_offset;
    acc = acc < act_min ? act_min : acc;
    acc = acc > act_max ? act_max : acc;
    return static_cast<int8_t>(acc);
  };
#if TFLM_VMCU_DSP
  // Input runs of up to kMaxPatch values extended to 16-bit (x + offset) pairs for SMLAD
  // (dsp::Extend). The int8 patch is the buffer's upper half: extending the patch front to
  // back overwrites only bytes already extended.
  uint32_t extended[kMaxPatch / 2];
  int8_t* const patch = reinterpret_cast<int8_t*>(extended) + kMaxPatch;
#else
  int8_t patch[kMaxPatch];
#endif
  int8_t out_scratch[kOutChunk];

#if TFLM_VMCU_DSP
  if (use_patch && groups == 1) {
    // Pixels in raster order, two at a time where the receptive field fits the pair loops
    // (dsp_pairs.h). The unit of work is then the pair: both receptive fields are read
    // before either pixel's bytes are written, which only delays writes (a write never
    // lands earlier than one pixel at a time would have it).
    const int n = filter_oc_stride;
    const int pixels = batches * out_h * out_w;
    // Pixel p's receptive field, all channels of every tap: read in place when it is one run
    // of input bytes, else gathered into `buf`.
    auto pixel_patch = [&](int p, int8_t* buf) -> const int8_t* {
      const int out_x = p % out_w;
      const int out_y = (p / out_w) % out_h;
      const uint32_t batch_at = static_cast<uint32_t>(p / (out_w * out_h)) * in_h * in_row_stride;
      const int in_y_origin = out_y * stride_h - d.pad_h;
      const int in_x_origin = out_x * stride_w - d.pad_w;
      int fy_start, fy_end, fx_start, fx_end;
      ValidTaps(in_y_origin, dil_h, f_h, in_h, &fy_start, &fy_end);
      ValidTaps(in_x_origin, dil_w, f_w, in_w, &fx_start, &fx_end);
      if (single_run && fx_start == 0 && fx_end == f_w && fy_start < fy_end) {
        return in.Read(batch_at + in_y_origin * in_row_stride + in_x_origin * in_d, f_w * in_d,
                       buf);
      }
      GatherPatch(in, batch_at, in_y_origin, in_x_origin, fy_start, fy_end, fx_start, fx_end, f_h,
                  f_w, in_d, in_row_stride, dil_h, dil_w, pad_value, buf);
      return buf;
    };
    // The pair's receptive fields, gathered after its extended words in the same buffer.
    static_assert(sizeof(extended) == dsp::kPairBuffer, "pairs fit the extension buffer");
    int8_t* const pair_patch_a = reinterpret_cast<int8_t*>(extended) + 4 * dsp::kPairPatch;
    int8_t* const pair_patch_b = pair_patch_a + dsp::kPairPatch;
    const dsp::OutputScale scale = {d.multiplier, d.shift,           1, d.output_offset, d.act_min,
                                    d.act_max,    d.right_shift_only};
    const bool few_channels = out_d <= dsp::kFewRows;
    for (int p = 0; p < pixels;) {
      const uint32_t at = static_cast<uint32_t>(p) * out_d;
      if (n <= dsp::kPairPatch && p + 1 < pixels &&
          (2 * out_d <= kOutChunk || !out.Wraps(at, 2 * out_d))) {
        const int8_t* xa = pixel_patch(p, pair_patch_a);
        const int8_t* xb = pixel_patch(p + 1, pair_patch_b);
        int8_t tails[2][4];
        dsp::ExtendPair(xa, xb, n, input_offset, extended, tails);
        in.ReadsDone();
        int8_t* dst = out.BeginWrite(at, 2 * out_d, out_scratch);
        dsp::PairOutputs(extended, tails, n, input_offset, filter_data, n, out_d, bias_data, scale,
                         dst, dst + out_d);
        out.EndWrite(at, 2 * out_d, dst);
        p += 2;
        continue;
      }
      // One pixel. With more than a few output channels, its input is extended once for all
      // of them; from there on, x holds only its int8 tail (bytes from n & ~3), the rest is in
      // `extended`.
      const int8_t* x = pixel_patch(p, patch);
      if (!few_channels) dsp::Extend(x, n, input_offset, extended);
      WriteBlocks(
          out, at, out_d, out_step, out_scratch,
          [&](int oc, int channels, int32_t* acc) {
            const int8_t* w = filter_data + static_cast<size_t>(oc) * n;
            const int32_t* init = bias_data != nullptr ? bias_data + oc : nullptr;
            if (few_channels) {
              dsp::AddDots(x, n, input_offset, w, n, channels, init, acc);
            } else {
              dsp::AddDotsExtended(extended, x, n, input_offset, w, n, channels, init, acc);
            }
          },
          d);
      ++p;
    }
    return Status::kOk;
  }
#endif

  uint32_t out_at = 0;
  for (int b = 0; b < batches; ++b) {
    const uint32_t batch_at = static_cast<uint32_t>(b) * in_h * in_row_stride;
    for (int out_y = 0; out_y < out_h; ++out_y) {
      const int in_y_origin = out_y * stride_h - d.pad_h;
      int fy_start, fy_end;
      ValidTaps(in_y_origin, dil_h, f_h, in_h, &fy_start, &fy_end);
      for (int out_x = 0; out_x < out_w; ++out_x, out_at += out_d) {
        const int in_x_origin = out_x * stride_w - d.pad_w;
        int fx_start, fx_end;
        ValidTaps(in_x_origin, dil_w, f_w, in_w, &fx_start, &fx_end);
        const bool any = fy_start < fy_end && fx_start < fx_end;
        const int fy_stop = any ? fy_end : fy_start;  // rows to read
        // Input byte of the first valid tap of the top valid row (the unit's lowest read).
        const uint32_t lo = batch_at + (in_y_origin + dil_h * fy_start) * in_row_stride +
                            (in_x_origin + dil_w * fx_start) * in_d;
        const int run = any ? (fx_end - fx_start) * f_in_d : 0;
        if (use_patch) {
          const int8_t* x = patch;
          if (single_run && fx_start == 0 && fx_end == f_w && any) {
            x = in.Read(lo, f_w * in_d, patch);
          } else {
            GatherPatch(in, batch_at, in_y_origin, in_x_origin, fy_start, fy_end, fx_start, fx_end,
                        f_h, f_w, in_d, in_row_stride, dil_h, dil_w, pad_value, patch);
          }
          if (groups == 1) {
            WriteBytes(out, out_at, out_d, out_step, out_scratch, [&](int oc) {
              const int8_t* w_oc = filter_data + static_cast<size_t>(oc) * filter_oc_stride;
              return requantize(DotWithOffset(x, w_oc, filter_oc_stride, input_offset), oc);
            });
          } else {
            WriteBytes(out, out_at, out_d, out_step, out_scratch, [&](int oc) {
              const int8_t* w_oc = filter_data + static_cast<size_t>(oc) * filter_oc_stride;
              const int8_t* x_g = x + (oc / filters_per_group) * f_in_d;
              int32_t acc = 0;
              for (int t = 0; t < taps; ++t) {
                acc += DotWithOffset(x_g + t * in_d, w_oc + t * f_in_d, f_in_d, input_offset);
              }
              return requantize(acc, oc);
            });
          }
        } else if (in_flat) {
          // One view from the first to the last valid tap of the window (the input does not
          // wrap: the scratch is never used).
          const int row_step = dil_h * in_row_stride;
          const int col_step = dil_w * in_d;
          const int span = (fy_stop - 1 - fy_start) * row_step + (fx_end - 1 - fx_start) * col_step;
          const int8_t* win = any ? in.Read(lo, span + in_d, patch) : nullptr;
#if TFLM_VMCU_DSP
          if (groups == 1) {
            // Per block of output channels, each run of valid taps (a row's, or each tap's with
            // dilation) is extended in pieces of up to kMaxPatch values (the input does not
            // wrap: the patch is free).
            const int taps_per_row = contiguous_rows ? 1 : fx_end - fx_start;
            const int tap_run = contiguous_rows ? run : in_d;
            const int8_t* w_first = filter_data + fy_start * filter_row_stride + fx_start * in_d;
            WriteBlocks(
                out, out_at, out_d, out_step, out_scratch,
                [&](int oc, int channels, int32_t* acc) {
                  const int8_t* w_oc = w_first + static_cast<size_t>(oc) * filter_oc_stride;
                  // The first run adds to the bias, the others to acc.
                  const int32_t* init = bias_data != nullptr ? bias_data + oc : nullptr;
                  for (int r = 0; r < fy_stop - fy_start; ++r) {
                    for (int t = 0; t < taps_per_row; ++t) {
                      const int8_t* x = win + r * row_step + t * col_step;
                      const int8_t* w = w_oc + r * filter_row_stride + t * in_d;
                      for (int c = 0; c < tap_run; c += kMaxPatch) {
                        const int len = tap_run - c < kMaxPatch ? tap_run - c : kMaxPatch;
                        dsp::Extend(x + c, len, input_offset, extended);
                        dsp::AddDotsExtended(extended, x + c, len, input_offset, w + c,
                                             filter_oc_stride, channels, init, acc);
                        init = acc;
                      }
                    }
                  }
                  if (init != acc) {  // no valid tap
                    for (int i = 0; i < channels; ++i) acc[i] = init != nullptr ? init[i] : 0;
                  }
                },
                d);
            continue;
          }
#endif
          WriteBytes(out, out_at, out_d, out_step, out_scratch, [&](int oc) {
            const int8_t* w_oc = filter_data + static_cast<size_t>(oc) * filter_oc_stride;
            const int g_off = (oc / filters_per_group) * f_in_d;
            int32_t acc = 0;
            for (int fy = fy_start; fy < fy_stop; ++fy) {
              const int8_t* in_row = win + (fy - fy_start) * row_step;
              const int8_t* w_row = w_oc + fy * filter_row_stride;
              if (contiguous_rows) {
                acc += DotWithOffset(in_row, w_row + fx_start * f_in_d, run, input_offset);
              } else {
                for (int fx = fx_start; fx < fx_end; ++fx) {
                  acc += DotWithOffset(in_row + (fx - fx_start) * col_step + g_off,
                                       w_row + fx * f_in_d, f_in_d, input_offset);
                }
              }
            }
            return requantize(acc, oc);
          });
        } else {
          // The input wraps: TFLM's order, each output byte reading its receptive field
          // through chunked views (the patch is the read scratch).
          for (int oc = 0; oc < out_d; ++oc) {
            const int8_t* w_oc = filter_data + static_cast<size_t>(oc) * filter_oc_stride;
            const int g_off = (oc / filters_per_group) * f_in_d;
            // A group other than the first starts reading past the pixel's first byte: read
            // that byte too, so every unit reads from `lo` as the access model says.
            if (g_off != 0 && any) (void)in.ReadByte(lo);
            int32_t acc = 0;
            for (int fy = fy_start; fy < fy_stop; ++fy) {
              const uint32_t row_at = batch_at + (in_y_origin + dil_h * fy) * in_row_stride;
              const int8_t* w_row = w_oc + fy * filter_row_stride;
              if (contiguous_rows) {
                acc += ViewDot(in, row_at + (in_x_origin + fx_start) * in_d, run,
                               w_row + fx_start * f_in_d, input_offset, patch, kMaxPatch);
              } else {
                for (int fx = fx_start; fx < fx_end; ++fx) {
                  acc += ViewDot(in, row_at + (in_x_origin + dil_w * fx) * in_d + g_off, f_in_d,
                                 w_row + fx * f_in_d, input_offset, patch, kMaxPatch);
                }
              }
            }
            out.WriteByte(out_at + oc, requantize(acc, oc));
          }
        }
      }
    }
  }
  return Status::kOk;
}

}  // namespace

const Kernel kConv2D = {ConvPrepare, ConvEval};

}  // namespace tflm_vmcu

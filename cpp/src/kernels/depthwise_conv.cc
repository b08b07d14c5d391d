// DEPTHWISE_CONV_2D int8 (TFLM reference DepthwiseConvPerChannel): loop order batch > out_y >
// out_x > in_channel > multiplier.
//
// Unit of work (cpp/src/ring.h; model: cpp/src/access_order.cc): for depth multiplier 1,
// one block of kChannelBlock channels of one output pixel: the block's channels of every valid
// tap are read (one view from the first to the last valid tap when the input does not wrap,
// else one view per tap), then the block's output bytes are written. For a multiplier > 1, one
// input channel of one output pixel: its taps are read, then its `multiplier` outputs written
// (each output byte reading the taps again when the input wraps: TFLM's order).
#include "kernels/conv_common.h"
#include "kernels/dsp.h"
#include "kernels/kernel.h"
#include "kernels/kernel_util.h"
#include "kernels/quant_util.h"

namespace tflm_vmcu {
namespace {

constexpr int kChannelBlock = kWindowChannelBlock;

Status DepthwisePrepare(OpContext& ctx) {
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
  const int32_t f_h = filter->shape.dims[1];
  const int32_t f_w = filter->shape.dims[2];
  const int32_t out_d = filter->shape.dims[3];
  if (filter->shape.dims[0] != 1 || f_h <= 0 || f_w <= 0 || out_d <= 0) {
    return ctx.Fail(Status::kInvalidShape,
                    "filter '%s' has shape [%d,%d,%d,%d], expected "
                    "[1,height,width,channels]",
                    filter->name, filter->shape.dims[0], f_h, f_w, out_d);
  }
  if (opt.depth_multiplier <= 0 || int64_t{in_d} * opt.depth_multiplier != out_d) {
    return ctx.Fail(Status::kInvalidShape,
                    "input channels %d * depth multiplier %d != filter '%s' channels %d", in_d,
                    opt.depth_multiplier, filter->name, out_d);
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

  s = ExpectAccumulatorFits(ctx, bias,
                            static_cast<int64_t>(filter->shape.dims[1]) * filter->shape.dims[2]);
  if (s != Status::kOk) return s;
  ConvData* data = AllocateOpData<ConvData>(ctx);
  if (data == nullptr) return Status::kOutOfMemory;
  const int32_t* multiplier = nullptr;
  const int32_t* shift = nullptr;
  s = ComputeChannelMultipliers(ctx, *input, *filter, *output, out_d, 3, &multiplier, &shift);
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

#if TFLM_VMCU_DSP
// The DSP form of MacWindow below (kernels/dsp.h): acc[0..n) = bias[0..n) (0 without a bias) +
// the taps of one channel block of one window. With the whole window in view (`win`), four
// channels at a time over all taps, their sums in registers; a window that wraps around the
// pool end (win null) is read tap by tap through views at input byte `at` + offset.
inline void MacWindowDsp(const RingBytes& in, const int8_t* win, uint32_t at, int rows, int cols,
                         int row_step, int col_step, const int8_t* w, int w_row_stride,
                         int w_col_stride, int n, int32_t offset, int8_t* scratch,
                         const int32_t* bias, int32_t* acc) {
  if (win != nullptr && rows > 0 && cols > 0) {
    dsp::DepthwiseWindow(win, w, n, rows, cols, row_step, col_step, w_row_stride, w_col_stride,
                         offset, bias, acc);
    return;
  }
  for (int i = 0; i < n; ++i) acc[i] = bias != nullptr ? bias[i] : 0;
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      const int rel = r * row_step + c * col_step;
      const int8_t* x = in.Read(at + rel, n, scratch);
      dsp::DepthwiseTap(x, w + r * w_row_stride + c * w_col_stride, n, offset, acc);
    }
  }
}
#else
// acc[i] += w[i] * (x[i] + offset) over a full block: the constant trip count lets compilers
// vectorise even at -O2 (operands fit in int16, so the products widen int16 -> int32).
inline void MacFullBlock(const int8_t* x, const int8_t* w, int16_t offset, int32_t* acc) {
  for (int i = 0; i < kChannelBlock; ++i) {
    acc[i] += static_cast<int16_t>(x[i] + offset) * static_cast<int16_t>(w[i]);
  }
}

inline void MacPartialBlock(const int8_t* x, const int8_t* w, int n, int32_t offset, int32_t* acc) {
  for (int i = 0; i < n; ++i) acc[i] += w[i] * (x[i] + offset);
}

// acc[0..n) += the taps of one channel block of one window (rows x cols taps, `row_step` /
// `col_step` input bytes apart). kView: `win` views the whole window; otherwise (a window that
// wraps around the pool end) each tap is read through its own view at input byte `at` +
// offset.
template <bool kView>
inline void MacWindow(const RingBytes& in, const int8_t* win, uint32_t at, int rows, int cols,
                      int row_step, int col_step, const int8_t* w, int w_row_stride,
                      int w_col_stride, int n, int16_t offset, int8_t* scratch, int32_t* acc) {
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      const int rel = r * row_step + c * col_step;
      const int8_t* x = kView ? win + rel : in.Read(at + rel, n, scratch);
      const int8_t* wp = w + r * w_row_stride + c * w_col_stride;
      if (n == kChannelBlock) {
        MacFullBlock(x, wp, offset, acc);
      } else {
        MacPartialBlock(x, wp, n, offset, acc);
      }
    }
  }
}
#endif

// The depthwise loops. kFlat: the input does not wrap (see MacWindow).
template <bool kFlat>
Status DepthwiseRun(OpContext& ctx) {
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
  const int f_h = filter.shape.dims[1];
  const int f_w = filter.shape.dims[2];
  const int out_d = filter.shape.dims[3];
  const int out_h = output.shape.dims[1];
  const int out_w = output.shape.dims[2];
  const int depth_multiplier = opt.depth_multiplier;
  const int stride_h = opt.stride_h;
  const int stride_w = opt.stride_w;
  const int dil_h = opt.dilation_h;
  const int dil_w = opt.dilation_w;
  const int in_row_stride = in_w * in_d;
  const int filter_row_stride = f_w * out_d;
  // Input distance between vertically / horizontally adjacent taps.
  const int row_step = dil_h * in_row_stride;
  const int col_step = dil_w * in_d;

  const RingBytes in = ctx.bytes(&input);
  const RingBytes out = ctx.bytes(&output);
  const int8_t* filter_data = filter.Data<int8_t>();
  const int32_t* bias_data = bias != nullptr ? bias->Data<int32_t>() : nullptr;
  const int32_t* multiplier = d.multiplier;
  const int32_t* shift = d.shift;
  const int16_t input_offset = static_cast<int16_t>(d.input_offset);  // |offset| <= 128
  const int32_t output_offset = d.output_offset;
  const int32_t act_min = d.act_min;
  const int32_t act_max = d.act_max;
  int8_t in_scratch[kChannelBlock];
  int8_t out_scratch[kChannelBlock];

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
        const bool any = fy_end > fy_start && fx_end > fx_start;
        const int rows = any ? fy_end - fy_start : 0;
        const int cols = any ? fx_end - fx_start : 0;
        // Input byte (channel 0) of the first valid tap, and the offset of the last one.
        const uint32_t lo = batch_at + (in_y_origin + dil_h * fy_start) * in_row_stride +
                            (in_x_origin + dil_w * fx_start) * in_d;
        const int span = any ? (rows - 1) * row_step + (cols - 1) * col_step : 0;
        const int8_t* w_first = filter_data + fy_start * filter_row_stride + fx_start * out_d;
        if (depth_multiplier == 1) {
          // Block of channels: taps outer, channels inner (contiguous in input and filter).
          for (int c0 = 0; c0 < out_d; c0 += kChannelBlock) {
            const int n = out_d - c0 < kChannelBlock ? out_d - c0 : kChannelBlock;
            int32_t acc[kChannelBlock];
            // One view of the whole window unless it wraps around the pool end.
            const int8_t* win = any && (kFlat || !in.Wraps(lo + c0, span + n))
                                    ? in.Read(lo + c0, span + n, in_scratch)
                                    : nullptr;
#if TFLM_VMCU_DSP
            MacWindowDsp(in, win, lo + c0, rows, cols, row_step, col_step, w_first + c0,
                         filter_row_stride, out_d, n, input_offset, in_scratch,
                         bias_data != nullptr ? bias_data + c0 : nullptr, acc);
#else
            for (int i = 0; i < n; ++i) acc[i] = 0;
            if (kFlat || win != nullptr || !any) {
              MacWindow<true>(in, win, lo + c0, rows, cols, row_step, col_step, w_first + c0,
                              filter_row_stride, out_d, n, input_offset, in_scratch, acc);
            } else {
              MacWindow<false>(in, win, lo + c0, rows, cols, row_step, col_step, w_first + c0,
                               filter_row_stride, out_d, n, input_offset, in_scratch, acc);
            }
#endif
            int8_t* dst = out.BeginWrite(out_at + c0, n, out_scratch);
#if TFLM_VMCU_DSP
            dsp::RequantizeBlock(acc, n, multiplier + c0, shift + c0, 1, output_offset, act_min,
                                 act_max, dst, d.right_shift_only);
#else
            for (int i = 0; i < n; ++i) {
              const int oc = c0 + i;
              int32_t a = acc[i];
              if (bias_data != nullptr) a += bias_data[oc];
              dst[i] =
                  RequantizeChannel(a, multiplier[oc], shift[oc], output_offset, act_min, act_max);
            }
#endif
            out.EndWrite(out_at + c0, n, dst);
          }
        } else {
          for (int ic = 0; ic < in_d; ++ic) {
            const int8_t* w_ic = w_first + ic * depth_multiplier;
            if (kFlat) {
              const int8_t* win = any ? in.Read(lo + ic, span + 1, in_scratch) : nullptr;
#if TFLM_VMCU_DSP
              // All `multiplier` outputs of the input channel, four at a time, then written in
              // order (kernels/dsp.h).
              for (int m0 = 0; m0 < depth_multiplier; m0 += kChannelBlock) {
                const int oc = ic * depth_multiplier + m0;
                const int n =
                    depth_multiplier - m0 < kChannelBlock ? depth_multiplier - m0 : kChannelBlock;
                int32_t acc[kChannelBlock];
                dsp::DepthwiseMultiplierWindow(
                    win, w_ic + m0, n, rows, cols, row_step, col_step, filter_row_stride, out_d,
                    d.input_offset, bias_data != nullptr ? bias_data + oc : nullptr, acc);
                int8_t* dst = out.BeginWrite(out_at + oc, n, out_scratch);
                dsp::RequantizeBlock(acc, n, multiplier + oc, shift + oc, 1, output_offset, act_min,
                                     act_max, dst, d.right_shift_only);
                out.EndWrite(out_at + oc, n, dst);
              }
#else
              for (int m = 0; m < depth_multiplier; ++m) {
                int32_t acc = 0;
                for (int r = 0; r < rows; ++r) {
                  const int8_t* w = w_ic + r * filter_row_stride + m;
                  const int8_t* x = win + r * row_step;
                  for (int c = 0; c < cols; ++c) {
                    acc += w[c * out_d] * (x[c * col_step] + d.input_offset);
                  }
                }
                const int oc = ic * depth_multiplier + m;
                if (bias_data != nullptr) acc += bias_data[oc];
                out.WriteByte(out_at + oc, RequantizeChannel(acc, multiplier[oc], shift[oc],
                                                             output_offset, act_min, act_max));
              }
#endif
            } else {
              // The input wraps: each output byte reads its taps again (TFLM's order).
              for (int m = 0; m < depth_multiplier; ++m) {
                int32_t acc = 0;
                for (int r = 0; r < rows; ++r) {
                  const int8_t* w = w_ic + r * filter_row_stride + m;
                  for (int c = 0; c < cols; ++c) {
                    const int32_t x = in.ReadByte(lo + ic + r * row_step + c * col_step);
                    acc += w[c * out_d] * (x + d.input_offset);
                  }
                }
                const int oc = ic * depth_multiplier + m;
                if (bias_data != nullptr) acc += bias_data[oc];
                out.WriteByte(out_at + oc, RequantizeChannel(acc, multiplier[oc], shift[oc],
                                                             output_offset, act_min, act_max));
              }
            }
          }
        }
      }
    }
  }
  return Status::kOk;
}

Status DepthwiseEval(OpContext& ctx) {
  return ctx.bytes(ctx.input(0)).Contiguous() ? DepthwiseRun<true>(ctx) : DepthwiseRun<false>(ctx);
}

}  // namespace

const Kernel kDepthwiseConv2D = {DepthwisePrepare, DepthwiseEval};

}  // namespace tflm_vmcu

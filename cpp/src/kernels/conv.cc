// CONV_2D int8 (TFLM reference ConvPerChannel): loop order batch > out_y > out_x > out_channel,
// each output byte reading its receptive field (filter_y > filter_x > in_channel of its group).
// Receptive fields of <= 512 bytes are gathered once per output pixel and group, before that
// pixel's channels are written: input reads only move earlier relative to TFLM's order.
#include <string.h>

#include "kernels/conv_common.h"
#include "kernels/kernel.h"
#include "kernels/kernel_util.h"
#include "kernels/quant_util.h"

namespace tflm_vmcu {
namespace {

// Stack bytes for one gathered receptive field (see GatherPatch).
constexpr int kMaxPatch = 512;

struct ConvData {
  const int32_t* multiplier;  // [out_channels]
  const int32_t* shift;       // [out_channels], > 0 shifts left (TFLM's convention)
  int32_t input_offset;       // -input zero point
  int32_t output_offset;      // output zero point
  int32_t act_min;
  int32_t act_max;
  int32_t pad_h;
  int32_t pad_w;
};

// sum(w * (x + x_offset)). The fixed-size inner block lets compilers vectorise even at -O2
// (int8 operands shifted by an int8 zero point fit in int16: multiply-add vectors).
inline int32_t DotWithOffset(const int8_t* x, const int8_t* w, int n, int32_t x_offset) {
  constexpr int kBlock = 16;
  const int16_t offset = static_cast<int16_t>(x_offset);
  int32_t acc = 0;
  int i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    for (int j = 0; j < kBlock; ++j) {
      acc += static_cast<int16_t>(x[i + j] + offset) * static_cast<int16_t>(w[i + j]);
    }
  }
  for (; i < n; ++i) acc += w[i] * (x[i] + x_offset);
  return acc;
}

Status ConvPrepare(OpContext& ctx) {
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
  if ((s = ExpectFusedActivation(ctx, opt.activation)) != Status::kOk) return s;

  if (input->shape.rank != 4 || filter->shape.rank != 4 || output->shape.rank != 4) {
    return ctx.Fail(Status::kInvalidShape,
                    "expects 4-D input, filter and output, got ranks %d, %d and %d",
                    input->shape.rank, filter->shape.rank, output->shape.rank);
  }
  const int32_t batches = input->shape.dims[0];
  const int32_t in_h = input->shape.dims[1];
  const int32_t in_w = input->shape.dims[2];
  const int32_t in_d = input->shape.dims[3];
  const int32_t out_d = filter->shape.dims[0];
  const int32_t f_h = filter->shape.dims[1];
  const int32_t f_w = filter->shape.dims[2];
  const int32_t f_in_d = filter->shape.dims[3];
  if (opt.stride_h <= 0 || opt.stride_w <= 0 || opt.dilation_h <= 0 || opt.dilation_w <= 0) {
    return ctx.Fail(Status::kInvalidModel, "stride %dx%d and dilation %dx%d must be positive",
                    opt.stride_h, opt.stride_w, opt.dilation_h, opt.dilation_w);
  }
  if (out_d <= 0 || f_h <= 0 || f_w <= 0 || f_in_d <= 0) {
    return ctx.Fail(Status::kInvalidShape, "filter '%s' has an empty dimension", filter->name);
  }
  // Grouped convolution as in TFLM: input channels are a multiple of the filter's.
  if (in_d % f_in_d != 0 || out_d % (in_d / f_in_d) != 0) {
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

  ConvData* data = AllocateOpData<ConvData>(ctx);
  if (data == nullptr) return Status::kOutOfMemory;
  int32_t* multiplier = nullptr;
  int32_t* shift = nullptr;
  s = ComputeChannelMultipliers(ctx, *input, *filter, *output, out_d, 0, &multiplier, &shift);
  if (s != Status::kOk) return s;
  data->multiplier = multiplier;
  data->shift = shift;
  data->input_offset = -input->zero_point;
  data->output_offset = output->zero_point;
  CalculateActivationRangeInt8(opt.activation, output->scale, output->zero_point, &data->act_min,
                               &data->act_max);
  data->pad_h = ComputePadding(opt.stride_h, opt.dilation_h, in_h, f_h, out_h);
  data->pad_w = ComputePadding(opt.stride_w, opt.dilation_w, in_w, f_w, out_w);
  return Status::kOk;
}

// Copies the receptive field of one output pixel (one group's channels) into `patch` in the
// filter's [filter_y][filter_x][channel] order. Padding taps get the input zero point, whose
// (x - zero_point) term is 0: the same sum as TFLM skipping those taps.
inline void GatherPatch(const int8_t* in_group, int in_y_origin, int in_x_origin, int fy_start,
                        int fy_end, int fx_start, int fx_end, int f_h, int f_w, int f_in_d,
                        int in_d, int in_row_stride, int dil_h, int dil_w, int8_t pad_value,
                        int8_t* patch) {
  const int row_bytes = f_w * f_in_d;
  for (int fy = 0; fy < f_h; ++fy, patch += row_bytes) {
    if (fy < fy_start || fy >= fy_end || fx_start >= fx_end) {
      memset(patch, pad_value, row_bytes);
      continue;
    }
    const int8_t* in_row = in_group + (in_y_origin + dil_h * fy) * in_row_stride;
    memset(patch, pad_value, fx_start * f_in_d);
    if (dil_w == 1 && f_in_d == in_d) {
      memcpy(patch + fx_start * f_in_d, in_row + (in_x_origin + fx_start) * in_d,
             (fx_end - fx_start) * f_in_d);
    } else {
      for (int fx = fx_start; fx < fx_end; ++fx) {
        memcpy(patch + fx * f_in_d, in_row + (in_x_origin + dil_w * fx) * in_d, f_in_d);
      }
    }
    memset(patch + fx_end * f_in_d, pad_value, (f_w - fx_end) * f_in_d);
  }
}

Status ConvEval(OpContext& ctx) {
  const ConvData& d = *static_cast<const ConvData*>(ctx.op_data());
  const OpOptions& opt = ctx.options();
  const Tensor& input = *ctx.input(0);
  const Tensor& filter = *ctx.input(1);
  const Tensor* bias = ctx.num_inputs() > 2 ? ctx.input(2) : nullptr;
  Tensor& output = *ctx.output(0);

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
  // Small receptive fields are gathered once per pixel and group, so each output channel is
  // one dot product over the whole filter; larger ones run a dot product per filter row.
  const bool use_patch = filter_oc_stride <= kMaxPatch;
  // With unit horizontal dilation and one group, the valid taps of a filter row are one
  // contiguous run of (taps * channels) bytes in both the input row and the filter.
  const bool contiguous_rows = dil_w == 1 && groups == 1;

  const int8_t* in_data = input.Data<int8_t>();
  const int8_t* filter_data = filter.Data<int8_t>();
  const int32_t* bias_data = bias != nullptr ? bias->Data<int32_t>() : nullptr;
  int8_t* out = output.Data<int8_t>();
  const int32_t* multiplier = d.multiplier;
  const int32_t* shift = d.shift;
  const int32_t input_offset = d.input_offset;
  const int8_t pad_value = static_cast<int8_t>(-input_offset);
  const int32_t output_offset = d.output_offset;
  const int32_t act_min = d.act_min;
  const int32_t act_max = d.act_max;
  int8_t patch[kMaxPatch];

  for (int b = 0; b < batches; ++b) {
    const int8_t* in_batch = in_data + static_cast<size_t>(b) * in_h * in_row_stride;
    for (int out_y = 0; out_y < out_h; ++out_y) {
      const int in_y_origin = out_y * stride_h - d.pad_h;
      int fy_start, fy_end;
      ValidTaps(in_y_origin, dil_h, f_h, in_h, &fy_start, &fy_end);
      for (int out_x = 0; out_x < out_w; ++out_x) {
        const int in_x_origin = out_x * stride_w - d.pad_w;
        int fx_start, fx_end;
        ValidTaps(in_x_origin, dil_w, f_w, in_w, &fx_start, &fx_end);
        const int run = fx_end > fx_start ? (fx_end - fx_start) * f_in_d : 0;
        int oc = 0;
        for (int g = 0; g < groups; ++g) {
          const int8_t* in_group = in_batch + g * f_in_d;
          if (use_patch) {
            GatherPatch(in_group, in_y_origin, in_x_origin, fy_start, fy_end, fx_start, fx_end, f_h,
                        f_w, f_in_d, in_d, in_row_stride, dil_h, dil_w, pad_value, patch);
          }
          for (int k = 0; k < filters_per_group; ++k, ++oc) {
            const int8_t* w_oc = filter_data + static_cast<size_t>(oc) * filter_oc_stride;
            int32_t acc = 0;
            if (use_patch) {
              acc = DotWithOffset(patch, w_oc, filter_oc_stride, input_offset);
            } else {
              for (int fy = fy_start; fy < fy_end; ++fy) {
                const int8_t* in_row = in_group + (in_y_origin + dil_h * fy) * in_row_stride;
                const int8_t* w_row = w_oc + fy * filter_row_stride;
                if (contiguous_rows) {
                  acc += DotWithOffset(in_row + (in_x_origin + fx_start) * in_d,
                                       w_row + fx_start * f_in_d, run, input_offset);
                } else {
                  for (int fx = fx_start; fx < fx_end; ++fx) {
                    acc += DotWithOffset(in_row + (in_x_origin + dil_w * fx) * in_d,
                                         w_row + fx * f_in_d, f_in_d, input_offset);
                  }
                }
              }
            }
            if (bias_data != nullptr) acc += bias_data[oc];
            acc = MultiplyByQuantizedMultiplier(acc, multiplier[oc], shift[oc]);
            acc += output_offset;
            acc = acc < act_min ? act_min : acc;
            acc = acc > act_max ? act_max : acc;
            *out++ = static_cast<int8_t>(acc);
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

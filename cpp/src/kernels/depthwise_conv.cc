// DEPTHWISE_CONV_2D int8 (TFLM reference DepthwiseConvPerChannel): loop order batch > out_y >
// out_x > in_channel > multiplier; multiplier 1 runs blocks of 64 channels per output pixel
// (all taps of the block read, then its outputs written), which never writes an output byte
// earlier relative to the input reads than TFLM's per-channel order does.
#include "kernels/conv_common.h"
#include "kernels/kernel.h"
#include "kernels/kernel_util.h"
#include "kernels/quant_util.h"

namespace tflm_vmcu {
namespace {

constexpr int kChannelBlock = 64;

struct DepthwiseData {
  const int32_t* multiplier;  // [out_channels]
  const int32_t* shift;       // [out_channels], > 0 shifts left (TFLM's convention)
  int32_t input_offset;       // -input zero point
  int32_t output_offset;      // output zero point
  int32_t act_min;
  int32_t act_max;
  int32_t pad_h;
  int32_t pad_w;
};

Status DepthwisePrepare(OpContext& ctx) {
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
  const int32_t f_h = filter->shape.dims[1];
  const int32_t f_w = filter->shape.dims[2];
  const int32_t out_d = filter->shape.dims[3];
  if (opt.stride_h <= 0 || opt.stride_w <= 0 || opt.dilation_h <= 0 || opt.dilation_w <= 0) {
    return ctx.Fail(Status::kInvalidModel, "stride %dx%d and dilation %dx%d must be positive",
                    opt.stride_h, opt.stride_w, opt.dilation_h, opt.dilation_w);
  }
  if (filter->shape.dims[0] != 1 || f_h <= 0 || f_w <= 0 || out_d <= 0) {
    return ctx.Fail(Status::kInvalidShape,
                    "filter '%s' has shape [%d,%d,%d,%d], expected "
                    "[1,height,width,channels]",
                    filter->name, filter->shape.dims[0], f_h, f_w, out_d);
  }
  if (opt.depth_multiplier <= 0 || in_d * opt.depth_multiplier != out_d) {
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

  DepthwiseData* data = AllocateOpData<DepthwiseData>(ctx);
  if (data == nullptr) return Status::kOutOfMemory;
  int32_t* multiplier = nullptr;
  int32_t* shift = nullptr;
  s = ComputeChannelMultipliers(ctx, *input, *filter, *output, out_d, 3, &multiplier, &shift);
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

inline int8_t Requantize(int32_t acc, int32_t multiplier, int32_t shift, int32_t output_offset,
                         int32_t act_min, int32_t act_max) {
  acc = MultiplyByQuantizedMultiplier(acc, multiplier, shift);
  acc += output_offset;
  acc = acc < act_min ? act_min : acc;
  acc = acc > act_max ? act_max : acc;
  return static_cast<int8_t>(acc);
}

Status DepthwiseEval(OpContext& ctx) {
  const DepthwiseData& d = *static_cast<const DepthwiseData*>(ctx.op_data());
  const OpOptions& opt = ctx.options();
  const Tensor& input = *ctx.input(0);
  const Tensor& filter = *ctx.input(1);
  const Tensor* bias = ctx.num_inputs() > 2 ? ctx.input(2) : nullptr;
  Tensor& output = *ctx.output(0);

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

  const int8_t* in_data = input.Data<int8_t>();
  const int8_t* filter_data = filter.Data<int8_t>();
  const int32_t* bias_data = bias != nullptr ? bias->Data<int32_t>() : nullptr;
  int8_t* out = output.Data<int8_t>();
  const int32_t* multiplier = d.multiplier;
  const int32_t* shift = d.shift;
  const int16_t input_offset = static_cast<int16_t>(d.input_offset);  // |offset| <= 128
  const int32_t output_offset = d.output_offset;
  const int32_t act_min = d.act_min;
  const int32_t act_max = d.act_max;

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
        if (depth_multiplier == 1) {
          // Block of channels: taps outer, channels inner (contiguous in input and filter).
          for (int c0 = 0; c0 < out_d; c0 += kChannelBlock) {
            const int n = out_d - c0 < kChannelBlock ? out_d - c0 : kChannelBlock;
            int32_t acc[kChannelBlock];
            for (int i = 0; i < n; ++i) acc[i] = 0;
            for (int fy = fy_start; fy < fy_end; ++fy) {
              const int8_t* in_row = in_batch + (in_y_origin + dil_h * fy) * in_row_stride + c0;
              const int8_t* w_row = filter_data + fy * filter_row_stride + c0;
              for (int fx = fx_start; fx < fx_end; ++fx) {
                const int8_t* x = in_row + (in_x_origin + dil_w * fx) * in_d;
                const int8_t* w = w_row + fx * out_d;
                if (n == kChannelBlock) {
                  MacFullBlock(x, w, input_offset, acc);
                } else {
                  MacPartialBlock(x, w, n, input_offset, acc);
                }
              }
            }
            for (int i = 0; i < n; ++i) {
              const int oc = c0 + i;
              int32_t a = acc[i];
              if (bias_data != nullptr) a += bias_data[oc];
              out[i] = Requantize(a, multiplier[oc], shift[oc], output_offset, act_min, act_max);
            }
            out += n;
          }
        } else {
          for (int ic = 0; ic < in_d; ++ic) {
            for (int m = 0; m < depth_multiplier; ++m) {
              const int oc = m + ic * depth_multiplier;
              int32_t acc = 0;
              for (int fy = fy_start; fy < fy_end; ++fy) {
                const int8_t* x = in_batch + (in_y_origin + dil_h * fy) * in_row_stride + ic;
                const int8_t* w = filter_data + fy * filter_row_stride + oc;
                for (int fx = fx_start; fx < fx_end; ++fx) {
                  acc += w[fx * out_d] * (x[(in_x_origin + dil_w * fx) * in_d] + d.input_offset);
                }
              }
              if (bias_data != nullptr) acc += bias_data[oc];
              *out++ = Requantize(acc, multiplier[oc], shift[oc], output_offset, act_min, act_max);
            }
          }
        }
      }
    }
  }
  return Status::kOk;
}

}  // namespace

const Kernel kDepthwiseConv2D = {DepthwisePrepare, DepthwiseEval};

}  // namespace tflm_vmcu

#include "kernels/conv_common.h"

#include "kernels/kernel_util.h"
#include "kernels/quant_util.h"

namespace tflm_vmcu {

namespace {

// TFLM's per-channel multiplier (PopulateConvolutionQuantizationParams): the effective scale in
// double, then QuantizeMultiplier. False where TFLM's requantisation is undefined.
bool ChannelMultiplier(double input_scale, double filter_scale, double output_scale,
                       int32_t* multiplier, int32_t* shift) {
  const double effective_scale = input_scale * filter_scale / output_scale;
  int channel_shift = 0;
  const bool ok = QuantizeRequantMultiplier(effective_scale, multiplier, &channel_shift);
  *shift = channel_shift;
  return ok;
}

}  // namespace

Status CheckConvOperands(OpContext& ctx) {
  const OpOptions& opt = ctx.options();
  const Tensor* input = ctx.input(0);
  const Tensor* filter = ctx.input(1);
  const Tensor* bias = ctx.num_inputs() > 2 ? ctx.input(2) : nullptr;
  const Tensor* output = ctx.output(0);
  Status s;
  if ((s = ExpectInt8Activation(ctx, input, "input")) != Status::kOk) return s;
  if ((s = ExpectInt8Activation(ctx, output, "output")) != Status::kOk) return s;
  if ((s = ExpectType(ctx, filter, DType::kInt8, "filter")) != Status::kOk) return s;
  if (bias != nullptr && (s = ExpectType(ctx, bias, DType::kInt32, "bias")) != Status::kOk) {
    return s;
  }
  if ((s = ExpectConstant(ctx, filter, "filter")) != Status::kOk) return s;
  if (bias != nullptr && (s = ExpectConstant(ctx, bias, "bias")) != Status::kOk) return s;
  if ((s = ExpectFusedActivation(ctx, opt.activation)) != Status::kOk) return s;

  if (input->shape.rank != 4 || filter->shape.rank != 4 || output->shape.rank != 4) {
    return ctx.Fail(Status::kInvalidShape,
                    "expects 4-D input, filter and output, got ranks %d, %d and %d",
                    input->shape.rank, filter->shape.rank, output->shape.rank);
  }
  const int32_t params[4] = {opt.stride_h, opt.stride_w, opt.dilation_h, opt.dilation_w};
  for (int32_t v : params) {
    if (v <= 0 || v > kMaxWindowParameter) {
      return ctx.Fail(Status::kInvalidModel,
                      "stride %dx%d and dilation %dx%d must be between 1 and %d", opt.stride_h,
                      opt.stride_w, opt.dilation_h, opt.dilation_w, kMaxWindowParameter);
    }
  }
  return Status::kOk;
}

Status ComputeChannelMultipliers(OpContext& ctx, const Tensor& input, const Tensor& filter,
                                 const Tensor& output, int32_t num_channels,
                                 int32_t expected_quant_dim, const int32_t** multiplier,
                                 const int32_t** shift) {
  const ChannelQuant& q = filter.channels;
  const bool per_channel = q.count > 1;
  if (per_channel) {
    if (q.count != num_channels || q.quantized_dimension != expected_quant_dim) {
      return ctx.Fail(Status::kUnsupportedType,
                      "filter '%s' has %d scales along dimension %d, expected 1 or %d along "
                      "dimension %d",
                      filter.name, q.count, q.quantized_dimension, num_channels,
                      expected_quant_dim);
    }
  } else if (filter.scale == 0.0f || filter.scale != filter.scale) {
    return ctx.Fail(Status::kUnsupportedType, "filter '%s' is not quantised (scale %f)",
                    filter.name, static_cast<double>(filter.scale));
  }
  const double input_scale = static_cast<double>(input.scale);
  const double output_scale = static_cast<double>(output.scale);
  auto filter_scale = [&](int32_t c) {
    return static_cast<double>(per_channel ? q.Scale(c) : filter.scale);
  };
  // Any finite filter scale (negative ones too) gives TFLM's multiplier; refused where TFLM's
  // arithmetic is undefined.
  for (int32_t c = 0; c < num_channels; ++c) {
    int32_t m, sh;
    if (!ChannelMultiplier(input_scale, filter_scale(c), output_scale, &m, &sh)) {
      return ctx.Fail(Status::kInvalidModel,
                      "channel %d: input scale %f * filter '%s' scale %f / output scale %f = %f "
                      "is outside TFLM's requantisation range (finite, magnitude below 2^31)",
                      c, input_scale, filter.name, filter_scale(c), output_scale,
                      input_scale * filter_scale(c) / output_scale);
    }
  }
  // Precomputed values in the model are used only if they are exactly ours.
  uint32_t words = 0;
  const int32_t* planned = ctx.PlannedData(&words);
  if (planned != nullptr && words >= 2 * static_cast<uint32_t>(num_channels)) {
    bool same = true;
    for (int32_t c = 0; c < num_channels && same; ++c) {
      int32_t m, s;
      ChannelMultiplier(input_scale, filter_scale(c), output_scale, &m, &s);
      same = planned[c] == m && planned[num_channels + c] == s;
    }
    if (same) {
      *multiplier = planned;
      *shift = planned + num_channels;
      return Status::kOk;
    }
  }
  const size_t n = static_cast<size_t>(num_channels);
  int32_t* m = AllocateState<int32_t>(ctx, n);
  int32_t* s = AllocateState<int32_t>(ctx, n);
  if (m == nullptr || s == nullptr) return Status::kOutOfMemory;
  for (int32_t c = 0; c < num_channels; ++c) {
    ChannelMultiplier(input_scale, filter_scale(c), output_scale, &m[c], &s[c]);
  }
  *multiplier = m;
  *shift = s;
  return Status::kOk;
}

}  // namespace tflm_vmcu

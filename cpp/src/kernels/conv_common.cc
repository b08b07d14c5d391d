#include "kernels/conv_common.h"

#include "kernels/quant_util.h"

namespace tflm_vmcu {

// TFLM's PopulateConvolutionQuantizationParams (int8): per-channel filter scales, or one
// per-tensor scale broadcast over the channels; effective scale computed in double.
Status ComputeChannelMultipliers(OpContext& ctx, const Tensor& input, const Tensor& filter,
                                 const Tensor& output, int32_t num_channels,
                                 int32_t expected_quant_dim, int32_t** multiplier,
                                 int32_t** shift) {
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
  } else if (!(filter.scale > 0.0f)) {
    return ctx.Fail(Status::kUnsupportedType, "filter '%s' is not quantised (scale %f)",
                    filter.name, static_cast<double>(filter.scale));
  }
  const size_t bytes = static_cast<size_t>(num_channels) * sizeof(int32_t);
  *multiplier = static_cast<int32_t*>(ctx.AllocatePersistent(bytes, alignof(int32_t)));
  *shift = static_cast<int32_t*>(ctx.AllocatePersistent(bytes, alignof(int32_t)));
  if (*multiplier == nullptr || *shift == nullptr) return Status::kOutOfMemory;
  const double input_scale = static_cast<double>(input.scale);
  const double output_scale = static_cast<double>(output.scale);
  for (int32_t c = 0; c < num_channels; ++c) {
    const double filter_scale = static_cast<double>(per_channel ? q.Scale(c) : filter.scale);
    const double effective_scale = input_scale * filter_scale / output_scale;
    int channel_shift = 0;
    QuantizeMultiplier(effective_scale, &(*multiplier)[c], &channel_shift);
    (*shift)[c] = channel_shift;
  }
  return Status::kOk;
}

}  // namespace tflm_vmcu

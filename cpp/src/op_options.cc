#include "op_options.h"

#include "flatbuffer.h"

namespace tflm_vmcu {
namespace {

// BuiltinOptions union tags and field ids of the options tables we decode.
enum OptionsTag : uint8_t {
  kConv2DOptions = 1,
  kDepthwiseConv2DOptions = 2,
  kPool2DOptions = 5,
  kFullyConnectedOptions = 8,
  kSoftmaxOptions = 9,
  kConcatenationOptions = 10,
  kAddOptions = 11,
  kMulOptions = 21,
  kReducerOptions = 27,
  kSubOptions = 28,
};

}  // namespace

OpOptions DecodeOptions(const Model& model, uint8_t options_type, size_t options_pos) {
  OpOptions o;
  if (options_pos == 0) return o;
  fb::Table t;
  if (!fb::Table::At(fb::Buffer{model.bytes(), model.size()}, options_pos, &t)) return o;
  bool ok = true;
  auto act = [&](int id) { return static_cast<Activation>(t.Scalar<int8_t>(id, 0, &ok)); };
  auto pad = [&](int id) { return static_cast<Padding>(t.Scalar<int8_t>(id, 0, &ok)); };
  auto i32 = [&](int id, int32_t def) { return t.Scalar<int32_t>(id, def, &ok); };
  switch (options_type) {
    case kConv2DOptions:
      o.padding = pad(0);
      o.stride_w = i32(1, 0);
      o.stride_h = i32(2, 0);
      o.activation = act(3);
      o.dilation_w = i32(4, 1);
      o.dilation_h = i32(5, 1);
      break;
    case kDepthwiseConv2DOptions:
      o.padding = pad(0);
      o.stride_w = i32(1, 0);
      o.stride_h = i32(2, 0);
      o.depth_multiplier = i32(3, 0);
      o.activation = act(4);
      o.dilation_w = i32(5, 1);
      o.dilation_h = i32(6, 1);
      break;
    case kPool2DOptions:
      o.padding = pad(0);
      o.stride_w = i32(1, 0);
      o.stride_h = i32(2, 0);
      o.filter_w = i32(3, 0);
      o.filter_h = i32(4, 0);
      o.activation = act(5);
      break;
    case kFullyConnectedOptions:
      o.activation = act(0);
      o.weights_format = static_cast<uint8_t>(t.Scalar<int8_t>(1, 0, &ok));
      o.keep_num_dims = t.Scalar<uint8_t>(2, 0, &ok) != 0;
      break;
    case kSoftmaxOptions:
      o.beta = t.Scalar<float>(0, 0.0f, &ok);
      break;
    case kConcatenationOptions:
      o.axis = i32(0, 0);
      o.activation = act(1);
      break;
    case kAddOptions:
    case kMulOptions:
    case kSubOptions:
      o.activation = act(0);
      break;
    case kReducerOptions:
      o.keep_dims = t.Scalar<uint8_t>(0, 0, &ok) != 0;
      break;
    default:
      break;
  }
  return o;
}

}  // namespace tflm_vmcu

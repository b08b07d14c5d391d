// AVERAGE_POOL_2D / MAX_POOL_2D int8 (TFLM reference AveragePool / MaxPool): loop order batch >
// out_y > out_x > channel, run as blocks of kChannelBlock channels per output pixel.
//
// Unit of work (cpp/src/ring.h; model: cpp/src/access_order.cc): one block of channels of
// one output pixel: the block's channels of every window tap are read (one view from the first
// to the last tap when the input does not wrap, else one view per tap), then the block's
// output bytes are written.
#include <math.h>

#include "kernels/kernel.h"
#include "kernels/kernel_util.h"
#include "kernels/quant_util.h"

namespace tflm_vmcu {
namespace {

constexpr int kChannelBlock = kWindowChannelBlock;

struct PoolData {
  int32_t act_min;
  int32_t act_max;
  int32_t pad_h;
  int32_t pad_w;
};
TFLM_VMCU_ARM32_LAYOUT(PoolData, 16, 4);

// First window tap inside [0, size) and one past the last, for a window starting at origin.
inline void WindowBounds(int origin, int filter, int size, int* start, int* end) {
  *start = origin < 0 ? -origin : 0;
  *end = size - origin < filter ? size - origin : filter;
}

// TFLM's PoolingPrepare for int8.
Status PoolPrepare(OpContext& ctx) {
  Status s = ExpectArity(ctx, 1, 1, 1);
  if (s != Status::kOk) return s;
  const OpOptions& opt = ctx.options();
  const Tensor* input = ctx.input(0);
  const Tensor* output = ctx.output(0);
  if ((s = ExpectInt8Activation(ctx, input, "input")) != Status::kOk) return s;
  if ((s = ExpectInt8Activation(ctx, output, "output")) != Status::kOk) return s;
  const Activation act = opt.activation;
  if (act != Activation::kNone && act != Activation::kRelu && act != Activation::kReluN1To1 &&
      act != Activation::kRelu6) {
    return ctx.Fail(Status::kUnsupportedType, "fused activation %d is not supported",
                    static_cast<int>(act));
  }
  // Pooling does not requantise: TFLM requires identical input and output quantisation.
  if (fabs(static_cast<double>(input->scale) - static_cast<double>(output->scale)) > 1.0e-6 ||
      input->zero_point != output->zero_point) {
    return ctx.Fail(Status::kUnsupportedType,
                    "input (scale %f, zero point %d) and output (scale %f, zero point %d) "
                    "quantisation differ",
                    static_cast<double>(input->scale), input->zero_point,
                    static_cast<double>(output->scale), output->zero_point);
  }
  if (input->shape.rank != 4 || output->shape.rank != 4) {
    return ctx.Fail(Status::kInvalidShape, "expects 4-D input and output, got ranks %d and %d",
                    input->shape.rank, output->shape.rank);
  }
  if (opt.stride_h <= 0 || opt.stride_w <= 0 || opt.filter_h <= 0 || opt.filter_w <= 0 ||
      opt.stride_h > kMaxWindowParameter || opt.stride_w > kMaxWindowParameter ||
      opt.filter_h > (1 << 16) || opt.filter_w > (1 << 16)) {
    return ctx.Fail(Status::kInvalidModel,
                    "stride %dx%d must be between 1 and %d, filter %dx%d between 1 and 65536",
                    opt.stride_h, opt.stride_w, kMaxWindowParameter, opt.filter_h, opt.filter_w);
  }
  const int32_t in_h = input->shape.dims[1];
  const int32_t in_w = input->shape.dims[2];
  const int32_t out_h = ComputeOutSize(opt.padding, in_h, opt.filter_h, opt.stride_h, 1);
  const int32_t out_w = ComputeOutSize(opt.padding, in_w, opt.filter_w, opt.stride_w, 1);
  const Shape& o = output->shape;
  if (out_h <= 0 || out_w <= 0) {
    return ctx.Fail(Status::kInvalidShape, "filter %dx%d does not fit the %dx%d input",
                    opt.filter_h, opt.filter_w, in_h, in_w);
  }
  if (o.dims[0] != input->shape.dims[0] || o.dims[1] != out_h || o.dims[2] != out_w ||
      o.dims[3] != input->shape.dims[3]) {
    return ctx.Fail(Status::kInvalidShape,
                    "output '%s' has shape [%d,%d,%d,%d], expected [%d,%d,%d,%d]", output->name,
                    o.dims[0], o.dims[1], o.dims[2], o.dims[3], input->shape.dims[0], out_h, out_w,
                    input->shape.dims[3]);
  }
  PoolData* data = AllocateOpData<PoolData>(ctx);
  if (data == nullptr) return Status::kOutOfMemory;
  data->pad_h = ComputePadding(opt.stride_h, 1, in_h, opt.filter_h, out_h);
  data->pad_w = ComputePadding(opt.stride_w, 1, in_w, opt.filter_w, out_w);
  // TFLM's AveragePool fails on a window without input taps; windows move monotonically, so
  // checking the first and the last output position of each dimension covers all of them.
  int start, end;
  const int y_last = (out_h - 1) * opt.stride_h - data->pad_h;
  const int x_last = (out_w - 1) * opt.stride_w - data->pad_w;
  WindowBounds(-data->pad_h, opt.filter_h, in_h, &start, &end);
  bool empty = start >= end;
  WindowBounds(y_last, opt.filter_h, in_h, &start, &end);
  empty = empty || start >= end;
  WindowBounds(-data->pad_w, opt.filter_w, in_w, &start, &end);
  empty = empty || start >= end;
  WindowBounds(x_last, opt.filter_w, in_w, &start, &end);
  empty = empty || start >= end;
  if (empty) {
    return ctx.Fail(Status::kInvalidShape, "a pooling window lies entirely in the padding");
  }
  CalculateActivationRangeInt8(act, output->scale, output->zero_point, &data->act_min,
                               &data->act_max);
  return Status::kOk;
}

// The pooling loops. kFlat: the input does not wrap, so each channel block of a window is
// read through one view from its first to its last tap; otherwise through one view per tap.
template <bool kAverage, bool kFlat>
Status PoolRun(OpContext& ctx) {
  const PoolData& d = *static_cast<const PoolData*>(ctx.op_data());
  const OpOptions& opt = ctx.options();
  const Tensor& input = *ctx.input(0);
  const Tensor& output = *ctx.output(0);
  const int batches = input.shape.dims[0];
  const int in_h = input.shape.dims[1];
  const int in_w = input.shape.dims[2];
  const int depth = input.shape.dims[3];
  const int out_h = output.shape.dims[1];
  const int out_w = output.shape.dims[2];
  const int stride_h = opt.stride_h;
  const int stride_w = opt.stride_w;
  const int filter_h = opt.filter_h;
  const int filter_w = opt.filter_w;
  const int in_row_stride = in_w * depth;
  const int32_t act_min = d.act_min;
  const int32_t act_max = d.act_max;
  const RingBytes in = ctx.bytes(&input);
  const RingBytes out = ctx.bytes(&output);
  int8_t in_scratch[kChannelBlock];
  int8_t out_scratch[kChannelBlock];

  uint32_t out_at = 0;
  for (int b = 0; b < batches; ++b) {
    const uint32_t batch_at = static_cast<uint32_t>(b) * in_h * in_row_stride;
    for (int out_y = 0; out_y < out_h; ++out_y) {
      const int in_y_origin = out_y * stride_h - d.pad_h;
      int fy_start, fy_end;
      WindowBounds(in_y_origin, filter_h, in_h, &fy_start, &fy_end);
      for (int out_x = 0; out_x < out_w; ++out_x, out_at += depth) {
        const int in_x_origin = out_x * stride_w - d.pad_w;
        int fx_start, fx_end;
        WindowBounds(in_x_origin, filter_w, in_w, &fx_start, &fx_end);
        // Input byte (channel 0) of the window's first tap; Prepare guarantees a non-empty
        // window.
        const uint32_t lo =
            batch_at + (in_y_origin + fy_start) * in_row_stride + (in_x_origin + fx_start) * depth;
        const int rows = fy_end - fy_start;
        const int cols = fx_end - fx_start;
        const int span = (rows - 1) * in_row_stride + (cols - 1) * depth;
        for (int c0 = 0; c0 < depth; c0 += kChannelBlock) {
          const int n = depth - c0 < kChannelBlock ? depth - c0 : kChannelBlock;
          // Unit: this block's channels of every tap are read, then its n outputs written.
          const int8_t* window = kFlat ? in.Read(lo + c0, span + n, in_scratch) : nullptr;
          auto tap = [&](int fy, int fx) {
            const int rel = fy * in_row_stride + fx * depth;
            return kFlat ? window + rel : in.Read(lo + c0 + rel, n, in_scratch);
          };
          if (kAverage) {
            int32_t acc[kChannelBlock];
            for (int i = 0; i < n; ++i) acc[i] = 0;
            for (int fy = 0; fy < rows; ++fy) {
              for (int fx = 0; fx < cols; ++fx) {
                const int8_t* x = tap(fy, fx);
                if (n == kChannelBlock) {
                  for (int i = 0; i < kChannelBlock; ++i) acc[i] += x[i];
                } else {
                  for (int i = 0; i < n; ++i) acc[i] += x[i];
                }
              }
            }
            // Round half away from zero as TFLM does.
            const int32_t count = rows * cols;
            const int32_t half = count / 2;
            int8_t* dst = out.BeginWrite(out_at + c0, n, out_scratch);
            for (int i = 0; i < n; ++i) {
              int32_t a = acc[i];
              a = a > 0 ? (a + half) / count : (a - half) / count;
              a = a < act_min ? act_min : a;
              a = a > act_max ? act_max : a;
              dst[i] = static_cast<int8_t>(a);
            }
            out.EndWrite(out_at + c0, n, dst);
          } else {
            int8_t mx[kChannelBlock];
            for (int i = 0; i < n; ++i) mx[i] = INT8_MIN;
            for (int fy = 0; fy < rows; ++fy) {
              for (int fx = 0; fx < cols; ++fx) {
                const int8_t* x = tap(fy, fx);
                if (n == kChannelBlock) {
                  for (int i = 0; i < kChannelBlock; ++i) mx[i] = x[i] > mx[i] ? x[i] : mx[i];
                } else {
                  for (int i = 0; i < n; ++i) mx[i] = x[i] > mx[i] ? x[i] : mx[i];
                }
              }
            }
            int8_t* dst = out.BeginWrite(out_at + c0, n, out_scratch);
            for (int i = 0; i < n; ++i) {
              int32_t m = mx[i];
              m = m < act_min ? act_min : m;
              m = m > act_max ? act_max : m;
              dst[i] = static_cast<int8_t>(m);
            }
            out.EndWrite(out_at + c0, n, dst);
          }
        }
      }
    }
  }
  return Status::kOk;
}

template <bool kAverage>
Status PoolEval(OpContext& ctx) {
  return ctx.bytes(ctx.input(0)).Contiguous() ? PoolRun<kAverage, true>(ctx)
                                              : PoolRun<kAverage, false>(ctx);
}

}  // namespace

const Kernel kAveragePool2D = {PoolPrepare, PoolEval<true>};
const Kernel kMaxPool2D = {PoolPrepare, PoolEval<false>};

}  // namespace tflm_vmcu

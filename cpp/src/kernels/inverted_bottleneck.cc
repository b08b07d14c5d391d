#include "kernels/inverted_bottleneck.h"

#include <string.h>

#include "format.h"
#include "kernels/dsp_pairs.h"
#include "kernels/kernel_util.h"

namespace tflm_vmcu {
namespace {

constexpr int32_t kAddCode = 0;
constexpr int32_t kPadCode = 34;
constexpr int32_t kConv2DCode = 3;
constexpr int32_t kDepthwiseConv2DCode = 4;
constexpr int32_t kChannelBlock = 32;  // depthwise accumulators kept on the stack
#if TFLM_VMCU_DSP
constexpr int kMaxExtended = 512;  // pointwise inputs extended at once (1 KB of stack)
#endif

bool Is4D(const Tensor* t) { return t != nullptr && t->shape.rank == 4 && t->shape.dims[0] == 1; }

BottleneckConv Conv(const BlockOp& op) {
  BottleneckConv c;
  c.data = static_cast<const ConvData*>(op.op_data);
  c.filter = op.inputs[1]->Data<int8_t>();
  const Tensor* bias = op.num_inputs > 2 ? op.inputs[2] : nullptr;
  c.bias = bias != nullptr ? bias->Data<int32_t>() : nullptr;
  return c;
}

// A 1x1 CONV_2D from `in` (1, ?, ?, in_c) to out_c channels.
bool IsPointwise(const BlockOp& op, const Tensor* in) {
  const Tensor* f = op.num_inputs > 1 ? op.inputs[1] : nullptr;
  return op.builtin_code == kConv2DCode && op.inputs[0] == in && f != nullptr &&
         f->shape.rank == 4 && f->shape.dims[1] == 1 && f->shape.dims[2] == 1 &&
         f->shape.dims[3] == in->shape.dims[3] && Is4D(op.output) &&
         op.output->shape.dims[3] == f->shape.dims[0];
}

// A CONV_2D from `in` (1, ?, ?, in_c) whose kernel the block runs as its expansion: no
// dilation, at most kMaxBlockKernel a side, and an input patch of at most kMaxExpandPatch.
bool IsExpansion(const BlockOp& op, const Tensor* in) {
  const Tensor* f = op.num_inputs > 1 ? op.inputs[1] : nullptr;
  if (op.builtin_code != kConv2DCode || op.inputs[0] != in || f == nullptr || f->shape.rank != 4 ||
      f->shape.dims[3] != in->shape.dims[3] || !Is4D(op.output) ||
      op.output->shape.dims[3] != f->shape.dims[0] || op.options->dilation_h != 1 ||
      op.options->dilation_w != 1)
    return false;
  const int64_t kh = f->shape.dims[1], kw = f->shape.dims[2];
  return kh >= 1 && kw >= 1 && kh <= kMaxBlockKernel && kw <= kMaxBlockKernel &&
         kh * kw * in->shape.dims[3] <= kMaxExpandPatch;
}

#if !TFLM_VMCU_DSP
// acc[i] += w[i] * (x[i] + offset) over a fixed-size run: the constant trip count lets
// compilers vectorise (operands fit in int16, so the products widen int16 -> int32).
template <int kN>
inline void MacRun(const int8_t* x, const int8_t* w, int16_t offset, int32_t* acc) {
  for (int i = 0; i < kN; ++i) {
    acc[i] += static_cast<int16_t>(x[i] + offset) * static_cast<int16_t>(w[i]);
  }
}

// One depthwise tap over n <= kChannelBlock channels: acc[i] += w[i] * (x[i] + offset). (With
// the DSP extension, the taps run as windows: dsp::DepthwiseWindow.)
inline void MacTap(const int8_t* x, const int8_t* w, int n, int32_t offset, int32_t* acc) {
  const int16_t off = static_cast<int16_t>(offset);
  int i = 0;
  if (n == kChannelBlock) {
    MacRun<kChannelBlock>(x, w, off, acc);
    return;
  }
  for (; i + 8 <= n; i += 8) MacRun<8>(x + i, w + i, off, acc + i);
  for (; i < n; ++i) acc[i] += w[i] * (x[i] + offset);
}
#endif

// One pixel of a 1x1 conv: out[oc] = requantised(bias[oc] + sum(w[oc] * (x + offset))) for
// every output channel. Kept out of line: inlined into the block's loop nest, compilers stop
// vectorising the dot products.
__attribute__((noinline)) void PointwisePixel(const int8_t* x, int n, const BottleneckConv& conv,
                                              int out_c, int8_t* out) {
  const ConvData& d = *conv.data;
#if TFLM_VMCU_DSP
  // As CONV_2D's DSP path: the input pixel extended to 16-bit pairs once, then dot products
  // of four output channels at a time.
  if (n <= kMaxExtended) {
    uint32_t extended[kMaxExtended / 2];
    dsp::Extend(x, n, d.input_offset, extended);
    for (int oc = 0; oc < out_c; oc += kChannelBlock) {
      const int channels = out_c - oc < kChannelBlock ? out_c - oc : kChannelBlock;
      int32_t acc[kChannelBlock];
      dsp::AddDotsExtended(extended, x, n, d.input_offset,
                           conv.filter + static_cast<size_t>(oc) * n, n, channels,
                           conv.bias != nullptr ? conv.bias + oc : nullptr, acc);
      dsp::RequantizeBlock(acc, channels, d.multiplier + oc, d.shift + oc, 1, d.output_offset,
                           d.act_min, d.act_max, out + oc, d.right_shift_only);
    }
    return;
  }
#endif
  const int8_t* w = conv.filter;
  for (int oc = 0; oc < out_c; ++oc, w += n) {
    int32_t acc = DotWithOffset(x, w, n, d.input_offset);
    if (conv.bias != nullptr) acc += conv.bias[oc];
    out[oc] = RequantizeChannel(acc, d.multiplier[oc], d.shift[oc], d.output_offset, d.act_min,
                                d.act_max);
  }
}

#if TFLM_VMCU_DSP
// Two pixels of a 1x1 conv at once (kernels/dsp_pairs.h): out_a from x_a, out_b from x_b, as
// two PointwisePixel calls would write them (n <= dsp::kPairPatch). Out of line, so that its
// buffer and PointwisePixel's are never on the stack together.
__attribute__((noinline)) void PointwisePair(const int8_t* x_a, const int8_t* x_b, int n,
                                             const BottleneckConv& conv, int out_c, int8_t* out_a,
                                             int8_t* out_b) {
  const ConvData& d = *conv.data;
  uint32_t q[dsp::kPairPatch];
  int8_t tails[2][4];
  dsp::ExtendPair(x_a, x_b, n, d.input_offset, q, tails);
  const dsp::OutputScale scale = {d.multiplier, d.shift,           1, d.output_offset, d.act_min,
                                  d.act_max,    d.right_shift_only};
  dsp::PairOutputs(q, tails, n, d.input_offset, conv.filter, n, out_c, conv.bias, scale, out_a,
                   out_b);
}
#endif

// A PAD of rows and columns only (batch and channels unpadded) of `in`, whose pad value (its
// output zero point) is what the depthwise conv's input offset cancels: its taps add 0, as
// the depthwise conv's own padding taps, which TFLM skips.
bool IsSpatialPad(const BlockOp& op, const Tensor* in, int32_t* top, int32_t* left) {
  const Tensor* p = op.num_inputs == 2 ? op.inputs[1] : nullptr;
  if (op.builtin_code != kPadCode || op.inputs[0] != in || !Is4D(op.output) || p == nullptr ||
      !p->is_const || p->shape.rank != 2 || p->shape.dims[0] != 4 || p->shape.dims[1] != 2)
    return false;
  if (LoadPadding(p, 0) != 0 || LoadPadding(p, 1) != 0 || LoadPadding(p, 6) != 0 ||
      LoadPadding(p, 7) != 0)
    return false;
  const int64_t t = LoadPadding(p, 2);
  const int64_t l = LoadPadding(p, 4);
  if (t < 0 || l < 0 || t > kMaxWindowParameter || l > kMaxWindowParameter) return false;
  *top = static_cast<int32_t>(t);
  *left = static_cast<int32_t>(l);
  return true;
}

}  // namespace

BlockGeometry GeometryOf(const Bottleneck& b, int32_t s) {
  const BlockStage& t = b.stages[s];
  BlockGeometry g;
  g.in_h = t.in_h;
  g.in_w = t.in_w;
  g.in_c = t.in_c;
  g.mid_h = t.mid_h;
  g.mid_w = t.mid_w;
  g.mid_c = t.mid_c;
  g.kernel_h = t.kernel_h;
  g.kernel_w = t.kernel_w;
  g.stride_h = t.stride_h;
  g.stride_w = t.stride_w;
  g.pad_h = t.pad_h;
  g.pad_w = t.pad_w;
  g.expand_kernel_h = t.expand_kernel_h;
  g.expand_kernel_w = t.expand_kernel_w;
  g.expand_stride_h = t.expand_stride_h;
  g.expand_stride_w = t.expand_stride_w;
  g.expand_pad_h = t.expand_pad_h;
  g.expand_pad_w = t.expand_pad_w;
  g.out_h = t.out_h;
  g.out_w = t.out_w;
  g.out_c = t.out_c;
  g.residual = t.add != nullptr;
  g.window = b.window;
  return g;
}

namespace {

// The rows of stage s's output that stage s + 1 reads at once, from the schedule.
class RingRowsVisitor {
 public:
  static constexpr bool kPixels = false;
  explicit RingRowsVisitor(int32_t* rows) : rows_(rows) {}
  void BRow(int32_t, int32_t) {}
  void Rows(int32_t s, int32_t lo, int32_t produced) {
    if (produced - lo > rows_[s - 1]) rows_[s - 1] = produced - lo;
  }

 private:
  int32_t* rows_;
};

int64_t Clamp32(int64_t v) { return v > 0xffffffffLL ? 0xffffffffLL : v; }

}  // namespace

bool ChainRingRows(const BlockGeometry* g, int32_t n, int32_t* rows) {
  if (n < 1 || n > kMaxChainStages) return false;
  for (int32_t s = 0; s < n; ++s) {
    rows[s] = 0;
    if (g[s].stride_h < 1 || g[s].expand_stride_h < 1 || g[s].kernel_h < 1 || g[s].out_h < 0)
      return false;
    if (s > 0 &&
        (g[s].in_h != g[s - 1].out_h || g[s].in_w != g[s - 1].out_w || g[s].in_c != g[s - 1].out_c))
      return false;
    if (g[s].residual && (g[s].in_h != g[s].out_h || g[s].in_w != g[s].out_w)) return false;
  }
  RingRowsVisitor visitor(rows);
  ChainSchedule<RingRowsVisitor>(g, n, &visitor).Run();
  // Every inner tensor gets a ring (one row even if the schedule never reads it), so no
  // stage but the last writes to the chain's output.
  for (int32_t s = 0; s + 1 < n; ++s) rows[s] = rows[s] < 1 ? 1 : rows[s];
  return true;
}

uint32_t StageWorkspaceBytes(const BlockGeometry& g) {
  // In 64 bits: a hostile model's shapes must not overflow (the plan's workspace, which
  // must hold this many bytes inside the pool, is at most 2 GiB).
  const int64_t b_bytes = int64_t{g.kernel_h} * (g.window ? g.kernel_w : g.mid_w) * g.mid_c;
  // A KxK expansion's patches: two, for two B pixels at a time.
  const int64_t patch = g.expand_kernel_h * g.expand_kernel_w > 1
                            ? 2 * int64_t{g.expand_kernel_h} * g.expand_kernel_w * g.in_c
                            : 0;
  return static_cast<uint32_t>(Clamp32(b_bytes + g.mid_c + g.out_c + g.in_c + patch));
}

uint32_t ChainWorkspaceBytes(const BlockGeometry* g, int32_t n) {
  int32_t rows[kMaxChainStages];
  if (!ChainRingRows(g, n, rows)) return 0xffffffffu;
  int64_t bytes = 0;
  for (int32_t s = 0; s < n; ++s) {
    bytes += StageWorkspaceBytes(g[s]);
    if (s + 1 < n) bytes += int64_t{rows[s]} * g[s].out_w * g[s].out_c;
  }
  return static_cast<uint32_t>(Clamp32(bytes));
}

uint32_t BottleneckWorkspaceBytes(const Bottleneck& b) {
  BlockGeometry g[kMaxChainStages];
  if (b.count < 1 || b.count > kMaxChainStages) return 0xffffffffu;
  for (int32_t s = 0; s < b.count; ++s) g[s] = GeometryOf(b, s);
  return ChainWorkspaceBytes(g, b.count);
}

namespace {

// Parses one block of a chain from ops[*k] on, reading `input`; advances *k past it.
// `base`: the chain's index of ops[0] (for messages).
bool ParseStage(const BlockOp* ops, int32_t count, int32_t base, int32_t* k_io, const Tensor* input,
                BlockStage* out, char* why, uint32_t why_size) {
  BlockStage b;
  int32_t k = *k_io;
  const int32_t start = k;
  b.input = input;
  const Tensor* x = b.input;
  int32_t in_pad_top = 0;
  int32_t in_pad_left = 0;
  if (k + 1 < count && ops[k].builtin_code == kPadCode && ops[k + 1].builtin_code == kConv2DCode) {
    // A PAD of A before a KxK expansion: its taps add 0, as the conv's own padding.
    if (!IsSpatialPad(ops[k], x, &in_pad_top, &in_pad_left)) {
      Format(why, why_size, "operator %d is not a PAD of rows and columns only", base + k);
      return false;
    }
    x = ops[k].output;
    ++k;
  }
  if (ops[k].builtin_code == kConv2DCode) {
    if (!IsExpansion(ops[k], x)) {
      Format(why, why_size,
             "operator %d is not a CONV_2D expansion of the block input (no dilation, kernel at "
             "most %dx%d, input patch at most %d bytes)",
             base + k, kMaxBlockKernel, kMaxBlockKernel, kMaxExpandPatch);
      return false;
    }
    const Tensor* f = ops[k].inputs[1];
    b.has_expand = true;
    b.expand = Conv(ops[k]);
    b.expand_stride_h = ops[k].options->stride_h;
    b.expand_stride_w = ops[k].options->stride_w;
    b.expand_kernel_h = f->shape.dims[1];
    b.expand_kernel_w = f->shape.dims[2];
    b.expand_pad_h = b.expand.data->pad_h + in_pad_top;
    b.expand_pad_w = b.expand.data->pad_w + in_pad_left;
    // Patch taps outside A hold the input zero point, which the input offset cancels.
    const int32_t zero_point = -b.expand.data->input_offset;
    if (b.expand_kernel_h * b.expand_kernel_w > 1 && (zero_point < -128 || zero_point > 127)) {
      Format(why, why_size, "the expansion's input zero point %d is not an int8 value", zero_point);
      return false;
    }
    x = ops[k].output;
    ++k;
  } else if (k > start) {
    Format(why, why_size, "the PAD of the block input is not followed by its expansion");
    return false;
  }
  const Tensor* mid = x;  // B, unpadded
  int32_t pad_top = 0;
  int32_t pad_left = 0;
  if (k < count && ops[k].builtin_code == kPadCode) {
    if (!IsSpatialPad(ops[k], x, &pad_top, &pad_left)) {
      Format(why, why_size, "operator %d is not a PAD of rows and columns only", base + k);
      return false;
    }
    x = ops[k].output;
    ++k;
  }
  if (k >= count) {
    Format(why, why_size, "the block ends before its depthwise conv");
    return false;
  }
  const BlockOp& dw = ops[k];
  const Tensor* dw_filter = dw.num_inputs > 1 ? dw.inputs[1] : nullptr;
  if (dw.builtin_code != kDepthwiseConv2DCode || dw.inputs[0] != x || dw_filter == nullptr ||
      dw_filter->shape.rank != 4 || !Is4D(dw.output) ||
      dw.output->shape.dims[3] != x->shape.dims[3] || dw.options->dilation_h != 1 ||
      dw.options->dilation_w != 1) {
    Format(why, why_size, "operator %d is not a depthwise conv (multiplier 1, no dilation) of %s",
           base + k, k == start ? "the block input" : "the expansion");
    return false;
  }
  b.depthwise = Conv(dw);
  b.kernel_h = dw_filter->shape.dims[1];
  b.kernel_w = dw_filter->shape.dims[2];
  if (b.kernel_h < 1 || b.kernel_h > kMaxBlockKernel || b.kernel_w < 1 ||
      b.kernel_w > kMaxBlockKernel) {
    Format(why, why_size, "the depthwise kernel %dx%d is larger than %dx%d", b.kernel_h, b.kernel_w,
           kMaxBlockKernel, kMaxBlockKernel);
    return false;
  }
  b.stride_h = dw.options->stride_h;
  b.stride_w = dw.options->stride_w;
  if (k + 1 >= count || !IsPointwise(ops[k + 1], dw.output) ||
      ops[k + 1].output->shape.dims[1] != dw.output->shape.dims[1] ||
      ops[k + 1].output->shape.dims[2] != dw.output->shape.dims[2]) {
    Format(why, why_size, "the depthwise conv is not followed by a 1x1 stride-1 CONV_2D");
    return false;
  }
  b.project = Conv(ops[k + 1]);
  b.output = ops[k + 1].output;
  k += 2;
  if (k < count && ops[k].builtin_code == kAddCode) {
    const BlockOp& add = ops[k];
    const bool first = add.num_inputs == 2 && add.inputs[0] == b.input && add.inputs[1] == b.output;
    const bool second =
        add.num_inputs == 2 && add.inputs[1] == b.input && add.inputs[0] == b.output;
    if (!(first || second) || b.input->shape != b.output->shape ||
        add.output->shape != b.output->shape) {
      Format(why, why_size, "operator %d is not an ADD of the block input and output", base + k);
      return false;
    }
    b.add = static_cast<const AddParams*>(add.op_data);
    b.input_is_add_input1 = first;
    b.output = add.output;
    ++k;
  }
  b.in_h = b.input->shape.dims[1];
  b.in_w = b.input->shape.dims[2];
  b.in_c = b.input->shape.dims[3];
  b.mid_h = mid->shape.dims[1];
  b.mid_w = mid->shape.dims[2];
  b.mid_c = mid->shape.dims[3];
  b.pad_h = b.depthwise.data->pad_h + pad_top;
  b.pad_w = b.depthwise.data->pad_w + pad_left;
  b.out_h = dw.output->shape.dims[1];
  b.out_w = dw.output->shape.dims[2];
  b.out_c = b.output->shape.dims[3];
  // A 1x1 expansion's taps: B pixel (i, j) is A pixel (i * stride, j * stride). (A KxK
  // expansion reads only the taps of its patch inside A.)
  const bool pointwise = b.expand_kernel_h * b.expand_kernel_w == 1;
  if (b.has_expand && (b.expand_stride_h <= 0 || b.expand_stride_w <= 0 ||
                       (pointwise && (int64_t{b.mid_h - 1} * b.expand_stride_h >= b.in_h ||
                                      int64_t{b.mid_w - 1} * b.expand_stride_w >= b.in_w)))) {
    Format(why, why_size, "the expansion's strides do not match its shapes");
    return false;
  }
  *out = b;
  *k_io = k;
  return true;
}

}  // namespace

bool MakeBottleneck(const BlockOpReader& ops, int32_t count, uint32_t pool_bytes,
                    BlockStage* stages, Bottleneck* out, char* why, uint32_t why_size) {
  BlockOp window[kMaxStageOps];
  OpOptions options[kMaxStageOps];
  if (count >= 2 && count <= kMaxBlockOps) ops.Read(0, &window[0], &options[0]);
  if (count < 2 || count > kMaxBlockOps || window[0].num_inputs < 1 || !Is4D(window[0].inputs[0]) ||
      window[0].inputs[0]->is_const) {
    Format(why, why_size,
           "a block is 2 to %d operators starting from a 4-D batch-1 activation tensor",
           kMaxBlockOps);
    return false;
  }
  Bottleneck b;
  b.stages = stages;
  const Tensor* x = window[0].inputs[0];
  for (int32_t k = 0; k < count;) {
    if (b.count == kMaxChainStages) {
      Format(why, why_size, "the chain has more than %d blocks", kMaxChainStages);
      return false;
    }
    // The next block lies within the next kMaxStageOps operators.
    const int32_t n = count - k < kMaxStageOps ? count - k : kMaxStageOps;
    for (int32_t i = 0; i < n; ++i) ops.Read(k + i, &window[i], &options[i]);
    int32_t used = 0;
    if (!ParseStage(window, n, k, &used, x, &stages[b.count], why, why_size)) return false;
    k += used;
    x = stages[b.count++].output;
  }
  b.input = stages[0].input;
  b.output = stages[b.count - 1].output;
  // The row walk below is as long as the chain is tall: bounded by the pool the input is in.
  if (b.input->bytes > pool_bytes) {
    Format(why, why_size, "its input '%s' (%u bytes) is larger than the %u-byte pool",
           b.input->name, static_cast<unsigned>(b.input->bytes), pool_bytes);
    return false;
  }
  int32_t rows[kMaxChainStages];
  BlockGeometry g[kMaxChainStages];
  for (int32_t s = 0; s < b.count; ++s) g[s] = GeometryOf(b, s);
  if (!ChainRingRows(g, b.count, rows)) {
    Format(why, why_size, "the chain's blocks do not fit together");
    return false;
  }
  *out = b;
  return true;
}

namespace {

// One stage's evaluation state inside a chain: its views, where its input and output rows
// are, and the steps both modes share.
class StageRun {
 public:
  StageRun() = default;
  // `in_ring_rows` / `out_ring_rows`: 0 when the stage reads the chain input / writes the
  // chain output in the pool, else the rows of the ring in the workspace at `*_ring_at`.
  void Init(const BlockStage& b, bool window, const RingBytes* in, const RingBytes* out,
            const RingBytes* ws, uint32_t ws_at, int32_t in_ring_rows, uint32_t in_ring_at,
            int32_t out_ring_rows, uint32_t out_ring_at) {
    b_ = &b;
    window_ = window;
    in_ = in;
    out_ = out;
    ws_ = ws;
    in_c_ = static_cast<uint32_t>(b.in_c);
    mid_c_ = static_cast<uint32_t>(b.mid_c);
    out_c_ = static_cast<uint32_t>(b.out_c);
    ring_row_ = static_cast<uint32_t>(b.mid_w) * mid_c_;
    window_row_ = static_cast<uint32_t>(b.kernel_w) * mid_c_;
    b_at_ = ws_at;
    c_at_ = ws_at + static_cast<uint32_t>(b.kernel_h) * (window ? window_row_ : ring_row_);
    d_at_ = c_at_ + mid_c_;
    // Staging for an A pixel that wraps around the pool end (the workspace never wraps).
    stage_ = ws_->BeginWrite(d_at_ + out_c_, in_c_, nullptr);
    patch_at_ = d_at_ + out_c_ + in_c_;
    patch_bytes_ = static_cast<uint32_t>(b.expand_kernel_h * b.expand_kernel_w) * in_c_;
    in_ring_rows_ = in_ring_rows;
    in_ring_at_ = in_ring_at;
    out_ring_rows_ = out_ring_rows;
    out_ring_at_ = out_ring_at;
  }

  // Rows mode: B row `by` into the ring of kernel_h rows.
  void BRow(int32_t by) {
    const uint32_t slot = b_at_ + static_cast<uint32_t>(by % b_->kernel_h) * ring_row_;
    for (int32_t bx = 0; bx < b_->mid_w; ++bx) {
      const uint32_t at = slot + static_cast<uint32_t>(bx) * mid_c_;
      if (bx + 1 < b_->mid_w && ComputeBPair(by, bx, at)) {
        ++bx;
      } else {
        ComputeB(by, bx, at);
      }
    }
  }

  // Output pixel (oy, ox), its depthwise window starting at B row y0 with valid rows
  // [ky0, ky1). Window mode: the window's B pixels computed afresh first.
  void Pixel(int32_t oy, int32_t ox, int32_t y0, int32_t ky0, int32_t ky1) {
    const int32_t x0 = ox * b_->stride_w - b_->pad_w;
    int kx0, kx1;
    ValidTaps(x0, 1, b_->kernel_w, b_->mid_w, &kx0, &kx1);
    uint32_t row_at[kMaxBlockKernel];
    for (int ky = ky0; ky < ky1 && kx1 > kx0; ++ky) {
      if (!window_) {
        row_at[ky] = b_at_ + static_cast<uint32_t>((y0 + ky) % b_->kernel_h) * ring_row_ +
                     static_cast<uint32_t>(x0 + kx0) * mid_c_;
        continue;
      }
      row_at[ky] =
          b_at_ + static_cast<uint32_t>(ky) * window_row_ + static_cast<uint32_t>(kx0) * mid_c_;
      for (int kx = kx0; kx < kx1; ++kx) {
        ComputeB(y0 + ky, x0 + kx, row_at[ky] + static_cast<uint32_t>(kx - kx0) * mid_c_);
      }
    }
    FinishPixel(oy, ox, row_at, ky0, ky1, kx0, kx1,
                static_cast<int>(window_ ? window_row_ : ring_row_));
  }

 private:
  // A pixel (ay, ax): from the pool (the chain input) or the ring of the stage before.
  const int8_t* APixel(int32_t ay, int32_t ax) const {
    const uint32_t col = static_cast<uint32_t>(ax) * in_c_;
    if (in_ring_rows_ == 0)
      return in_->Read(static_cast<uint32_t>(ay * b_->in_w) * in_c_ + col, in_c_, stage_);
    const uint32_t row = static_cast<uint32_t>(ay % in_ring_rows_);
    return ws_->ReadFlat(in_ring_at_ + row * static_cast<uint32_t>(b_->in_w) * in_c_ + col, in_c_);
  }

  // Writes the stage's output pixel (oy, ox): into the pool (the chain output) or the ring
  // the next stage reads.
  void StorePixel(int32_t oy, int32_t ox, const int8_t* px) const {
    const uint32_t col = static_cast<uint32_t>(ox) * out_c_;
    if (out_ring_rows_ == 0) {
      out_->Store(static_cast<uint32_t>(oy * b_->out_w) * out_c_ + col, px, out_c_);
      return;
    }
    const uint32_t row = static_cast<uint32_t>(oy % out_ring_rows_);
    const uint32_t at = out_ring_at_ + row * static_cast<uint32_t>(b_->out_w) * out_c_ + col;
    memcpy(ws_->BeginWrite(at, out_c_, nullptr), px, out_c_);
  }

  // Writes B pixel (by, bx) to workspace byte `at`: the expansion of its A pixel or patch
  // (or the A pixel itself without an expansion).
  void ComputeB(int32_t by, int32_t bx, uint32_t at) {
    if (b_->expand_kernel_h * b_->expand_kernel_w > 1) {
      ExpandPatch(by, bx, at);
      return;
    }
    const int32_t ay = by * (b_->has_expand ? b_->expand_stride_h : 1);
    const int32_t ax = bx * (b_->has_expand ? b_->expand_stride_w : 1);
    const int8_t* a = APixel(ay, ax);
    int8_t* dst = ws_->BeginWrite(at, mid_c_, nullptr);
    if (b_->has_expand) {
      PointwisePixel(a, static_cast<int>(in_c_), b_->expand, static_cast<int>(mid_c_), dst);
    } else {
      memcpy(dst, a, mid_c_);
    }
  }

  // The patch of A that B pixel (by, bx) of a KxK expansion is computed from, gathered
  // into workspace bytes `patch_at` (taps outside A hold the input zero point: they add 0, as
  // the conv's skipped padding taps), in the filter's (ky, kx, channel) order.
  void GatherPatch(int32_t by, int32_t bx, uint32_t patch_at) {
    const int32_t y0 = by * b_->expand_stride_h - b_->expand_pad_h;
    const int32_t x0 = bx * b_->expand_stride_w - b_->expand_pad_w;
    const int32_t kw = b_->expand_kernel_w;
    const uint32_t run = static_cast<uint32_t>(kw) * in_c_;  // one patch row
    const int8_t fill = static_cast<int8_t>(-b_->expand.data->input_offset);
    const bool inside_x = x0 >= 0 && x0 + kw <= b_->in_w;
    int8_t* patch = ws_->BeginWrite(patch_at, patch_bytes_, nullptr);
    for (int32_t ky = 0; ky < b_->expand_kernel_h; ++ky, patch += run) {
      const int32_t ay = y0 + ky;
      if (ay < 0 || ay >= b_->in_h) {
        memset(patch, fill, run);
        continue;
      }
      if (inside_x) {  // the row's taps are contiguous in A
        const int8_t* a = ARun(ay, x0, run);
        if (a != nullptr) {
          memcpy(patch, a, run);
          continue;
        }
      }
      for (int32_t kx = 0; kx < kw; ++kx) {
        const int32_t ax = x0 + kx;
        int8_t* dst = patch + static_cast<uint32_t>(kx) * in_c_;
        if (ax < 0 || ax >= b_->in_w) {
          memset(dst, fill, in_c_);
        } else {
          memcpy(dst, APixel(ay, ax), in_c_);
        }
      }
    }
  }

  // `n` bytes of A row `ay` from column `ax` on, as one view; nullptr where they wrap around
  // the pool end (then read pixel by pixel).
  const int8_t* ARun(int32_t ay, int32_t ax, uint32_t n) const {
    const uint32_t col = static_cast<uint32_t>(ax) * in_c_;
    if (in_ring_rows_ > 0) {
      const uint32_t row = static_cast<uint32_t>(ay % in_ring_rows_);
      return ws_->ReadFlat(in_ring_at_ + row * static_cast<uint32_t>(b_->in_w) * in_c_ + col, n);
    }
    const uint32_t at = static_cast<uint32_t>(ay * b_->in_w) * in_c_ + col;
    return in_->Wraps(at, n) ? nullptr : in_->ReadFlat(at, n);
  }

  // B pixel (by, bx) of a KxK expansion: one dot product per channel over its patch.
  void ExpandPatch(int32_t by, int32_t bx, uint32_t at) {
    GatherPatch(by, bx, patch_at_);
    const int8_t* x = ws_->ReadFlat(patch_at_, patch_bytes_);
    int8_t* dst = ws_->BeginWrite(at, mid_c_, nullptr);
    PointwisePixel(x, static_cast<int>(patch_bytes_), b_->expand, static_cast<int>(mid_c_), dst);
  }

  // B pixels (by, bx) and (by, bx + 1) to workspace bytes `at` and `at + mid_c`, as two
  // ComputeB calls would write them; false (nothing done) where the pair loops do not apply.
  bool ComputeBPair(int32_t by, int32_t bx, uint32_t at) {
#if TFLM_VMCU_DSP
    if (!b_->has_expand) return false;
    if (b_->expand_kernel_h * b_->expand_kernel_w > 1) {  // two patches, side by side
      if (patch_bytes_ > static_cast<uint32_t>(dsp::kPairPatch)) return false;
      GatherPatch(by, bx, patch_at_);
      GatherPatch(by, bx + 1, patch_at_ + patch_bytes_);
      const int8_t* x = ws_->ReadFlat(patch_at_, 2 * patch_bytes_);
      int8_t* dst = ws_->BeginWrite(at, 2 * mid_c_, nullptr);
      PointwisePair(x, x + patch_bytes_, static_cast<int>(patch_bytes_), b_->expand,
                    static_cast<int>(mid_c_), dst, dst + mid_c_);
      return true;
    }
    if (in_c_ > static_cast<uint32_t>(dsp::kPairPatch)) return false;
    const int32_t ay = by * b_->expand_stride_h;
    const int32_t ax = bx * b_->expand_stride_w;
    if (in_ring_rows_ == 0) {  // one stage buffer: neither pixel may wrap
      const uint32_t at_a = static_cast<uint32_t>(ay * b_->in_w + ax) * in_c_;
      const uint32_t at_b = at_a + static_cast<uint32_t>(b_->expand_stride_w) * in_c_;
      if (in_->Wraps(at_a, in_c_) || in_->Wraps(at_b, in_c_)) return false;
    }
    const int8_t* a = APixel(ay, ax);
    const int8_t* a_next = APixel(ay, ax + b_->expand_stride_w);
    int8_t* dst = ws_->BeginWrite(at, 2 * mid_c_, nullptr);
    PointwisePair(a, a_next, static_cast<int>(in_c_), b_->expand, static_cast<int>(mid_c_), dst,
                  dst + mid_c_);
    return true;
#else
    (void)by;
    (void)bx;
    (void)at;
    return false;
#endif
  }

  // Output pixel (oy, ox) from its valid depthwise taps [ky0, ky1) x [kx0, kx1): B pixel
  // (row ky, column kx) is at workspace byte row_at[ky] + (kx - kx0) * mid_c, and B rows are
  // row_step bytes apart in the workspace (in rows mode, except across the ring's end).
  void FinishPixel(int32_t oy, int32_t ox, const uint32_t* row_at, int ky0, int ky1, int kx0,
                   int kx1, int row_step) {
    const ConvData& dw = *b_->depthwise.data;
    const int8_t* rows[kMaxBlockKernel];
    // A window entirely in the padding (no valid tap) reads nothing: C = bias.
    const uint32_t span = kx1 > kx0 ? static_cast<uint32_t>(kx1 - kx0) * mid_c_ : 0;
    for (int ky = ky0; ky < ky1 && span > 0; ++ky) rows[ky] = ws_->ReadFlat(row_at[ky], span);
    int8_t* c_px = ws_->BeginWrite(c_at_, mid_c_, nullptr);
    for (uint32_t c0 = 0; c0 < mid_c_; c0 += kChannelBlock) {
      const uint32_t n = mid_c_ - c0 < kChannelBlock ? mid_c_ - c0 : kChannelBlock;
      int32_t acc[kChannelBlock];
#if TFLM_VMCU_DSP
      // Runs of B rows one row apart in the workspace (all of them in window mode; in rows
      // mode, up to where the ring of rows wraps) as windows: sums in registers across taps.
      const int32_t* bias = b_->depthwise.bias != nullptr ? b_->depthwise.bias + c0 : nullptr;
      const int w_row = b_->kernel_w * static_cast<int>(mid_c_);
      bool first = true;
      for (int k0 = ky0, k1 = ky0; k0 < ky1 && span > 0; k0 = k1, first = false) {
        for (k1 = k0 + 1; k1 < ky1 && rows[k1] == rows[k1 - 1] + row_step; ++k1) {
        }
        dsp::DepthwiseWindow(
            rows[k0] + c0, b_->depthwise.filter + k0 * w_row + kx0 * static_cast<int>(mid_c_) + c0,
            static_cast<int>(n), k1 - k0, kx1 - kx0, row_step, static_cast<int>(mid_c_), w_row,
            static_cast<int>(mid_c_), dw.input_offset, first ? bias : acc, acc);
      }
      if (first) {  // no valid tap
        for (uint32_t c = 0; c < n; ++c) acc[c] = bias != nullptr ? bias[c] : 0;
      }
      dsp::RequantizeBlock(acc, static_cast<int>(n), dw.multiplier + c0, dw.shift + c0, 1,
                           dw.output_offset, dw.act_min, dw.act_max, c_px + c0,
                           dw.right_shift_only);
#else
      (void)row_step;
      for (uint32_t c = 0; c < n; ++c) acc[c] = 0;
      for (int ky = ky0; ky < ky1 && span > 0; ++ky) {
        for (int kx = kx0; kx < kx1; ++kx) {
          const int8_t* v = rows[ky] + static_cast<uint32_t>(kx - kx0) * mid_c_ + c0;
          const int8_t* w =
              b_->depthwise.filter + static_cast<uint32_t>(ky * b_->kernel_w + kx) * mid_c_ + c0;
          MacTap(v, w, static_cast<int>(n), dw.input_offset, acc);
        }
      }
      for (uint32_t c = 0; c < n; ++c) {
        const uint32_t ch = c0 + c;
        int32_t a = acc[c];
        if (b_->depthwise.bias != nullptr) a += b_->depthwise.bias[ch];
        c_px[ch] = RequantizeChannel(a, dw.multiplier[ch], dw.shift[ch], dw.output_offset,
                                     dw.act_min, dw.act_max);
      }
#endif
    }
    // D pixel: the projection of the C pixel.
    const int8_t* c_in = ws_->ReadFlat(c_at_, mid_c_);
    int8_t* d_px = ws_->BeginWrite(d_at_, out_c_, nullptr);
    PointwisePixel(c_in, static_cast<int>(mid_c_), b_->project, static_cast<int>(out_c_), d_px);
    // The block output pixel: D, or the residual ADD of the A pixel and D.
    const int8_t* d_in = ws_->ReadFlat(d_at_, out_c_);
    if (b_->add != nullptr) {
      const int8_t* a = APixel(oy, ox);
      int8_t* e_px = ws_->BeginWrite(d_at_, out_c_, nullptr);
      const AddParams add = *b_->add;
      const bool first = b_->input_is_add_input1;
      for (uint32_t c = 0; c < out_c_; ++c) {
        const int32_t s_in = first ? Scale1(a[c], add) : Scale2(a[c], add);
        const int32_t s_d = first ? Scale2(d_in[c], add) : Scale1(d_in[c], add);
        e_px[c] = AddOutput(first ? s_in : s_d, first ? s_d : s_in, add);
      }
      d_in = e_px;
    }
    StorePixel(oy, ox, d_in);
  }

 private:
  const BlockStage* b_ = nullptr;
  bool window_ = false;
  const RingBytes* in_ = nullptr;  // the chain input, output and workspace
  const RingBytes* out_ = nullptr;
  const RingBytes* ws_ = nullptr;
  uint32_t in_c_ = 0, mid_c_ = 0, out_c_ = 0;
  uint32_t ring_row_ = 0, window_row_ = 0;
  uint32_t b_at_ = 0, c_at_ = 0, d_at_ = 0;
  int8_t* stage_ = nullptr;
  uint32_t patch_at_ = 0, patch_bytes_ = 0;
  int32_t in_ring_rows_ = 0, out_ring_rows_ = 0;
  uint32_t in_ring_at_ = 0, out_ring_at_ = 0;
};

// The schedule's visitor that computes: each call goes to its stage. Out of line, so that
// the work's locals are on the stack once, at the deepest stage, and not in every frame of
// the schedule's recursion (one per stage of the chain).
class ChainRun {
 public:
  static constexpr bool kPixels = true;
  explicit ChainRun(StageRun* stages) : stages_(stages) {}
  __attribute__((noinline)) void BRow(int32_t s, int32_t by) { stages_[s].BRow(by); }
  __attribute__((noinline)) void Pixel(int32_t s, int32_t oy, int32_t ox, int32_t y0, int32_t ky0,
                                       int32_t ky1) {
    stages_[s].Pixel(oy, ox, y0, ky0, ky1);
  }
  void Rows(int32_t, int32_t, int32_t) {}

 private:
  StageRun* stages_;
};

}  // namespace

bool PlaceWorkspace(Bottleneck* b, uint32_t offset, uint32_t bytes, uint32_t pool, int32_t index,
                    char* why, uint32_t why_size) {
  const uint32_t need = BottleneckWorkspaceBytes(*b);
  if (need == 0xffffffffu || bytes < need || offset > pool || bytes > pool - offset) {
    Format(why, why_size,
           "a %u-byte workspace at offset %u of a %u-byte pool; it needs %u bytes inside the "
           "pool",
           bytes, offset, pool, need);
    return false;
  }
  b->workspace = Tensor();
  b->workspace.name = "workspace";
  b->workspace.index = index;
  b->workspace.bytes = bytes;
  b->workspace.offset = offset;
  b->workspace_offset = offset;
  return true;
}

void EvalBottleneck(const Bottleneck& b, uint8_t* pool, uint32_t pool_size, HazardState* hazard) {
  BlockGeometry g[kMaxChainStages];
  int32_t rows[kMaxChainStages];
  for (int32_t s = 0; s < b.count; ++s) g[s] = GeometryOf(b, s);
  if (!ChainRingRows(g, b.count, rows)) return;  // refused at MakeBottleneck
  const RingBytes in(b.input, pool, pool_size, b.input->offset, hazard);
  const RingBytes out(b.output, pool, pool_size, b.output->offset, hazard);
  const RingBytes ws(&b.workspace, pool, pool_size, b.workspace_offset, hazard);
  StageRun stages[kMaxChainStages];
  // Workspace: the stages' own parts, then the rings of the inner tensors.
  uint32_t ring_at = 0;
  for (int32_t s = 0; s < b.count; ++s) ring_at += StageWorkspaceBytes(g[s]);
  uint32_t stage_at = 0;
  uint32_t in_ring_at = 0;
  for (int32_t s = 0; s < b.count; ++s) {
    const bool last = s + 1 == b.count;
    const int32_t in_rows = s == 0 ? 0 : rows[s - 1];
    const int32_t out_rows = last ? 0 : rows[s];
    stages[s].Init(b.stages[s], b.window, &in, &out, &ws, stage_at, in_rows, in_ring_at, out_rows,
                   ring_at);
    stage_at += StageWorkspaceBytes(g[s]);
    in_ring_at = ring_at;
    if (!last) ring_at += static_cast<uint32_t>(rows[s] * g[s].out_w * g[s].out_c);
  }
  ChainRun run(stages);
  ChainSchedule<ChainRun>(g, b.count, &run).Run();
}

}  // namespace tflm_vmcu

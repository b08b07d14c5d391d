#include "access_order.h"

#include "kernels/dim_list.h"
#include "kernels/inverted_bottleneck.h"
#include "op_names.h"

namespace tflm_vmcu {
namespace {

constexpr int64_t kNoRead = INT64_MAX / 4;  // read_lo of a unit that reads nothing
constexpr int64_t kNoWrite = -kNoRead;      // write_hi of a unit that writes nothing

int64_t Min(int64_t a, int64_t b) { return a < b ? a : b; }
int64_t Max(int64_t a, int64_t b) { return a > b ? a : b; }

// The displacement bound over a stream of units, in execution order. Pairs (j <= k) give
// d >= write_hi[j] - read_lo[k]; the running maximum of write_hi covers every j <= k.
class Scan {
 public:
  // `reads`: the unit reads some tensor (this input's bytes from read_lo, unless kNoRead).
  void Unit(int64_t read_lo, int64_t write_hi, bool reads) {
    if (reads || !seen_read_) lo_ = read_lo;  // else: part of the last unit that read
    seen_read_ |= reads;
    max_hi_ = Max(max_hi_, write_hi);
    d_ = Max(d_, max_hi_ - lo_);
  }
  void Unit(int64_t read_lo, int64_t write_hi) { Unit(read_lo, write_hi, read_lo != kNoRead); }
  int64_t Result() const { return d_; }

 private:
  int64_t lo_ = kNoRead;
  int64_t max_hi_ = kNoWrite;
  int64_t d_ = 0;
  bool seen_read_ = false;
};

int64_t Dim(const Tensor& t, int i) { return t.shape.dims[i]; }
int64_t ItemSize(const Tensor& t) {
  return static_cast<int64_t>(DTypeSize(static_cast<uint8_t>(t.type)));
}

// Row-major enumeration of the positions of up to kMaxRank dims (with element strides).
class Odometer {
 public:
  Odometer(const int64_t* dims, const int64_t* strides, int rank) : rank_(rank) {
    for (int i = 0; i < rank; ++i) {
      dims_[i] = dims[i];
      strides_[i] = strides[i];
      done_ |= dims[i] <= 0;
    }
  }
  bool Done() const { return done_; }
  int64_t Offset() const { return offset_; }
  const int64_t* Index() const { return idx_; }
  void Next() {
    for (int i = rank_ - 1; i >= 0; --i) {
      offset_ += strides_[i];
      if (++idx_[i] < dims_[i]) return;
      offset_ -= strides_[i] * dims_[i];
      idx_[i] = 0;
    }
    done_ = true;
  }

 private:
  int rank_;
  int64_t dims_[kMaxRank] = {};
  int64_t strides_[kMaxRank] = {};
  int64_t idx_[kMaxRank] = {};
  int64_t offset_ = 0;
  bool done_ = false;
};

// `rows` consecutive rows of `length` elements, each in units of `chunk` elements; element e
// sits at byte e * in_bytes of the input and e * out_bytes of the output.
int64_t Rows(int64_t rows, int64_t length, int64_t chunk, int64_t in_bytes, int64_t out_bytes) {
  Scan scan;
  for (int64_t r = 0; r < rows && length > 0; ++r) {
    for (int64_t s = 0; s < length; s += chunk)
      scan.Unit((r * length + s) * in_bytes, (r * length + Min(s + chunk, length)) * out_bytes);
  }
  return scan.Result();
}

// One axis of a window op: where each output position's first valid tap lies
// (ValidTaps in kernels/conv_common.h, padding as ComputePadding).
struct Axis {
  int64_t in, taps, stride, dilation, pad;

  Axis(int64_t out_size, int64_t in_size, int64_t taps_, int64_t stride_, int64_t dilation_)
      : in(in_size), taps(taps_), stride(stride_), dilation(dilation_) {
    const int64_t eff = (taps - 1) * dilation + 1;
    pad = Max(0, ((out_size - 1) * stride + eff - in_size) / 2);
  }
  // Input index of output position o's first valid tap; false when the window is padding.
  bool FirstTap(int64_t o, int64_t* at) const {
    const int64_t origin = o * stride - pad;
    const int64_t start = origin < 0 ? (-origin + dilation - 1) / dilation : 0;
    const int64_t end = origin < in ? Min((in - 1 - origin) / dilation + 1, taps) : 0;
    *at = origin + dilation * start;
    return start < end;
  }
};

// Window ops: per output pixel, units of `block` of the `channels` channels, each reading from
// its first channel of the pixel's first valid tap and writing its `mult` bytes per channel.
int64_t Windows(const Tensor& in, const Tensor& out, int64_t taps_h, int64_t taps_w,
                int64_t stride_h, int64_t stride_w, int64_t dil_h, int64_t dil_w, int64_t channels,
                int64_t block, int64_t mult) {
  if (in.shape.rank != 4 || out.shape.rank != 4 || stride_h < 1 || stride_w < 1 || dil_h < 1 ||
      dil_w < 1 || block < 1 || taps_h < 1 || taps_w < 1)
    return kNoOverlap;
  const int64_t in_h = Dim(in, 1), in_w = Dim(in, 2), in_d = Dim(in, 3);
  const int64_t out_h = Dim(out, 1), out_w = Dim(out, 2);
  const Axis ay(out_h, in_h, taps_h, stride_h, dil_h), ax(out_w, in_w, taps_w, stride_w, dil_w);
  Scan scan;
  int64_t px = 0;
  for (int64_t b = 0; b < Dim(in, 0); ++b) {
    for (int64_t oy = 0; oy < out_h; ++oy) {
      int64_t y = 0;
      const bool y_ok = ay.FirstTap(oy, &y);
      for (int64_t ox = 0; ox < out_w; ++ox, ++px) {
        int64_t x = 0;
        const bool ok = ax.FirstTap(ox, &x) && y_ok;
        const int64_t first = ((b * in_h + y) * in_w + x) * in_d;
        for (int64_t c0 = 0; c0 < channels; c0 += block)
          scan.Unit(ok ? first + c0 : kNoRead, (px * channels + Min(c0 + block, channels)) * mult);
      }
    }
  }
  return scan.Result();
}

int64_t Numel(const Shape& s) { return s.FlatSize(); }

// Length of the innermost row of MakeBroadcastPlan (kernels/elementwise.h): output dims of
// extent 1 dropped, neighbours merged while contiguous in both inputs.
int64_t BroadcastInner(const Shape& a, const Shape& b, const Shape& out) {
  const int rank = out.rank;
  if (a.rank > rank || b.rank > rank) return 0;
  int64_t ea[kMaxRank] = {}, eb[kMaxRank] = {}, sa[kMaxRank] = {}, sb[kMaxRank] = {};
  for (int i = 0; i < rank; ++i) {
    ea[i] = i < rank - a.rank ? 1 : a.dims[i - (rank - a.rank)];
    eb[i] = i < rank - b.rank ? 1 : b.dims[i - (rank - b.rank)];
  }
  int64_t step_a = 1, step_b = 1;
  for (int i = rank - 1; i >= 0; --i) {
    sa[i] = ea[i] == 1 ? 0 : step_a;
    sb[i] = eb[i] == 1 ? 0 : step_b;
    step_a *= ea[i];
    step_b *= eb[i];
  }
  int n = 0;
  int64_t dims[kMaxRank] = {}, s1[kMaxRank] = {}, s2[kMaxRank] = {};
  for (int i = 0; i < rank; ++i) {
    const int64_t o = out.dims[i];
    if (o == 1) continue;
    if (n > 0 && s1[n - 1] == sa[i] * o && s2[n - 1] == sb[i] * o) {
      dims[n - 1] *= o;
      s1[n - 1] = sa[i];
      s2[n - 1] = sb[i];
      continue;
    }
    dims[n] = o;
    s1[n] = sa[i];
    s2[n] = sb[i];
    ++n;
  }
  return n > 0 ? dims[n - 1] : 1;
}

bool SameExtended(const Shape& a, const Shape& b) {
  const int rank = a.rank > b.rank ? a.rank : b.rank;
  for (int i = 0; i < rank; ++i) {
    const int64_t x = i < rank - a.rank ? 1 : a.dims[i - (rank - a.rank)];
    const int64_t y = i < rank - b.rank ? 1 : b.dims[i - (rank - b.rank)];
    if (x != y) return false;
  }
  return true;
}

// Same shape: flat chunks, both inputs read per unit. Broadcast: the re-read input never
// overlaps the output; the full-size one is read as the output is written, one innermost
// plan row at a time in chunks.
int64_t Binary(const AccessOp& op, int32_t pos) {
  if (op.num_inputs < 2 || op.inputs[0] == nullptr || op.inputs[1] == nullptr) return kNoOverlap;
  const Shape& a = op.inputs[0]->shape;
  const Shape& b = op.inputs[1]->shape;
  const Shape& out = op.output->shape;
  const int64_t n = Numel(out);
  if (SameExtended(a, b) || n == 0) return Rows(1, n, kUnitChunk, 1, 1);
  if (Numel(pos == 0 ? a : b) != n) return kNoOverlap;
  const int64_t inner = BroadcastInner(a, b, out);
  return inner > 0 ? Rows(n / inner, inner, kUnitChunk, 1, 1) : kNoOverlap;
}

// Softmax: per row (last axis), the statistics passes and the first chunk form one unit,
// each later chunk another.
int64_t Softmax(const Tensor& in, const Tensor& out) {
  if (in.shape.rank == 0) return kNoOverlap;
  const int64_t depth = Dim(in, in.shape.rank - 1);
  const int64_t rows = depth > 0 ? Numel(in.shape) / depth : 0;
  return Rows(rows, depth, kUnitChunk, ItemSize(in), ItemSize(out));
}

// MEAN: with the input's innermost dim kept, units of kUnitChunk outputs along it, each
// reading that run of the input for every reduced position; else one output per unit.
int64_t Mean(const AccessOp& op) {
  const Tensor& in = *op.inputs[0];
  const Tensor* axes = op.num_inputs > 1 ? op.inputs[1] : nullptr;
  const int rank = in.shape.rank;
  bool reduced[kMaxRank] = {};
  if (rank > 0) {
    if (axes == nullptr || !axes->is_const || axes->type != DType::kInt32 || axes->data == nullptr)
      return kNoOverlap;
    for (size_t i = 0; i < axes->bytes / 4; ++i) {
      int32_t a;
      memcpy(&a, axes->data + 4 * i, 4);
      if (a < 0) a += rank;
      if (a < 0 || a >= rank) return kNoOverlap;
      reduced[a] = true;
    }
  }
  DimListOf<int64_t> kept;
  int64_t stride = 1;
  int64_t strides[kMaxRank] = {};
  for (int i = rank - 1; i >= 0; --i) {
    strides[i] = stride;
    stride *= Dim(in, i);
  }
  for (int i = 0; i < rank; ++i)
    if (!reduced[i]) kept.Append(Dim(in, i), strides[i]);
  Scan scan;
  if (kept.rank > 0 && kept.strides[kept.rank - 1] == 1) {
    const int64_t inner = kept.dims[kept.rank - 1];
    int64_t q = 0;
    for (Odometer it(kept.dims, kept.strides, kept.rank - 1); !it.Done(); it.Next(), ++q) {
      for (int64_t s = 0; s < inner; s += kUnitChunk)
        scan.Unit(it.Offset() + s, q * inner + Min(s + kUnitChunk, inner));
    }
    return scan.Result();
  }
  int64_t q = 0;
  for (Odometer it(kept.dims, kept.strides, kept.rank); !it.Done(); it.Next())
    scan.Unit(it.Offset(), ++q);
  return scan.Result();
}

// PAD: one unit per innermost output row, in row-major order of the four outer dims; a row
// inside the input copies the next input row.
int64_t Pad(const AccessOp& op) {
  const Tensor& in = *op.inputs[0];
  const Tensor* paddings = op.num_inputs > 1 ? op.inputs[1] : nullptr;
  const int rank = in.shape.rank;
  if (rank > 5 || paddings == nullptr || !paddings->is_const || paddings->data == nullptr ||
      op.output->shape.rank != rank)
    return kNoOverlap;
  const bool wide = paddings->type == DType::kInt64;
  if ((!wide && paddings->type != DType::kInt32) ||
      paddings->bytes < static_cast<size_t>(2 * rank) * (wide ? 8 : 4))
    return kNoOverlap;
  int64_t in_dims[5], out_dims[5], before[5];
  const int lead = 5 - rank;
  for (int i = 0; i < 5; ++i) {
    in_dims[i] = i < lead ? 1 : Dim(in, i - lead);
    out_dims[i] = i < lead ? 1 : Dim(*op.output, i - lead);
    before[i] = 0;
    if (i < lead) continue;
    if (wide) {
      memcpy(&before[i], paddings->data + 16 * (i - lead), 8);
    } else {
      int32_t v;
      memcpy(&v, paddings->data + 8 * (i - lead), 4);
      before[i] = v;
    }
  }
  const int64_t ones[4] = {1, 1, 1, 1};
  Scan scan;
  int64_t in_at = 0, row = 0;
  for (Odometer it(out_dims, ones, 4); !it.Done(); it.Next()) {
    bool inside = true;
    for (int i = 0; i < 4; ++i)
      inside &= it.Index()[i] >= before[i] && it.Index()[i] < before[i] + in_dims[i];
    scan.Unit(inside ? in_at : kNoRead, ++row * out_dims[4]);
    if (inside) in_at += in_dims[4];
  }
  return scan.Result();
}

// CONCATENATION: for each outer index, each input's slice in chunks; units of the other
// inputs read (them), not this one.
int64_t Concatenation(const AccessOp& op, int32_t pos) {
  const Tensor& out = *op.output;
  const int rank = out.shape.rank;
  int32_t axis = op.options->axis;
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank) return kNoOverlap;
  int64_t outer = 1;
  for (int i = 0; i < axis; ++i) outer *= Dim(out, i);
  Scan scan;
  int64_t at = 0;
  for (int64_t o = 0; o < outer; ++o) {
    for (int32_t i = 0; i < op.num_inputs; ++i) {
      const Tensor* t = op.inputs[i];
      if (t == nullptr || t->shape.rank != rank) return kNoOverlap;
      int64_t size = ItemSize(*t);
      for (int d = axis; d < rank; ++d) size *= Dim(*t, d);
      for (int64_t k = 0; k < size; k += kUnitChunk)
        scan.Unit(i == pos ? o * size + k : kNoRead, at + Min(k + kUnitChunk, size), true);
      at += size;
    }
  }
  return scan.Result();
}

// TRANSPOSE: one unit per innermost output row, reading from the input element at the row's
// first index.
int64_t Transpose(const AccessOp& op) {
  const Tensor& in = *op.inputs[0];
  const Tensor* perm_t = op.num_inputs > 1 ? op.inputs[1] : nullptr;
  const int rank = in.shape.rank;
  Scan scan;
  if (rank == 0) {
    scan.Unit(0, 1);
    return scan.Result();
  }
  if (perm_t == nullptr || !perm_t->is_const || perm_t->type != DType::kInt32 ||
      perm_t->data == nullptr || perm_t->bytes < static_cast<size_t>(4 * rank))
    return kNoOverlap;
  int64_t in_strides[kMaxRank] = {}, out_dims[kMaxRank] = {}, row_strides[kMaxRank] = {};
  int64_t stride = 1;
  for (int i = rank - 1; i >= 0; --i) {
    in_strides[i] = stride;
    stride *= Dim(in, i);
  }
  for (int i = 0; i < rank; ++i) {
    int32_t p;
    memcpy(&p, perm_t->data + 4 * i, 4);
    if (p < 0) p += rank;
    if (p < 0 || p >= rank) return kNoOverlap;
    out_dims[i] = Dim(in, p);
    row_strides[i] = in_strides[p];
  }
  const int64_t row = out_dims[rank - 1];
  int64_t r = 0;
  for (Odometer it(out_dims, row_strides, rank - 1); !it.Done(); it.Next())
    scan.Unit(it.Offset(), ++r * row);
  return scan.Result();
}

int64_t ModelOf(const AccessOp& op, int32_t pos, KernelLibrary library) {
  const Tensor& in = *op.inputs[0];
  const Tensor& out = *op.output;
  const OpOptions& o = *op.options;
  const bool reference = library == KernelLibrary::kTflmReference;
  switch (op.builtin_code) {
    case kOpConv2D: {
      if (pos != 0 || op.num_inputs < 2 || op.inputs[1] == nullptr) return kNoOverlap;
      const Tensor& filter = *op.inputs[1];
      if (filter.shape.rank != 4 || out.shape.rank != 4) return kNoOverlap;
      const int64_t out_d = Dim(out, 3);
      return Windows(in, out, Dim(filter, 1), Dim(filter, 2), o.stride_h, o.stride_w, o.dilation_h,
                     o.dilation_w, out_d, out_d, 1);
    }
    case kOpDepthwiseConv2D: {
      if (pos != 0 || op.num_inputs < 2 || op.inputs[1] == nullptr) return kNoOverlap;
      const Tensor& filter = *op.inputs[1];
      if (filter.shape.rank != 4 || in.shape.rank != 4) return kNoOverlap;
      const int64_t mult = o.depth_multiplier;
      const int64_t block = reference || mult != 1 ? 1 : kWindowChannelBlock;
      return Windows(in, out, Dim(filter, 1), Dim(filter, 2), o.stride_h, o.stride_w, o.dilation_h,
                     o.dilation_w, Dim(in, 3), block, mult);
    }
    case kOpAveragePool2D:
    case kOpMaxPool2D:
      if (pos != 0 || in.shape.rank != 4) return kNoOverlap;
      return Windows(in, out, o.filter_h, o.filter_w, o.stride_h, o.stride_w, 1, 1, Dim(in, 3),
                     reference ? 1 : kWindowChannelBlock, 1);
    case kOpFullyConnected: {
      if (pos != 0 || op.num_inputs < 2 || op.inputs[1] == nullptr) return kNoOverlap;
      const Tensor& filter = *op.inputs[1];
      if (filter.shape.rank != 2 || Dim(filter, 1) <= 0) return kNoOverlap;
      const int64_t out_d = Dim(filter, 0), accum = Dim(filter, 1);
      const int64_t batches = static_cast<int64_t>(in.bytes) / accum;
      Scan scan;
      for (int64_t b = 0; b < batches; ++b) scan.Unit(b * accum, (b + 1) * out_d);
      return scan.Result();
    }
    case kOpRelu:
    case kOpRelu6:
    case kOpLogistic:
    case kOpHardSwish:
    case kOpQuantize:
    case kOpDequantize:
      if (pos != 0) return kNoOverlap;
      return Rows(1, Numel(out.shape), kUnitChunk, ItemSize(in), ItemSize(out));
    case kOpAdd:
    case kOpMul:
      return pos <= 1 ? Binary(op, pos) : kNoOverlap;
    case kOpSoftmax:
      return pos == 0 ? Softmax(in, out) : kNoOverlap;
    case kOpMean:
      return pos == 0 ? Mean(op) : kNoOverlap;
    case kOpReshape: {
      if (pos != 0) return kNoOverlap;
      const int64_t n = static_cast<int64_t>(out.bytes);
      Scan scan;
      for (int64_t lo = 0; lo < n; lo += kUnitChunk) scan.Unit(lo, Min(lo + kUnitChunk, n));
      return scan.Result();
    }
    case kOpPad:
      return pos == 0 ? Pad(op) : kNoOverlap;
    case kOpConcatenation:
      return Concatenation(op, pos);
    case kOpTranspose:
      return pos == 0 ? Transpose(op) : kNoOverlap;
    default:
      return kNoOverlap;
  }
}

}  // namespace

int64_t MinDisplacement(const AccessOp& op, int32_t pos, KernelLibrary library) {
  if (pos < 0 || pos >= op.num_inputs || op.inputs[pos] == nullptr || op.inputs[pos]->is_const ||
      op.inputs[0] == nullptr || op.output == nullptr || op.options == nullptr)
    return kNoOverlap;
  return ModelOf(op, pos, library);
}

namespace {

// The fused chain's units against its input A (stage 0 reads it) and output E (the last
// stage writes it), in the schedule's order (kernels/block_schedule.h). Rows mode: each B
// row of stage 0 reads the A rows it is computed from (from the first one inside A) and
// writes only the workspace. Window mode: each pixel of stage 0 first reads the A pixels of
// its window (from the first inside A). Then a pixel's unit: stage 0 reads the A pixel with
// the residual ADD; the last stage writes the pixel. Middle stages touch neither.
class ScanVisitor {
 public:
  static constexpr bool kPixels = true;
  ScanVisitor(const BlockGeometry* g, int32_t n, Scan* scan) : g_(g), n_(n), scan_(scan) {}
  void BRow(int32_t s, int32_t by) {
    if (s != 0) return;
    int32_t lo, hi;
    ExpansionRows(g_[0], by, by + 1, &lo, &hi);
    scan_->Unit(int64_t{lo} * g_[0].in_w * g_[0].in_c, kNoWrite, true);
  }
  void Pixel(int32_t s, int32_t oy, int32_t ox, int32_t y0, int32_t ky0, int32_t ky1) {
    const BlockGeometry& g = g_[s];
    if (s == 0 && g.window) {
      const int64_t x0 = int64_t{ox} * g.stride_w - g.pad_w;
      const int64_t kx0 = Max(0, -x0), kx1 = Min(g.kernel_w, g.mid_w - x0);
      if (ky1 > ky0 && kx1 > kx0) {
        const int64_t ay = Max(0, int64_t{y0 + ky0} * g.expand_stride_h - g.expand_pad_h);
        const int64_t ax = Max(0, (x0 + kx0) * g.expand_stride_w - g.expand_pad_w);
        scan_->Unit((ay * g.in_w + ax) * g.in_c, kNoWrite, true);
      }
    }
    if (s != 0 && s != n_ - 1) return;
    const int64_t px = int64_t{oy} * g.out_w + ox;
    const int64_t read = s == 0 && g.residual ? px * g.in_c : kNoRead;
    scan_->Unit(read, s == n_ - 1 ? (px + 1) * g.out_c : kNoWrite, true);
  }
  void Rows(int32_t, int32_t, int32_t) {}

 private:
  const BlockGeometry* g_;
  int32_t n_;
  Scan* scan_;
};

}  // namespace

int64_t BlockMinDisplacement(const BlockGeometry* g, int32_t n) {
  int32_t rows[kMaxChainStages];
  if (!ChainRingRows(g, n, rows)) return kNoOverlap;
  for (int32_t s = 0; s < n; ++s)
    if (g[s].stride_w < 1 || g[s].expand_stride_w < 1) return kNoOverlap;
  Scan scan;
  ScanVisitor visitor(g, n, &scan);
  ChainSchedule<ScanVisitor>(g, n, &visitor).Run();
  return scan.Result();
}

int64_t BlockMinDisplacement(const Bottleneck& b) {
  BlockGeometry g[kMaxChainStages];
  if (b.count < 1 || b.count > kMaxChainStages) return kNoOverlap;
  for (int32_t s = 0; s < b.count; ++s) g[s] = GeometryOf(b, s);
  return BlockMinDisplacement(g, b.count);
}

}  // namespace tflm_vmcu

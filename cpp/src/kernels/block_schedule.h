// The order of work of a fused chain of inverted bottlenecks (kernels/inverted_bottleneck.h):
// one schedule, run by the kernel (which computes) and by its access-order model
// (access_order.cc, which records the units), so the two cannot disagree.
//
// A chain is stages 0..n-1, each stage's output the next one's input. The last stage's
// output rows are produced in order; each stage produces an output row on demand, first
// asking the stage before it for the input rows that row reads (its B rows' expansion taps,
// the window of B rows in window mode, the residual's row). The rows of an inner tensor live
// in a ring of rows in the workspace, as many as the schedule ever needs at once
// (ChainRingRows).
#pragma once

#include <stdint.h>

namespace tflm_vmcu {

// Largest number of inverted bottlenecks one fused chain runs.
constexpr int32_t kMaxChainStages = 4;

// One stage's geometry: everything the schedule, the workspace and the access order depend
// on.
struct BlockGeometry {
  int32_t in_h = 0, in_w = 0, in_c = 0, mid_h = 0, mid_w = 0, mid_c = 0;
  int32_t kernel_h = 0, kernel_w = 0, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  int32_t expand_kernel_h = 1, expand_kernel_w = 1, expand_stride_h = 1, expand_stride_w = 1;
  int32_t expand_pad_h = 0, expand_pad_w = 0;  // top/left padding of a KxK expansion
  int32_t out_h = 0, out_w = 0, out_c = 0;
  bool residual = false;  // the stage ends with ADD(A, D): output pixels read A
  bool window = false;    // window mode (else rows mode)
};

// Depthwise taps [*first, *last) of a window starting at `origin` inside [0, size).
inline void BlockTaps(int32_t origin, int32_t kernel, int32_t size, int32_t* first, int32_t* last) {
  *first = origin < 0 ? -origin : 0;
  *last = size - origin < kernel ? size - origin : kernel;
}

// Rows of A [*lo, *hi] (inclusive, clamped to A) that B rows [b0, b1) are computed from;
// *lo > *hi when none.
inline void ExpansionRows(const BlockGeometry& g, int32_t b0, int32_t b1, int32_t* lo,
                          int32_t* hi) {
  const int32_t first = b0 * g.expand_stride_h - g.expand_pad_h;
  const int32_t last = (b1 - 1) * g.expand_stride_h - g.expand_pad_h + g.expand_kernel_h - 1;
  *lo = first < 0 ? 0 : first;
  *hi = last >= g.in_h ? g.in_h - 1 : last;
}

// The visitor V gets, in execution order:
//   BRow(s, by)               rows mode: stage s computes B row `by` into its ring of rows
//   Pixel(s, oy, ox, y0, ky0, ky1)
//                             stage s computes output pixel (oy, ox) (window mode: its
//                             window of B first), whose depthwise window starts at B row y0
//                             with valid taps [ky0, ky1)
// and, before stage s > 0 reads input rows, Rows(s, lo, produced): the lowest input row the
// stage reads for its next output row and how many rows of it the stage before has produced.
// A visitor with kPixels false gets no Pixel calls (the work is then one step per row).
template <typename V>
class ChainSchedule {
 public:
  ChainSchedule(const BlockGeometry* g, int32_t n, V* v) : g_(g), n_(n), v_(v) {
    for (int32_t s = 0; s < n; ++s) produced_[s] = next_b_[s] = 0;
  }

  void Run() {
    if (n_ < 1) return;
    const BlockGeometry& last = g_[n_ - 1];
    for (int32_t oy = 0; oy < last.out_h; ++oy) ProduceRow(n_ - 1);
  }

 private:
  // Recursive (a stage asks the one before for rows): kept out of line, so that each level
  // costs one small frame.
  __attribute__((noinline)) void ProduceRow(int32_t s) {
    const BlockGeometry& g = g_[s];
    const int32_t oy = produced_[s];
    const int32_t y0 = oy * g.stride_h - g.pad_h;
    int32_t ky0, ky1;
    BlockTaps(y0, g.kernel_h, g.mid_h, &ky0, &ky1);
    // B rows this output row computes: rows mode, those it newly needs; window mode, its
    // whole window (for every pixel).
    int32_t b0 = next_b_[s], b1 = next_b_[s];
    if (ky1 > ky0) {
      if (g.window) {
        b0 = y0 + ky0;
        b1 = y0 + ky1;
      } else if (y0 + ky1 > b1) {
        b1 = y0 + ky1;
      }
    }
    if (s > 0) {
      int32_t lo, hi;
      ExpansionRows(g, b0, b1, &lo, &hi);
      if (b1 <= b0) lo = g.in_h, hi = -1;
      if (g.residual) {
        lo = oy < lo ? oy : lo;
        hi = oy > hi ? oy : hi;
      }
      if (hi >= 0) {
        while (produced_[s - 1] <= hi) ProduceRow(s - 1);
        v_->Rows(s, lo, produced_[s - 1]);
      }
    }
    if (!g.window) {
      for (; next_b_[s] < b1; ++next_b_[s]) v_->BRow(s, next_b_[s]);
    }
    if constexpr (V::kPixels) {
      for (int32_t ox = 0; ox < g.out_w; ++ox) v_->Pixel(s, oy, ox, y0, ky0, ky1);
    }
    ++produced_[s];
  }

  const BlockGeometry* g_;
  int32_t n_;
  V* v_;
  int32_t produced_[kMaxChainStages];  // output rows each stage has produced
  int32_t next_b_[kMaxChainStages];    // rows mode: the next B row each stage computes
};

// Rows of each inner tensor's ring (rows[s] for stage s's output, s < n - 1): the most rows
// the schedule ever needs at once. False when a stage's input rows do not match the stage
// before (a malformed chain).
bool ChainRingRows(const BlockGeometry* g, int32_t n, int32_t* rows);

// Workspace bytes of one stage (its B rows or window, C and D pixels, an A pixel's staging,
// a KxK expansion's two patches) and of a whole chain (its stages and inner rings), saturating at
// 0xffffffff; 0xffffffff also for a malformed chain.
uint32_t StageWorkspaceBytes(const BlockGeometry& g);
uint32_t ChainWorkspaceBytes(const BlockGeometry* g, int32_t n);

}  // namespace tflm_vmcu

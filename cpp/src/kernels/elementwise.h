// Ring-addressed drivers shared by the element-wise kernels (ADD, MUL, QUANTIZE,
// DEQUANTIZE, RELU, RELU6, LOGISTIC, HARD_SWISH) and the broadcast plan of ADD and MUL.
//
// Unit of work (cpp/src/ring.h): a chunk of at most kElementwiseChunk consecutive output
// elements. The unit first takes read views of the matching input elements, then
// computes and writes the chunk. The access-order model is
// cpp/src/access_order.cc; the two must stay in step.
//
// Within one unit the input and output views never overlap in a plan the hazard checker
// accepts (a write onto a byte the same unit reads is a hazard), so the per-chunk
// functions may take their pointers as __restrict where that lets the compiler
// vectorise without alias checks.
#pragma once

#include <stdint.h>

#include "kernels/kernel.h"

namespace tflm_vmcu {

// Elements per unit of the element-wise kernels (ELEMENTWISE_CHUNK in the model).
constexpr uint32_t kElementwiseChunk = kUnitChunk;

// Runs `fn(in, out, m)` over the flat tensor in units of kElementwiseChunk elements:
// `in` points to m elements of kInBytes bytes, `out` to m elements of kOutBytes bytes
// (either may be unaligned: load and store multi-byte elements with memcpy).
template <uint32_t kInBytes, uint32_t kOutBytes, typename Fn>
inline void UnaryChunks(const RingBytes& in, const RingBytes& out, uint32_t n, Fn fn) {
  constexpr uint32_t kChunk = kElementwiseChunk;
  int8_t in_scratch[kChunk * kInBytes];
  int8_t out_scratch[kChunk * kOutBytes];
  for (uint32_t i = 0; i < n; i += kChunk) {
    const uint32_t m = n - i < kChunk ? n - i : kChunk;
    const int8_t* src = in.Read(i * kInBytes, m * kInBytes, in_scratch);
    int8_t* dst = out.BeginWrite(i * kOutBytes, m * kOutBytes, out_scratch);
    fn(src, dst, m);
    out.EndWrite(i * kOutBytes, m * kOutBytes, dst);
  }
}

// Output extents and input strides (0 on broadcast dims) after dropping unit dims and
// merging dims that are contiguous in both inputs. Iterating it visits the output in
// row-major order. The innermost strides are 0 or 1 (the innermost output dim is either
// broadcast in an input or that input's own innermost dim).
struct BroadcastPlan {
  int32_t rank = 0;
  int32_t dims[kMaxRank] = {};
  int32_t stride1[kMaxRank] = {};
  int32_t stride2[kMaxRank] = {};
};

// Extends both shapes to the larger rank (leading 1s) and checks broadcast
// compatibility; fills `out` with the broadcast shape. Returns false if incompatible.
inline bool BroadcastShape(const Shape& a, const Shape& b, Shape* out) {
  const int32_t rank = a.rank > b.rank ? a.rank : b.rank;
  out->rank = rank;
  for (int32_t i = 0; i < rank; ++i) {
    const int32_t ia = i - (rank - a.rank);
    const int32_t ib = i - (rank - b.rank);
    const int32_t da = ia >= 0 ? a.dims[ia] : 1;
    const int32_t db = ib >= 0 ? b.dims[ib] : 1;
    if (da != db && da != 1 && db != 1) return false;
    out->dims[i] = da == 1 ? db : da;
  }
  return true;
}

// TFLM's ProcessBroadcastShapes() returns false exactly when the shapes, extended to
// the same rank with leading 1s, are equal.
inline bool SameExtendedShape(const Shape& a, const Shape& b) {
  const int32_t rank = a.rank > b.rank ? a.rank : b.rank;
  for (int32_t i = 0; i < rank; ++i) {
    const int32_t ia = i - (rank - a.rank);
    const int32_t ib = i - (rank - b.rank);
    const int32_t da = ia >= 0 ? a.dims[ia] : 1;
    const int32_t db = ib >= 0 ? b.dims[ib] : 1;
    if (da != db) return false;
  }
  return true;
}

inline void MakeBroadcastPlan(const Shape& a, const Shape& b, const Shape& out,
                              BroadcastPlan* plan) {
  const int32_t rank = out.rank;
  int32_t sa[kMaxRank];
  int32_t sb[kMaxRank];
  int32_t step_a = 1;
  int32_t step_b = 1;
  for (int32_t i = rank - 1; i >= 0; --i) {
    const int32_t ia = i - (rank - a.rank);
    const int32_t ib = i - (rank - b.rank);
    const int32_t da = ia >= 0 ? a.dims[ia] : 1;
    const int32_t db = ib >= 0 ? b.dims[ib] : 1;
    sa[i] = da == 1 ? 0 : step_a;
    sb[i] = db == 1 ? 0 : step_b;
    step_a *= da;
    step_b *= db;
  }
  plan->rank = 0;
  for (int32_t i = 0; i < rank; ++i) {
    if (out.dims[i] == 1) continue;
    const int32_t n = plan->rank;
    if (n > 0 && plan->stride1[n - 1] == sa[i] * out.dims[i] &&
        plan->stride2[n - 1] == sb[i] * out.dims[i]) {
      plan->dims[n - 1] *= out.dims[i];
      plan->stride1[n - 1] = sa[i];
      plan->stride2[n - 1] = sb[i];
      continue;
    }
    plan->dims[n] = out.dims[i];
    plan->stride1[n] = sa[i];
    plan->stride2[n] = sb[i];
    plan->rank = n + 1;
  }
  if (plan->rank == 0) {
    plan->rank = 1;
    plan->dims[0] = 1;
    plan->stride1[0] = 0;
    plan->stride2[0] = 0;
  }
}

// Same-shape binary op: `row(a, 1, b, 1, out, m)` per unit of kElementwiseChunk elements
// (read both inputs' chunks, then write the output chunk).
template <typename RowFn>
inline void BinaryChunks(const RingBytes& in1, const RingBytes& in2, const RingBytes& out,
                         uint32_t n, RowFn row) {
  constexpr uint32_t kChunk = kElementwiseChunk;
  int8_t scratch1[kChunk];
  int8_t scratch2[kChunk];
  int8_t out_scratch[kChunk];
  for (uint32_t i = 0; i < n; i += kChunk) {
    const uint32_t m = n - i < kChunk ? n - i : kChunk;
    const int8_t* a = in1.Read(i, m, scratch1);
    const int8_t* b = in2.Read(i, m, scratch2);
    int8_t* dst = out.BeginWrite(i, m, out_scratch);
    row(a, 1, b, 1, dst, static_cast<int32_t>(m));
    out.EndWrite(i, m, dst);
  }
}

// Broadcast binary op: the plan's rows in row-major order, each split into units of
// kElementwiseChunk outputs. A unit reads the matching run of an input with innermost
// stride 1, or the one element of an input with innermost stride 0, then writes its
// outputs through `row(a, s1, b, s2, out, m)`.
template <typename RowFn>
inline void BroadcastChunks(const RingBytes& in1, const RingBytes& in2, const RingBytes& out,
                            const BroadcastPlan& p, RowFn row) {
  constexpr uint32_t kChunk = kElementwiseChunk;
  int8_t scratch1[kChunk];
  int8_t scratch2[kChunk];
  int8_t out_scratch[kChunk];
  const int32_t last = p.rank - 1;
  const uint32_t inner = static_cast<uint32_t>(p.dims[last]);
  const int32_t s1 = p.stride1[last];
  const int32_t s2 = p.stride2[last];
  int32_t index[kMaxRank] = {};
  uint32_t off1 = 0;
  uint32_t off2 = 0;
  uint32_t out_at = 0;
  for (;;) {
    for (uint32_t k = 0; k < inner; k += kChunk) {
      const uint32_t m = inner - k < kChunk ? inner - k : kChunk;
      const int8_t* a = in1.Read(off1 + k * s1, s1 != 0 ? m : 1, scratch1);
      const int8_t* b = in2.Read(off2 + k * s2, s2 != 0 ? m : 1, scratch2);
      int8_t* dst = out.BeginWrite(out_at + k, m, out_scratch);
      row(a, s1, b, s2, dst, static_cast<int32_t>(m));
      out.EndWrite(out_at + k, m, dst);
    }
    out_at += inner;
    int32_t dim = last - 1;
    for (; dim >= 0; --dim) {
      off1 += p.stride1[dim];
      off2 += p.stride2[dim];
      if (++index[dim] < p.dims[dim]) break;
      off1 -= p.stride1[dim] * p.dims[dim];
      off2 -= p.stride2[dim] * p.dims[dim];
      index[dim] = 0;
    }
    if (dim < 0) return;
  }
}

}  // namespace tflm_vmcu

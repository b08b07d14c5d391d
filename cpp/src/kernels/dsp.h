// Multiply-accumulate loops for cores with the Armv7E-M DSP extension (Cortex-M4, M7, M33,
// M55, ...), used by CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED.
//
// Four int8 values are loaded as one 32-bit word (memcpy: no unaligned-access UB; one LDR on
// these cores). SXTB16 sign-extends bytes 0 and 2 into the two 16-bit lanes of a word, and
// with the operand rotated by 8, bytes 1 and 3; SXTAB16 adds a packed pair of offsets at the
// same time (a zero point negated: int8 - int8 zero point fits in int16). SMLAD then adds the
// two lane products to a 32-bit accumulator, SMLABB / SMLATT one lane product. Both operands
// are split the same way, so lane k of one multiplies lane k of the other.
//
// The sums are the portable loops' exact integer sums in another order, so the outputs are bit
// for bit the same whenever the sums fit in int32 (which TFLM assumes too). The requantisation
// (MultiplyByQuantizedMultiplier below) returns TFLM's value for every input.
//
// A few instructions are written as inline assembly where GCC does not produce them (the
// rotated SXTB16 / SXTAB16 forms, LSL by a register) or spills registers in a hot loop
// (Dot4Extended); in ARM (A32) state and without optimisation the C forms are used instead.
//
// Everything here is compiled only when TFLM_VMCU_DSP is 1: on cores with the extension,
// unless TFLM_VMCU_NO_DSP is defined (which forces the portable loops, e.g. to compare).
#pragma once

#include <stdint.h>
#include <string.h>

#include "kernels/quant_util.h"

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__ARM_FEATURE_SIMD32) && \
    __ARM_FEATURE_SIMD32 && !defined(TFLM_VMCU_NO_DSP)
#define TFLM_VMCU_DSP 1
#include <arm_acle.h>
#else
#define TFLM_VMCU_DSP 0
#endif

#if TFLM_VMCU_DSP

namespace tflm_vmcu {
namespace dsp {

// Four int8 values as one word (byte i of the word is p[i]: little-endian).
inline uint32_t Load4(const int8_t* p) {
  uint32_t v;
  memcpy(&v, p, sizeof(v));
  return v;
}

// A 16-bit value in both lanes of a word (the offset operand of Sxtab16*).
inline uint32_t Pack2(int32_t v) { return (static_cast<uint32_t>(v) & 0xFFFFu) * 0x00010001u; }

// Bytes 0 and 2 of v, sign-extended into lanes 0 and 1.
inline uint32_t Sxtb16(uint32_t v) {
  return static_cast<uint32_t>(__sxtb16(static_cast<int32_t>(v)));
}

// v rotated right by 8 bits.
inline uint32_t Ror8(uint32_t v) { return (v >> 8) | (v << 24); }

// Bytes 1 and 3 of v, sign-extended into lanes 0 and 1 (SXTB16 with ROR #8: GCC does not fold
// a separate rotate into the instruction).
inline uint32_t Sxtb16Odd(uint32_t v) {
#if defined(__thumb2__)
  uint32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
  return r;
#else
  return Sxtb16(Ror8(v));
#endif
}

// a + bytes 0 and 2 of v, lane by lane.
inline uint32_t Sxtab16(uint32_t a, uint32_t v) {
  return static_cast<uint32_t>(__sxtab16(static_cast<int32_t>(a), static_cast<int32_t>(v)));
}

// a + bytes 1 and 3 of v, lane by lane.
inline uint32_t Sxtab16Odd(uint32_t a, uint32_t v) {
#if defined(__thumb2__)
  uint32_t r;
  __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(v));
  return r;
#else
  return Sxtab16(a, Ror8(v));
#endif
}

// acc + lane0(a) * lane0(b) + lane1(a) * lane1(b).
inline int32_t Smlad(uint32_t a, uint32_t b, int32_t acc) {
  return __smlad(static_cast<int32_t>(a), static_cast<int32_t>(b), acc);
}

// acc + lane0(a) * lane0(b) (Smlabb), acc + lane1(a) * lane1(b) (Smlatt) and
// acc + lane0(a) * lane1(b) (Smlabt).
inline int32_t Smlabb(uint32_t a, uint32_t b, int32_t acc) {
  return __smlabb(static_cast<int32_t>(a), static_cast<int32_t>(b), acc);
}
inline int32_t Smlatt(uint32_t a, uint32_t b, int32_t acc) {
  return __smlatt(static_cast<int32_t>(a), static_cast<int32_t>(b), acc);
}
inline int32_t Smlabt(uint32_t a, uint32_t b, int32_t acc) {
  return __smlabt(static_cast<int32_t>(a), static_cast<int32_t>(b), acc);
}

// Filter words with an optional packed filter offset (kWOffset: per-tensor FULLY_CONNECTED
// filters with a zero point; every other filter is symmetric).
template <bool kWOffset>
inline uint32_t WEven(uint32_t w, uint32_t w_off2) {
  return kWOffset ? Sxtab16(w_off2, w) : Sxtb16(w);
}
template <bool kWOffset>
inline uint32_t WOdd(uint32_t w, uint32_t w_off2) {
  return kWOffset ? Sxtab16Odd(w_off2, w) : Sxtb16Odd(w);
}

// One step of the loops below: four inputs (xe: x0, x2 and xo: x1, x3, extended) times four
// filter values of one filter row, added to acc.
template <bool kWOffset>
inline int32_t Mac4(uint32_t xe, uint32_t xo, const int8_t* w, uint32_t w_off2, int32_t acc) {
  const uint32_t wv = Load4(w);
  acc = Smlad(xe, WEven<kWOffset>(wv, w_off2), acc);
  return Smlad(xo, WOdd<kWOffset>(wv, w_off2), acc);
}

// sum over i < n of (x[i] + x_offset) * (w[i] + w_offset) (w_offset only with kWOffset).
template <bool kWOffset>
inline int32_t Dot(const int8_t* x, const int8_t* w, int n, int32_t x_offset, int32_t w_offset) {
  const uint32_t x_off2 = Pack2(x_offset);
  const uint32_t w_off2 = Pack2(w_offset);
  int32_t acc = 0;
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    const uint32_t xv = Load4(x + i);
    acc = Mac4<kWOffset>(Sxtab16(x_off2, xv), Sxtab16Odd(x_off2, xv), w + i, w_off2, acc);
  }
  for (; i < n; ++i) acc += (w[i] + (kWOffset ? w_offset : 0)) * (x[i] + x_offset);
  return acc;
}

// Two dot products of one input run with two filter rows: acc[0] += x . w0 and
// acc[1] += x . w1 (offsets as in Dot). The input is loaded and extended once for both.
template <bool kWOffset>
inline void Dot2(const int8_t* x, const int8_t* w0, const int8_t* w1, int n, int32_t x_offset,
                 int32_t w_offset, int32_t* acc) {
  const uint32_t x_off2 = Pack2(x_offset);
  const uint32_t w_off2 = Pack2(w_offset);
  int32_t a0 = acc[0];
  int32_t a1 = acc[1];
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    uint32_t xv = Load4(x + i);
    uint32_t xe = Sxtab16(x_off2, xv);
    uint32_t xo = Sxtab16Odd(x_off2, xv);
    a0 = Mac4<kWOffset>(xe, xo, w0 + i, w_off2, a0);
    a1 = Mac4<kWOffset>(xe, xo, w1 + i, w_off2, a1);
    xv = Load4(x + i + 4);
    xe = Sxtab16(x_off2, xv);
    xo = Sxtab16Odd(x_off2, xv);
    a0 = Mac4<kWOffset>(xe, xo, w0 + i + 4, w_off2, a0);
    a1 = Mac4<kWOffset>(xe, xo, w1 + i + 4, w_off2, a1);
  }
  if (i + 4 <= n) {
    const uint32_t xv = Load4(x + i);
    const uint32_t xe = Sxtab16(x_off2, xv);
    const uint32_t xo = Sxtab16Odd(x_off2, xv);
    a0 = Mac4<kWOffset>(xe, xo, w0 + i, w_off2, a0);
    a1 = Mac4<kWOffset>(xe, xo, w1 + i, w_off2, a1);
    i += 4;
  }
  for (; i < n; ++i) {
    const int32_t xi = x[i] + x_offset;
    a0 += (w0[i] + (kWOffset ? w_offset : 0)) * xi;
    a1 += (w1[i] + (kWOffset ? w_offset : 0)) * xi;
  }
  acc[0] = a0;
  acc[1] = a1;
}

// An input run extended once for many dot products: for each group of four inputs x0..x3,
// the words (x0 + x_offset, x2 + x_offset) and (x1 + x_offset, x3 + x_offset), for the
// first n & ~3 inputs (the rest stay int8). q may overlap x from x's address - (n & ~3)
// bytes on (a word-aligned int8 run in the upper half of q's buffer): each group of x is
// read before the two words that could overlap it are written.
inline void Extend(const int8_t* x, int n, int32_t x_offset, uint32_t* q) {
  const uint32_t x_off2 = Pack2(x_offset);
  for (int i = 0; i + 4 <= n; i += 4, q += 2) {
    const uint32_t xv = Load4(x + i);
    q[0] = Sxtab16(x_off2, xv);
    q[1] = Sxtab16Odd(x_off2, xv);
  }
}

// Dot and Dot2 over an input run extended by Extend: xq holds inputs [0, n & ~3), x the int8
// inputs from n & ~3 on (filters without an offset). Dot2Extended: acc[k] = init[k] (0 when
// init is null; init may be acc) + x . w_k for k < 2.
inline int32_t DotExtended(const uint32_t* xq, const int8_t* x, int n, int32_t x_offset,
                           const int8_t* w) {
  int32_t acc = 0;
  int i = 0;
  for (; i + 4 <= n; i += 4, xq += 2) acc = Mac4<false>(xq[0], xq[1], w + i, 0, acc);
  for (; i < n; ++i) acc += w[i] * (x[i] + x_offset);
  return acc;
}

#if defined(__GNUC__) && defined(__OPTIMIZE__) && defined(__thumb2__)
// clang-format off
// The loops below in assembly, one filter word at a time: the word loaded by LOAD, its even
// and odd bytes sign-extended, multiplied lane by lane with the extended inputs XE (even) and
// XO (odd; xe and xo in TFLM_VMCU_MAC_WORD) and added to the accumulator ACC.
#define TFLM_VMCU_MAC_WORD_OF(LOAD, ACC, XE, XO)       \
  "ldr %[wv], " LOAD "\n\t"                           \
  "sxtb16 %[t], %[wv]\n\t"                            \
  "smlad %[" ACC "], %[" XE "], %[t], %[" ACC "]\n\t"  \
  "sxtb16 %[wv], %[wv], ror #8\n\t"                   \
  "smlad %[" ACC "], %[" XO "], %[wv], %[" ACC "]\n\t"
#define TFLM_VMCU_MAC_WORD(LOAD, ACC) TFLM_VMCU_MAC_WORD_OF(LOAD, ACC, "xe", "xo")
// clang-format on
#endif

inline void Dot2Extended(const uint32_t* xq, const int8_t* x, int n, int32_t x_offset,
                         const int8_t* w0, const int8_t* w1, const int32_t* init, int32_t* acc) {
  const int n4 = n & ~3;
  int32_t a0 = init != nullptr ? init[0] : 0;
  int32_t a1 = init != nullptr ? init[1] : 0;
#if defined(__GNUC__) && defined(__OPTIMIZE__) && defined(__thumb2__)
  // GCC spills the C loop's registers; this one needs 10.
  if (n4 > 0) {
    int count = n4 >> 2;
    const int8_t* p0 = w0;
    const int8_t* p1 = w1;
    uint32_t xe, xo, wv, t;
    __asm__(
        "1:\n\t"
        "ldrd %[xe], %[xo], [%[xq]], #8\n\t"
        TFLM_VMCU_MAC_WORD("[%[p1]], #4", "a1")
        TFLM_VMCU_MAC_WORD("[%[p0]], #4", "a0")
        "subs %[count], %[count], #1\n\t"
        "bne 1b"
        : [a0] "+r"(a0), [a1] "+r"(a1), [xq] "+r"(xq), [p0] "+r"(p0), [p1] "+r"(p1),
          [count] "+r"(count), [xe] "=&r"(xe), [xo] "=&r"(xo), [wv] "=&r"(wv), [t] "=&r"(t)
        :
        : "cc", "memory");
  }
#else
  for (int i = 0; i < n4; i += 4, xq += 2) {
    a0 = Mac4<false>(xq[0], xq[1], w0 + i, 0, a0);
    a1 = Mac4<false>(xq[0], xq[1], w1 + i, 0, a1);
  }
#endif
  for (int i = n4; i < n; ++i) {
    const int32_t xi = x[i] + x_offset;
    a0 += w0[i] * xi;
    a1 += w1[i] * xi;
  }
  acc[0] = a0;
  acc[1] = a1;
}

// Four dot products of an extended input run with four filter rows `w_stride` bytes apart:
// acc[k] = init[k] (0 when init is null; init may be acc) + x . (w + k * w_stride) for k < 4
// (filters without an offset). Per four inputs, one LDRD of the extended inputs, then per
// filter row one LDR, two SXTB16 and two SMLAD.
inline void Dot4Extended(const uint32_t* xq, const int8_t* x, int n, int32_t x_offset,
                         const int8_t* w, int w_stride, const int32_t* init, int32_t* acc) {
  const int n4 = n & ~3;
  const int8_t* w0 = w;
  int32_t a0 = init != nullptr ? init[0] : 0;
  int32_t a1 = init != nullptr ? init[1] : 0;
  int32_t a2 = init != nullptr ? init[2] : 0;
  int32_t a3 = init != nullptr ? init[3] : 0;
#if defined(__GNUC__) && defined(__OPTIMIZE__) && defined(__thumb2__)
  // GCC keeps four filter pointers, a loop bound and the packed values in more registers than
  // there are and spills inside the loop; this loop needs 12: row k at w + k * w_stride, row 3
  // through a temporary address. (Without optimisation GCC cannot give an asm 12 registers,
  // and A32's LDRD needs a register pair: the C loop below.)
  if (n4 > 0) {
    int count = n4 >> 2;
    uint32_t xe, xo, wv, t;
    __asm__(
        "1:\n\t"
        "ldrd %[xe], %[xo], [%[xq]], #8\n\t"
        TFLM_VMCU_MAC_WORD("[%[w], %[s]]", "a1")
        TFLM_VMCU_MAC_WORD("[%[w], %[s], lsl #1]", "a2")
        "add %[wv], %[w], %[s], lsl #1\n\t"
        TFLM_VMCU_MAC_WORD("[%[wv], %[s]]", "a3")
        TFLM_VMCU_MAC_WORD("[%[w]], #4", "a0")
        "subs %[count], %[count], #1\n\t"
        "bne 1b"
        : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [xq] "+r"(xq), [w] "+r"(w),
          [count] "+r"(count), [xe] "=&r"(xe), [xo] "=&r"(xo), [wv] "=&r"(wv), [t] "=&r"(t)
        : [s] "r"(w_stride)
        : "cc", "memory");
  }
#else
  for (int i = 0; i < n4; i += 4, xq += 2, w += 4) {
    a0 = Mac4<false>(xq[0], xq[1], w, 0, a0);
    a1 = Mac4<false>(xq[0], xq[1], w + w_stride, 0, a1);
    a2 = Mac4<false>(xq[0], xq[1], w + 2 * w_stride, 0, a2);
    a3 = Mac4<false>(xq[0], xq[1], w + 3 * w_stride, 0, a3);
  }
#endif
  for (int i = n4; i < n; ++i) {
    const int32_t xi = x[i] + x_offset;
    a0 += w0[i] * xi;
    a1 += w0[i + w_stride] * xi;
    a2 += w0[i + 2 * w_stride] * xi;
    a3 += w0[i + 3 * w_stride] * xi;
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}

// acc[k] = init[k] (0 when init is null; init may be acc) + x . (w + k * w_stride) for
// k < channels: one input run of n values, extended by Extend into xq (x: the same run, for its
// int8 tail), against `channels` filter rows.
inline void AddDotsExtended(const uint32_t* xq, const int8_t* x, int n, int32_t x_offset,
                            const int8_t* w, int w_stride, int channels, const int32_t* init,
                            int32_t* acc) {
  int k = 0;
  for (; k + 4 <= channels; k += 4) {
    Dot4Extended(xq, x, n, x_offset, w + static_cast<size_t>(k) * w_stride, w_stride,
                 init != nullptr ? init + k : nullptr, acc + k);
  }
  for (; k + 2 <= channels; k += 2) {
    const int8_t* w_k = w + static_cast<size_t>(k) * w_stride;
    Dot2Extended(xq, x, n, x_offset, w_k, w_k + w_stride, init != nullptr ? init + k : nullptr,
                 acc + k);
  }
  if (k < channels) {
    acc[k] = (init != nullptr ? init[k] : 0) +
             DotExtended(xq, x, n, x_offset, w + static_cast<size_t>(k) * w_stride);
  }
}

// acc[0] += x . w and acc[1] += x . (w + w_stride) over n inputs taken as int8 (filters
// without an offset): for an input run used by few filter rows, where extending it first
// (Extend) costs more than it saves. Per four inputs, one input load and two SXTAB16, then per
// row one LDR, two SXTB16 and two SMLAD.
inline void Dot2Strided(const int8_t* x, int n, int32_t x_offset, const int8_t* w, int w_stride,
                        int32_t* acc) {
  const int n4 = n & ~3;
  const int8_t* w0 = w;
  const int8_t* x0 = x;
  int32_t a0 = acc[0];
  int32_t a1 = acc[1];
  const uint32_t x_off2 = Pack2(x_offset);
#if defined(__GNUC__) && defined(__OPTIMIZE__) && defined(__thumb2__)
  // GCC spills the C loops' registers. Eight inputs at a time (13 registers), then four.
  if (n4 >= 8) {
    int count = n4 >> 3;
    uint32_t xe, xo, e1, o1, wv, t;
    __asm__(
        "1:\n\t"
        "ldrd %[xo], %[o1], [%[x]], #8\n\t"
        "sxtab16 %[xe], %[off], %[xo]\n\t"
        "sxtab16 %[xo], %[off], %[xo], ror #8\n\t"
        "sxtab16 %[e1], %[off], %[o1]\n\t"
        "sxtab16 %[o1], %[off], %[o1], ror #8\n\t"
        TFLM_VMCU_MAC_WORD("[%[w], %[s]]", "a1")
        TFLM_VMCU_MAC_WORD("[%[w]], #4", "a0")
        TFLM_VMCU_MAC_WORD_OF("[%[w], %[s]]", "a1", "e1", "o1")
        TFLM_VMCU_MAC_WORD_OF("[%[w]], #4", "a0", "e1", "o1")
        "subs %[count], %[count], #1\n\t"
        "bne 1b"
        : [a0] "+r"(a0), [a1] "+r"(a1), [x] "+r"(x), [w] "+r"(w), [count] "+r"(count),
          [xe] "=&r"(xe), [xo] "=&r"(xo), [e1] "=&r"(e1), [o1] "=&r"(o1), [wv] "=&r"(wv),
          [t] "=&r"(t)
        : [s] "r"(w_stride), [off] "r"(x_off2)
        : "cc", "memory");
  }
  if (n4 & 4) {
    uint32_t xe, xo, wv, t;
    __asm__(
        "ldr %[xo], [%[x]], #4\n\t"
        "sxtab16 %[xe], %[off], %[xo]\n\t"
        "sxtab16 %[xo], %[off], %[xo], ror #8\n\t" TFLM_VMCU_MAC_WORD("[%[w], %[s]]", "a1")
            TFLM_VMCU_MAC_WORD("[%[w]], #4", "a0")
        : [a0] "+r"(a0), [a1] "+r"(a1), [x] "+r"(x), [w] "+r"(w), [xe] "=&r"(xe), [xo] "=&r"(xo),
          [wv] "=&r"(wv), [t] "=&r"(t)
        : [s] "r"(w_stride), [off] "r"(x_off2)
        : "memory");
  }
#else
  for (int i = 0; i < n4; i += 4) {
    const uint32_t xv = Load4(x + i);
    const uint32_t xe = Sxtab16(x_off2, xv);
    const uint32_t xo = Sxtab16Odd(x_off2, xv);
    a0 = Mac4<false>(xe, xo, w + i, 0, a0);
    a1 = Mac4<false>(xe, xo, w + w_stride + i, 0, a1);
  }
#endif
  for (int i = n4; i < n; ++i) {
    const int32_t xi = x0[i] + x_offset;
    a0 += w0[i] * xi;
    a1 += w0[w_stride + i] * xi;
  }
  acc[0] = a0;
  acc[1] = a1;
}

#undef TFLM_VMCU_MAC_WORD
#undef TFLM_VMCU_MAC_WORD_OF

// Filter rows up to which an input run is cheaper used as it is (AddDots) than extended first
// (Extend, AddDotsExtended): extending costs about as much as it saves per four rows.
constexpr int kFewRows = 4;

// AddDotsExtended without the extended copy (Dot2Strided per pair of filter rows): for an
// input run used by at most kFewRows filter rows.
inline void AddDots(const int8_t* x, int n, int32_t x_offset, const int8_t* w, int w_stride,
                    int channels, const int32_t* init, int32_t* acc) {
  for (int k = 0; k < channels; k += 2) {
    const int8_t* w_k = w + static_cast<size_t>(k) * w_stride;
    int32_t pair[2] = {init != nullptr ? init[k] : 0, 0};
    if (k + 1 < channels) {
      pair[1] = init != nullptr ? init[k + 1] : 0;
      Dot2Strided(x, n, x_offset, w_k, w_stride, pair);
      acc[k + 1] = pair[1];
    } else {
      pair[0] += Dot<false>(x, w_k, n, x_offset, 0);
    }
    acc[k] = pair[0];
  }
}

// v << s for s in [0, 32]: LSL by a register gives 0 for a shift of 32 (a C shift of 32 is
// undefined).
inline uint32_t ShiftLeft(uint32_t v, uint32_t s) {
#if defined(__thumb2__)
  uint32_t r;
  __asm__("lsl %0, %1, %2" : "=r"(r) : "r"(v), "r"(s));
  return r;
#else
  return s < 32 ? v << s : 0;
#endif
}

// TFLM's MultiplyByQuantizedMultiplier (kernels/quant_util.h): the same value for every input
// (shifts clamped the same way), without branches.
// - The shifts: USAT #5 of shift and of -shift (ClampShift).
// - SaturatingRoundingDoublingHighMul(a, b) = (ab + nudge) / 2^31 rounded towards zero, which
//   is floor((ab + 2^30) / 2^31) for either sign of ab (for ab < 0 it is
//   ceil((ab + 1 - 2^30) / 2^31) = floor((ab + 2^30) / 2^31)): one SMLAL onto 2^30, then bits
//   31..62. Its one overflow (a = b = INT32_MIN, giving 2^31) is the only case where
//   ab + 2^30 reaches 2^62, and QADD of the high word to itself saturates exactly then, to
//   INT32_MAX (the low bits are then 0).
// - RoundingDivideByPOT(v, e) adds 1 to v >> e when the remainder r = v mod 2^e exceeds
//   2^(e-1) - 1 + (v < 0). With r at the top of a word (t = r * 2^(32-e), 0 when e = 0), that
//   is t + 2^31 - (v < 0) >= 2^32 (t is a multiple of 2^(32-e), so t > 2^31 and
//   t >= 2^31 + 2^(32-e) are the same): the carry of one addition.
// ScaleShifted: the same, given the two clamped shifts (LeftShift and RightShift of `shift`).
inline uint32_t LeftShift(int32_t shift) { return __usat(shift, 5); }
inline uint32_t RightShift(int32_t shift) {
  return __usat(static_cast<int32_t>(0u - static_cast<uint32_t>(shift)), 5);
}

inline int32_t ScaleShifted(int32_t x, int32_t multiplier, uint32_t left, uint32_t right) {
  const int32_t a = static_cast<int32_t>(static_cast<uint32_t>(x) << left);
  const uint64_t p =
      static_cast<uint64_t>(static_cast<int64_t>(a) * multiplier + (int64_t{1} << 30));
  const int32_t hi = static_cast<int32_t>(p >> 32);
  const int32_t v = static_cast<int32_t>(static_cast<uint32_t>(__qadd(hi, hi)) |
                                         (static_cast<uint32_t>(p) >> 31));
  const uint32_t rem_top = ShiftLeft(static_cast<uint32_t>(v), 32 - right);
  const uint32_t sum = rem_top + (0x80000000u - (static_cast<uint32_t>(v) >> 31));
  return (v >> right) + (sum < rem_top ? 1 : 0);
}

// MultiplyByQuantizedMultiplier for the scales RightShiftOnly refuses (dsp_pairs.h). Out of
// line: inlined beside the one-rounding form, GCC computes it before the test, on the common
// path too.
__attribute__((noinline)) inline int32_t ScaleAnyShift(int32_t x, int32_t multiplier,
                                                       int32_t shift) {
  return ScaleShifted(x, multiplier, LeftShift(shift), RightShift(shift));
}

inline int32_t MultiplyByQuantizedMultiplier(int32_t x, int32_t multiplier, int32_t shift) {
  return ScaleShifted(x, multiplier, LeftShift(shift), RightShift(shift));
}

// dst[i] = the int8 output of sum acc[i] (bias included) for i < n: requantised with
// multiplier[i * step] and shift[i * step] (step 1: per channel, 0: per tensor), plus the
// output offset, clamped to [act_min, act_max] (both within int8: SSAT #8 first, then, with
// kClamp, the activation range).
template <bool kClamp, bool kRight>
inline void RequantizeBlock(const int32_t* acc, int n, const int32_t* multiplier,
                            const int32_t* shift, int step, int32_t output_offset, int32_t act_min,
                            int32_t act_max, int8_t* dst) {
  for (int i = 0; i < n; ++i, multiplier += step, shift += step) {
    int32_t v = kRight ? MultiplyByQuantizedMultiplierRight(acc[i], *multiplier, -*shift)
                       : MultiplyByQuantizedMultiplier(acc[i], *multiplier, *shift);
    v = __ssat(v + output_offset, 8);
    if (kClamp) {
      v = v < act_min ? act_min : v;
      v = v > act_max ? act_max : v;
    }
    dst[i] = static_cast<int8_t>(v);
  }
}

// right_only: every channel's multiplier and shift pass RightShiftOnly (quant_util.h).
inline void RequantizeBlock(const int32_t* acc, int n, const int32_t* multiplier,
                            const int32_t* shift, int step, int32_t output_offset, int32_t act_min,
                            int32_t act_max, int8_t* dst, bool right_only = false) {
  const bool clamp = act_min != INT8_MIN || act_max != INT8_MAX;
  (clamp ? (right_only ? RequantizeBlock<true, true> : RequantizeBlock<true, false>)
         : (right_only ? RequantizeBlock<false, true> : RequantizeBlock<false, false>))(
      acc, n, multiplier, shift, step, output_offset, act_min, act_max, dst);
}

// Depthwise: acc[c] = bias[c] (0 without a bias) + sum of (x[c] + x_offset) * w[c] for c < n,
// over `rows` x `cols` taps of one window (tap (r, k) at x + r * x_row_step + k * x_col_step
// and w + r * w_row_step + k * w_col_step). Four channels at a time keep their sums in
// registers across the taps. kRows / kCols: the window's size when known at compile time (the
// tap loops unrolled), else 0.
template <int kRows, int kCols>
inline void DepthwiseWindow(const int8_t* x, const int8_t* w, int n, int rows, int cols,
                            int x_row_step, int x_col_step, int w_row_step, int w_col_step,
                            int32_t x_offset, const int32_t* bias, int32_t* acc) {
  if (kRows > 0) rows = kRows;
  if (kCols > 0) cols = kCols;
  const uint32_t x_off2 = Pack2(x_offset);
  int c = 0;
  for (; c + 4 <= n; c += 4) {
    int32_t a0 = bias != nullptr ? bias[c] : 0;
    int32_t a1 = bias != nullptr ? bias[c + 1] : 0;
    int32_t a2 = bias != nullptr ? bias[c + 2] : 0;
    int32_t a3 = bias != nullptr ? bias[c + 3] : 0;
    const int8_t* x_row = x + c;
    const int8_t* w_row = w + c;
    for (int r = 0; r < rows; ++r, x_row += x_row_step, w_row += w_row_step) {
      const int8_t* xp = x_row;
      const int8_t* wp = w_row;
      for (int k = 0; k < cols; ++k, xp += x_col_step, wp += w_col_step) {
        const uint32_t xv = Load4(xp);
        const uint32_t wv = Load4(wp);
        const uint32_t xe = Sxtab16(x_off2, xv);     // channels c, c + 2
        const uint32_t xo = Sxtab16Odd(x_off2, xv);  // channels c + 1, c + 3
        const uint32_t we = Sxtb16(wv);
        const uint32_t wo = Sxtb16Odd(wv);
        a0 = Smlabb(xe, we, a0);
        a2 = Smlatt(xe, we, a2);
        a1 = Smlabb(xo, wo, a1);
        a3 = Smlatt(xo, wo, a3);
      }
    }
    acc[c] = a0;
    acc[c + 1] = a1;
    acc[c + 2] = a2;
    acc[c + 3] = a3;
  }
  for (; c < n; ++c) {
    int32_t a = bias != nullptr ? bias[c] : 0;
    for (int r = 0; r < rows; ++r) {
      for (int k = 0; k < cols; ++k) {
        a += w[r * w_row_step + k * w_col_step + c] *
             (x[r * x_row_step + k * x_col_step + c] + x_offset);
      }
    }
    acc[c] = a;
  }
}

#if defined(__GNUC__) && defined(__OPTIMIZE__) && defined(__thumb2__)
#define TFLM_VMCU_DSP_ASM_3X3 1
// DepthwiseWindow<3, 3> for the common layout: the input and the filter taps of a row one
// stride `cs` apart (unit dilation, multiplier 1), filter rows 3 * cs apart. GCC keeps the
// nine tap addresses of both operands on the stack; this loop walks one input and one filter
// pointer per row, in 12 registers (the input's row step is read from memory).
// clang-format off
#define TFLM_VMCU_DW_TAP(XADDR, WADDR)          \
  "ldr %[xv], " XADDR "\n\t"                   \
  "ldr %[wv], " WADDR "\n\t"                   \
  "sxtab16 %[xe], %[off], %[xv]\n\t"           \
  "sxtb16 %[we], %[wv]\n\t"                    \
  "smlabb %[a0], %[xe], %[we], %[a0]\n\t"      \
  "smlatt %[a2], %[xe], %[we], %[a2]\n\t"      \
  "sxtab16 %[xe], %[off], %[xv], ror #8\n\t"   \
  "sxtb16 %[we], %[wv], ror #8\n\t"            \
  "smlabb %[a1], %[xe], %[we], %[a1]\n\t"      \
  "smlatt %[a3], %[xe], %[we], %[a3]\n\t"
#define TFLM_VMCU_DW_ROW                                                \
  TFLM_VMCU_DW_TAP("[%[xp]]", "[%[wp]]")                                \
  TFLM_VMCU_DW_TAP("[%[xp], %[cs]]", "[%[wp], %[cs]]")                  \
  TFLM_VMCU_DW_TAP("[%[xp], %[cs], lsl #1]", "[%[wp], %[cs], lsl #1]")
#define TFLM_VMCU_DW_NEXT_ROW                                           \
  "ldr %[xe], %[rs]\n\t"                                                \
  "add %[xp], %[xp], %[xe]\n\t"                                         \
  "add %[wp], %[wp], %[cs], lsl #1\n\t"                                 \
  "add %[wp], %[wp], %[cs]\n\t"
// clang-format on
inline void DepthwiseWindow3x3(const int8_t* x, const int8_t* w, int n, int x_row_step, int cs,
                               int32_t x_offset, const int32_t* bias, int32_t* acc) {
  const uint32_t off2 = Pack2(x_offset);
  int c = 0;
  for (; c + 4 <= n; c += 4) {
    int32_t a0 = bias != nullptr ? bias[c] : 0;
    int32_t a1 = bias != nullptr ? bias[c + 1] : 0;
    int32_t a2 = bias != nullptr ? bias[c + 2] : 0;
    int32_t a3 = bias != nullptr ? bias[c + 3] : 0;
    const int8_t* xp = x + c;
    const int8_t* wp = w + c;
    uint32_t xv, wv, xe, we;
    __asm__(TFLM_VMCU_DW_ROW TFLM_VMCU_DW_NEXT_ROW TFLM_VMCU_DW_ROW TFLM_VMCU_DW_NEXT_ROW
                TFLM_VMCU_DW_ROW
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [xp] "+r"(xp),
              [wp] "+r"(wp), [xv] "=&r"(xv), [wv] "=&r"(wv), [xe] "=&r"(xe), [we] "=&r"(we)
            : [cs] "r"(cs), [off] "r"(off2), [rs] "m"(x_row_step)
            : "memory");
    acc[c] = a0;
    acc[c + 1] = a1;
    acc[c + 2] = a2;
    acc[c + 3] = a3;
  }
  for (; c < n; ++c) {
    int32_t a = bias != nullptr ? bias[c] : 0;
    for (int r = 0; r < 3; ++r) {
      for (int k = 0; k < 3; ++k)
        a += w[(3 * r + k) * cs + c] * (x[r * x_row_step + k * cs + c] + x_offset);
    }
    acc[c] = a;
  }
}
#undef TFLM_VMCU_DW_TAP
#undef TFLM_VMCU_DW_ROW
#undef TFLM_VMCU_DW_NEXT_ROW
#else
#define TFLM_VMCU_DSP_ASM_3X3 0
#endif

// Out of line: one copy of the unrolled windows for every caller (a few KB of flash each).
__attribute__((noinline)) inline void DepthwiseWindow(const int8_t* x, const int8_t* w, int n,
                                                      int rows, int cols, int x_row_step,
                                                      int x_col_step, int w_row_step,
                                                      int w_col_step, int32_t x_offset,
                                                      const int32_t* bias, int32_t* acc) {
#if TFLM_VMCU_DSP_ASM_3X3
  if (rows == 3 && cols == 3 && x_col_step == w_col_step && w_row_step == 3 * w_col_step) {
    DepthwiseWindow3x3(x, w, n, x_row_step, w_col_step, x_offset, bias, acc);
    return;
  }
#endif
  // 3x3 windows and their clipped forms at the image edges (most pixels of a small image),
  // and whole 5x5 and 7x7 windows, with the tap loops unrolled.
  auto run = [&](auto window) {
    window(x, w, n, rows, cols, x_row_step, x_col_step, w_row_step, w_col_step, x_offset, bias,
           acc);
  };
  if (rows == 3 && cols == 3) {
    run(DepthwiseWindow<3, 3>);
  } else if (rows == 2 && cols == 3) {
    run(DepthwiseWindow<2, 3>);
  } else if (rows == 3 && cols == 2) {
    run(DepthwiseWindow<3, 2>);
  } else if (rows == 2 && cols == 2) {
    run(DepthwiseWindow<2, 2>);
  } else if (rows == 5 && cols == 5) {
    run(DepthwiseWindow<5, 5>);
  } else if (rows == 7 && cols == 7) {
    run(DepthwiseWindow<7, 7>);
  } else {
    run(DepthwiseWindow<0, 0>);
  }
}

// Depthwise with a depth multiplier, one input channel: acc[m] = bias[m] (0 without a bias) +
// sum of (x_t + x_offset) * w_t[m] for m < n over the taps t of its window: x_t at
// x + r * x_row_step + k * x_col_step (one value), w_t at w + r * w_row_step + k * w_col_step
// (n consecutive values). Four outputs at a time keep their sums in registers; SMLABB / SMLABT
// multiply the one input by either lane.
inline void DepthwiseMultiplierWindow(const int8_t* x, const int8_t* w, int n, int rows, int cols,
                                      int x_row_step, int x_col_step, int w_row_step,
                                      int w_col_step, int32_t x_offset, const int32_t* bias,
                                      int32_t* acc) {
  int m = 0;
  for (; m + 4 <= n; m += 4) {
    int32_t a0 = bias != nullptr ? bias[m] : 0;
    int32_t a1 = bias != nullptr ? bias[m + 1] : 0;
    int32_t a2 = bias != nullptr ? bias[m + 2] : 0;
    int32_t a3 = bias != nullptr ? bias[m + 3] : 0;
    for (int r = 0; r < rows; ++r) {
      const int8_t* xp = x + r * x_row_step;
      const int8_t* wp = w + r * w_row_step + m;
      for (int k = 0; k < cols; ++k, xp += x_col_step, wp += w_col_step) {
        const uint32_t xv = static_cast<uint32_t>(*xp + x_offset);  // lane 0
        const uint32_t wv = Load4(wp);
        const uint32_t we = Sxtb16(wv);     // outputs m, m + 2
        const uint32_t wo = Sxtb16Odd(wv);  // outputs m + 1, m + 3
        a0 = Smlabb(xv, we, a0);
        a2 = Smlabt(xv, we, a2);
        a1 = Smlabb(xv, wo, a1);
        a3 = Smlabt(xv, wo, a3);
      }
    }
    acc[m] = a0;
    acc[m + 1] = a1;
    acc[m + 2] = a2;
    acc[m + 3] = a3;
  }
  for (; m < n; m += 2) {
    // The last one or two outputs (a1 unused for one).
    const bool two = m + 1 < n;
    int32_t a0 = bias != nullptr ? bias[m] : 0;
    int32_t a1 = bias != nullptr && two ? bias[m + 1] : 0;
    for (int r = 0; r < rows; ++r) {
      const int8_t* xp = x + r * x_row_step;
      const int8_t* wp = w + r * w_row_step + m;
      for (int k = 0; k < cols; ++k, xp += x_col_step, wp += w_col_step) {
        const int32_t xv = *xp + x_offset;
        a0 += wp[0] * xv;
        if (two) a1 += wp[1] * xv;
      }
    }
    acc[m] = a0;
    if (two) acc[m + 1] = a1;
  }
}

// Depthwise, one tap: acc[c] += (x[c] + x_offset) * w[c] for c < n (sums kept in memory).
inline void DepthwiseTap(const int8_t* x, const int8_t* w, int n, int32_t x_offset, int32_t* acc) {
  const uint32_t x_off2 = Pack2(x_offset);
  int c = 0;
  for (; c + 4 <= n; c += 4) {
    const uint32_t xv = Load4(x + c);
    const uint32_t wv = Load4(w + c);
    const uint32_t xe = Sxtab16(x_off2, xv);
    const uint32_t xo = Sxtab16Odd(x_off2, xv);
    const uint32_t we = Sxtb16(wv);
    const uint32_t wo = Sxtb16Odd(wv);
    acc[c] = Smlabb(xe, we, acc[c]);
    acc[c + 1] = Smlabb(xo, wo, acc[c + 1]);
    acc[c + 2] = Smlatt(xe, we, acc[c + 2]);
    acc[c + 3] = Smlatt(xo, wo, acc[c + 3]);
  }
  for (; c < n; ++c) acc[c] += w[c] * (x[c] + x_offset);
}

}  // namespace dsp
}  // namespace tflm_vmcu

#endif  // TFLM_VMCU_DSP

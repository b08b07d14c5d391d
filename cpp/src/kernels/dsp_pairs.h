// Two output pixels at a time: the DSP loops of CONV_2D for receptive fields of up to
// kPairPatch values (pointwise layers, and 3x3 ones of up to 18 input channels), and of
// FULLY_CONNECTED for pairs of batch rows of up to kPairPatch values.
//
// With one pixel at a time (dsp.h's Dot4Extended), every four inputs of every output channel
// cost one filter load and two SXTB16 besides the two SMLAD, and the per-pixel and
// per-channel overheads (gathering, loop set-up, requantisation) weigh heavily on layers
// whose dot products are short. Here two pixels share each filter word (the extended inputs
// of both are interleaved, so one LDRD fetches the same four inputs' even or odd lanes of
// both), and two output channels share each input word: per four inputs of two channels
// and two pixels, 2 LDRD, 2 LDR, 4 SXTB16 and 8 SMLAD (CMSIS-NN's 2x2 blocking). The two
// pixels' requantisation shares each channel's multiplier and shift.
//
// Bit-exactness: as in dsp.h, the exact integer sums in another order.
#pragma once

#include <stdint.h>

#include "kernels/dsp.h"

#if TFLM_VMCU_DSP

namespace tflm_vmcu {
namespace dsp {

// Largest receptive field (values per pixel) run two pixels at a time. The extended pair takes
// 4 * kPairPatch bytes and the two int8 receptive fields 2 * kPairPatch: together they fit the
// 1,024-byte buffer the one-pixel loops extend into, so pairs need no buffer of their own.
// Longer dot products gain little from pairs: their per-pixel overheads are small already.
constexpr int kPairBuffer = 1024;
constexpr int kPairPatch = kPairBuffer / 6;

// The inputs of pixels A and B extended for the pair loops: per four values i .. i + 3 of
// both runs (i < n & ~3), the words (A even, B even, A odd, B odd), even meaning inputs i
// and i + 2 plus the offset, odd i + 1 and i + 3 (Sxtab16 / Sxtab16Odd). The last n % 4
// values of each run are copied as they are to tails[0] and tails[1]. The pair loops then
// read neither run, so the pair's writes may overwrite them (RingBytes::ReadsDone).
inline void ExtendPair(const int8_t* xa, const int8_t* xb, int n, int32_t x_offset, uint32_t* q,
                       int8_t (*tails)[4]) {
  const uint32_t x_off2 = Pack2(x_offset);
  int i = 0;
  for (; i + 4 <= n; i += 4, q += 4) {
    const uint32_t a = Load4(xa + i);
    const uint32_t b = Load4(xb + i);
    q[0] = Sxtab16(x_off2, a);
    q[1] = Sxtab16(x_off2, b);
    q[2] = Sxtab16Odd(x_off2, a);
    q[3] = Sxtab16Odd(x_off2, b);
  }
  for (int k = 0; i < n; ++i, ++k) {
    tails[0][k] = xa[i];
    tails[1][k] = xb[i];
  }
}

// How output channel k's sum becomes an int8: scaled by multiplier[k * step] and
// shift[k * step] (step 1: per channel, 0: per tensor), plus the output offset, clamped to
// [act_min, act_max].
struct OutputScale {
  const int32_t* multiplier;
  const int32_t* shift;
  int step;
  int32_t offset;
  int32_t act_min;
  int32_t act_max;
  bool right_shift_only;  // every channel passes RightShiftOnly (the op data's flag)
};

// acc[0..3] += (A . w0, B . w0, A . w1, B . w1) over the first n4 inputs (a multiple of 4)
// of a pair extended by ExtendPair; w1 = w0 + w_stride.
inline void Dot2x2(const uint32_t* q, int n4, const int8_t* w0, int w_stride, int32_t* acc) {
  int32_t a0 = acc[0];
  int32_t b0 = acc[1];
  int32_t a1 = acc[2];
  int32_t b1 = acc[3];
#if defined(__GNUC__) && defined(__OPTIMIZE__) && defined(__thumb2__)
  // 13 registers; GCC spills in the C loop below. LDRD with two arbitrary registers and
  // post-indexing is a Thumb-2 form.
  if (n4 > 0) {
    int count = n4 >> 2;
    uint32_t xa, xb, v0, v1, t;
    __asm__(
        "1:\n\t"
        "ldrd %[xa], %[xb], [%[q]], #8\n\t"
        "ldr %[v1], [%[w], %[s]]\n\t"
        "ldr %[v0], [%[w]], #4\n\t"
        "sxtb16 %[t], %[v1]\n\t"
        "smlad %[a1], %[xa], %[t], %[a1]\n\t"
        "smlad %[b1], %[xb], %[t], %[b1]\n\t"
        "sxtb16 %[t], %[v0]\n\t"
        "smlad %[a0], %[xa], %[t], %[a0]\n\t"
        "smlad %[b0], %[xb], %[t], %[b0]\n\t"
        "ldrd %[xa], %[xb], [%[q]], #8\n\t"
        "sxtb16 %[t], %[v1], ror #8\n\t"
        "smlad %[a1], %[xa], %[t], %[a1]\n\t"
        "smlad %[b1], %[xb], %[t], %[b1]\n\t"
        "sxtb16 %[t], %[v0], ror #8\n\t"
        "smlad %[a0], %[xa], %[t], %[a0]\n\t"
        "smlad %[b0], %[xb], %[t], %[b0]\n\t"
        "subs %[count], %[count], #1\n\t"
        "bne 1b"
        : [a0] "+r"(a0), [b0] "+r"(b0), [a1] "+r"(a1), [b1] "+r"(b1), [q] "+r"(q), [w] "+r"(w0),
          [count] "+r"(count), [xa] "=&r"(xa), [xb] "=&r"(xb), [v0] "=&r"(v0), [v1] "=&r"(v1),
          [t] "=&r"(t)
        : [s] "r"(w_stride)
        : "cc", "memory");
  }
#else
  for (int i = 0; i < n4; i += 4, q += 4) {
    const uint32_t v0 = Load4(w0 + i);
    const uint32_t v1 = Load4(w0 + w_stride + i);
    a0 = Smlad(q[2], Sxtb16Odd(v0), Smlad(q[0], Sxtb16(v0), a0));
    b0 = Smlad(q[3], Sxtb16Odd(v0), Smlad(q[1], Sxtb16(v0), b0));
    a1 = Smlad(q[2], Sxtb16Odd(v1), Smlad(q[0], Sxtb16(v1), a1));
    b1 = Smlad(q[3], Sxtb16Odd(v1), Smlad(q[1], Sxtb16(v1), b1));
  }
#endif
  acc[0] = a0;
  acc[1] = b0;
  acc[2] = a1;
  acc[3] = b1;
}

// acc[0..1] += (A . w, B . w) over the first n4 inputs of an extended pair.
inline void Dot1x2(const uint32_t* q, int n4, const int8_t* w, int32_t* acc) {
  int32_t a = acc[0];
  int32_t b = acc[1];
  for (int i = 0; i < n4; i += 4, q += 4) {
    const uint32_t v = Load4(w + i);
    const uint32_t even = Sxtb16(v);
    const uint32_t odd = Sxtb16Odd(v);
    a = Smlad(q[2], odd, Smlad(q[0], even, a));
    b = Smlad(q[3], odd, Smlad(q[1], even, b));
  }
  acc[0] = a;
  acc[1] = b;
}

// Two pixels' output bytes for output channels [0, channels): dst_a[k] from the dot product of
// pixel A's n inputs with w_k = w + k * w_stride (filters without an offset), dst_b[k] from
// pixel B's, plus bias[k] (when given), requantised by `scale` (kClamp: an activation range
// narrower than int8; kPerChannel: scale.step is 1, else 0). q and tails: the pair as
// ExtendPair gives it (with x_offset).
template <bool kClamp, bool kPerChannel>
inline void PairOutputs(const uint32_t* q, const int8_t (*tails)[4], int n, int32_t x_offset,
                        const int8_t* w, int w_stride, int channels, const int32_t* bias,
                        const OutputScale& scale, int8_t* dst_a, int8_t* dst_b) {
  const int n4 = n & ~3;
  // Locals, not scale's fields: the int8 stores below may alias anything, and GCC would
  // reload them.
  const int32_t* const multiplier = scale.multiplier;
  const int32_t* const shift = scale.shift;
  const int32_t output_offset = scale.offset;
  const int32_t act_min = scale.act_min;
  const int32_t act_max = scale.act_max;
  const bool right_shift_only = scale.right_shift_only;
  auto finish = [&](int32_t v) {
    v = __ssat(v + output_offset, 8);
    if (kClamp) {
      v = v < act_min ? act_min : v;
      v = v > act_max ? act_max : v;
    }
    return static_cast<int8_t>(v);
  };
  // Channel k's two outputs, sharing its multiplier and shifts.
  auto store = [&](int k, int32_t acc_a, int32_t acc_b) {
    const int c = kPerChannel ? k : 0;
    const int32_t m = multiplier[c];
    const int32_t s = shift[c];
    int32_t a, b;
    if (right_shift_only) {
      a = MultiplyByQuantizedMultiplierRight(acc_a, m, -s);
      b = MultiplyByQuantizedMultiplierRight(acc_b, m, -s);
    } else {
      a = ScaleAnyShift(acc_a, m, s);
      b = ScaleAnyShift(acc_b, m, s);
    }
    const int8_t out_a = finish(a);
    const int8_t out_b = finish(b);
    dst_a[k] = out_a;
    dst_b[k] = out_b;
  };
  for (int k = 0; k < channels; k += 2) {
    const int8_t* w0 = w + static_cast<size_t>(k) * w_stride;
    const bool two = k + 1 < channels;
    const int32_t b0 = bias != nullptr ? bias[k] : 0;
    const int32_t b1 = bias != nullptr && two ? bias[k + 1] : 0;
    int32_t acc[4] = {b0, b0, b1, b1};
    if (two) {
      Dot2x2(q, n4, w0, w_stride, acc);
    } else {
      Dot1x2(q, n4, w0, acc);
    }
    for (int i = n4; i < n; ++i) {
      const int32_t a = tails[0][i - n4] + x_offset;
      const int32_t b = tails[1][i - n4] + x_offset;
      acc[0] += w0[i] * a;
      acc[1] += w0[i] * b;
      if (two) {
        acc[2] += w0[w_stride + i] * a;
        acc[3] += w0[w_stride + i] * b;
      }
    }
    store(k, acc[0], acc[1]);
    if (two) store(k + 1, acc[2], acc[3]);
  }
}

inline void PairOutputs(const uint32_t* q, const int8_t (*tails)[4], int n, int32_t x_offset,
                        const int8_t* w, int w_stride, int channels, const int32_t* bias,
                        const OutputScale& scale, int8_t* dst_a, int8_t* dst_b) {
  const bool clamp = scale.act_min != INT8_MIN || scale.act_max != INT8_MAX;
  if (scale.step == 1) {
    (clamp ? PairOutputs<true, true> : PairOutputs<false, true>)(q, tails, n, x_offset, w, w_stride,
                                                                 channels, bias, scale, dst_a,
                                                                 dst_b);
  } else {
    (clamp ? PairOutputs<true, false> : PairOutputs<false, false>)(q, tails, n, x_offset, w,
                                                                   w_stride, channels, bias, scale,
                                                                   dst_a, dst_b);
  }
}

}  // namespace dsp
}  // namespace tflm_vmcu

#endif  // TFLM_VMCU_DSP

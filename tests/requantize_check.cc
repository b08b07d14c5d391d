// Compares MultiplyByQuantizedMultiplierRight with MultiplyByQuantizedMultiplier (TFLM's
// arithmetic, kernels/quant_util.h) for every right shift in [1, 31]: multipliers and inputs
// at and around the int32 extremes and powers of two, then random ones. Prints the number
// of mismatches and the first few; exits 1 if there is any. Run by tests/test_requantize.py.
//
//   c++ -O2 -std=c++17 -Icpp/src -Icpp/include tests/requantize_check.cc && ./a.out [RANDOM]
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <vector>

#include "kernels/quant_util.h"

namespace {

uint64_t state = 0x9E3779B97F4A7C15ull;
uint32_t Next() {  // xorshift64*
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  return static_cast<uint32_t>((state * 0x2545F4914F6CDD1Dull) >> 32);
}

// Values at and next to 0, the int32 extremes and every power of two.
std::vector<int32_t> EdgeValues(bool negative) {
  std::vector<int32_t> v = {0, 1, 2, 3, INT32_MAX, INT32_MAX - 1};
  for (int b = 1; b < 31; ++b) {
    const int32_t p = INT32_C(1) << b;
    v.push_back(p - 1);
    v.push_back(p);
    v.push_back(p + 1);
  }
  if (negative) {
    const size_t n = v.size();
    for (size_t i = 0; i < n; ++i) v.push_back(-v[i]);
    v.push_back(INT32_MIN);
    v.push_back(INT32_MIN + 1);
  }
  return v;
}

long mismatches = 0;
void Check(int32_t x, int32_t m, int right) {
  const int32_t want = tflm_vmcu::MultiplyByQuantizedMultiplier(x, m, -right);
  const int32_t got = tflm_vmcu::MultiplyByQuantizedMultiplierRight(x, m, right);
  if (want != got && ++mismatches <= 10) {
    printf("x=%ld multiplier=%ld shift=-%d: %ld, expected %ld\n", static_cast<long>(x),
           static_cast<long>(m), right, static_cast<long>(got), static_cast<long>(want));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const long random = argc > 1 ? atol(argv[1]) : 10000000;
  const std::vector<int32_t> xs = EdgeValues(true);
  const std::vector<int32_t> ms = EdgeValues(false);
  long cases = 0;
  for (int right = 1; right <= 31; ++right) {
    for (int32_t x : xs) {
      for (int32_t m : ms) {
        Check(x, m, right);
        ++cases;
      }
    }
  }
  for (long i = 0; i < random; ++i, ++cases) {
    const int right = 1 + static_cast<int>(Next() % 31);
    // Multipliers as QuantizeMultiplier gives them ([2^30, 2^31)) half of the time.
    const uint32_t r = Next();
    const int32_t m =
        (i & 1) ? static_cast<int32_t>(r >> 1) : static_cast<int32_t>((r >> 2) | (1u << 30));
    // Inputs of every magnitude: a random int32 shifted right by 0..31.
    const int32_t x = static_cast<int32_t>(Next()) >> (Next() % 32);
    Check(x, m, right);
  }
  printf("%ld cases, %ld mismatches\n", cases, mismatches);
  return mismatches == 0 ? 0 : 1;
}

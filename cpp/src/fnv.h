// FNV-1a (32-bit) over little-endian words: the digest that ties a plan to its model.
#pragma once

#include <stdint.h>

namespace tflm_vmcu {

struct Fnv {
  uint32_t h = 0x811C9DC5u;
  void Add(uint32_t word) {
    for (int i = 0; i < 4; ++i) h = (h ^ ((word >> (8 * i)) & 0xFFu)) * 0x01000193u;
  }
};

}  // namespace tflm_vmcu

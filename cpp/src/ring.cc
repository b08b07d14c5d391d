#include "ring.h"

#include "format.h"

namespace tflm_vmcu {

void HazardState::OnRead(const Tensor& t, uint32_t pool_pos, uint32_t i, uint32_t n) {
  if (writing) {  // a read after writes starts the next unit of work
    ++unit;
    writing = false;
  }
  uint32_t pos = pool_pos;
  for (uint32_t k = 0; k < n; ++k, ++pos) {
    if (pos == pool_size) pos = 0;
    pin[pos] = unit;
    if (tensor[pos] == t.index && element[pos] == static_cast<int32_t>(i + k)) continue;
    if (count++ == 0) {
      char reader[40];
      if (op < 0)
        Format(reader, sizeof(reader), "the caller (after the last operator)");
      else
        Format(reader, sizeof(reader), "operator %d", op);
      Format(first, sizeof(first),
             "%s read byte %u of tensor '%s' at pool offset %u, but that byte now holds %s %d "
             "of tensor %d",
             reader, i + k, t.name, pos, tensor[pos] < 0 ? "nothing:" : "byte", element[pos],
             tensor[pos]);
    }
  }
}

void HazardState::OnWrite(const Tensor& t, uint32_t pool_pos, uint32_t i, uint32_t n) {
  writing = true;
  uint32_t pos = pool_pos;
  for (uint32_t k = 0; k < n; ++k, ++pos) {
    if (pos == pool_size) pos = 0;
    if (pin[pos] == unit && tensor[pos] != t.index && tensor[pos] >= 0 && count++ == 0) {
      Format(first, sizeof(first),
             "operator %d wrote byte %u of tensor '%s' at pool offset %u over byte %d of "
             "tensor %d that the same unit of work still reads",
             op, i + k, t.name, pos, element[pos], tensor[pos]);
    }
    tensor[pos] = t.index;
    element[pos] = static_cast<int32_t>(i + k);
  }
}

void HazardState::Tag(const Tensor& t) {
  uint32_t pos = t.offset;
  for (uint32_t k = 0; k < t.bytes; ++k, ++pos) {
    if (pos == pool_size) pos = 0;
    tensor[pos] = t.index;
    element[pos] = static_cast<int32_t>(k);
  }
}

}  // namespace tflm_vmcu

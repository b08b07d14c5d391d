// A set of dims of a tensor as extents and strides (in elements), unit dims dropped and
// neighbours merged while contiguous: how MEAN walks its input (kernels/mean.cc), and so
// how its access-order model (access_order.cc) follows it.
#pragma once

#include <stdint.h>

#include "tflm_vmcu/tensor.h"

namespace tflm_vmcu {

template <typename T>
struct DimListOf {
  int32_t rank = 0;
  T dims[kMaxRank] = {};
  T strides[kMaxRank] = {};

  void Append(T dim, T stride) {
    if (dim == 1) return;
    if (rank > 0 && strides[rank - 1] == stride * dim) {
      dims[rank - 1] *= dim;
      strides[rank - 1] = stride;
      return;
    }
    dims[rank] = dim;
    strides[rank] = stride;
    ++rank;
  }
};

}  // namespace tflm_vmcu

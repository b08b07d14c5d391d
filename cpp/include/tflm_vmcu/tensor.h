// Runtime view of one tensor. Constant tensors point into the model buffer (flash
// on a device); activation tensors point into the caller's memory block.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

namespace tflm_vmcu {

// Values match tflite's TensorType enum.
enum class DType : uint8_t {
  kFloat32 = 0,
  kInt32 = 2,
  kUInt8 = 3,
  kInt64 = 4,
  kInt16 = 7,
  kInt8 = 9,
};

constexpr int kMaxRank = 6;

// Bytes of one element of a supported type, 0 for an unsupported type code.
size_t DTypeSize(uint8_t tflite_type);

// Name of a tflite type code ("INT8", "FLOAT32", ...), "UNKNOWN" if not known.
const char* DTypeName(uint8_t tflite_type);
// True when the tflite schema defines the type code (supported or not).
bool DTypeKnown(uint8_t tflite_type);

struct Shape {
  int32_t rank = 0;
  int32_t dims[kMaxRank] = {};

  int32_t Dim(int i) const { return dims[i]; }
  // Number of elements; saturates at 2^62 (a hostile shape must not overflow).
  int64_t FlatSize() const {
    constexpr int64_t kLimit = int64_t{1} << 62;
    int64_t n = 1;
    for (int i = 0; i < rank; ++i) {
      if (dims[i] != 0 && n > kLimit / dims[i]) return kLimit;
      n *= dims[i];
    }
    return n;
  }
  bool operator==(const Shape& o) const {
    if (rank != o.rank) return false;
    for (int i = 0; i < rank; ++i)
      if (dims[i] != o.dims[i]) return false;
    return true;
  }
  bool operator!=(const Shape& o) const { return !(*this == o); }
};

// Per-channel quantisation arrays stay in the model buffer; their alignment is not
// guaranteed, so they are read element by element through these helpers.
struct ChannelQuant {
  const uint8_t* scales = nullptr;       // little-endian float32[count]
  const uint8_t* zero_points = nullptr;  // little-endian int64[count]
  int32_t count = 0;
  int32_t quantized_dimension = 0;

  float Scale(int32_t i) const {
    float f;
    memcpy(&f, scales + 4 * i, 4);
    return f;
  }
  int64_t ZeroPoint(int32_t i) const {
    int64_t z;
    memcpy(&z, zero_points + 8 * i, 8);
    return z;
  }
};

struct Tensor {
  // Constants: points into the (read-only) model. Activations: pool + offset; valid as a
  // flat pointer only when the tensor does not wrap (always so for model inputs and
  // outputs). Kernels access activations through RingBytes (cpp/src/ring.h).
  uint8_t* data = nullptr;
  size_t bytes = 0;
  uint32_t offset = 0;  // activations: ring offset of byte 0 in the pool
  Shape shape;
  DType type = DType::kInt8;
  bool is_const = false;
  float scale = 0.0f;  // per-tensor scale (channel 0 when per-channel)
  int32_t zero_point = 0;
  ChannelQuant channels;  // count == 0 when not quantised per channel
  const char* name = "";  // points into the model
  int32_t index = -1;     // tensor index in subgraph 0

  template <typename T>
  T* Data() {
    return reinterpret_cast<T*>(data);
  }
  template <typename T>
  const T* Data() const {
    return reinterpret_cast<const T*>(data);
  }
};

}  // namespace tflm_vmcu

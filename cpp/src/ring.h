// Ring-addressed access to tensor bytes, and the hazard checker's hooks.
//
// Activation tensors live in one pool addressed as a ring: byte i of a tensor whose
// plan offset is `start` lives at pool[(start + i) mod pool_size], so a tensor may wrap
// past the end of the pool. Kernels never index tensor memory directly; they take
// views of contiguous byte ranges through RingBytes. A view that does not wrap is a
// plain pointer (the common case, and always so for constants and flat plans); one
// that wraps is staged in a small scratch buffer given by the kernel.
//
// The kernel contract that makes in-place execution safe (and checkable):
//   for each unit of work (e.g. one output pixel), in order:
//     1. take read views of every input byte the unit needs (Read),
//     2. compute and write the unit's output bytes (BeginWrite/EndWrite or Store).
//   A kernel never takes a new read view in the middle of writing a unit.
// The planner's access-order model (cpp/src/access_order.cc) describes exactly these units.
//
// Hazard checking (host builds, enabled per interpreter): every pool byte carries a tag
// naming the tensor byte it holds. A read view fails if a byte's tag is not the
// expected tensor byte (it was overwritten), and a write fails if it lands on a byte
// that a read view of the current unit still covers.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tflm_vmcu/tensor.h"

namespace tflm_vmcu {

// Shadow state of the hazard checker: three words per pool byte.
struct HazardState {
  int32_t* tensor = nullptr;   // [pool] tensor index whose byte the pool byte holds, -1: none
  int32_t* element = nullptr;  // [pool] byte index within that tensor
  uint32_t* pin = nullptr;     // [pool] unit id of the last read view covering the byte
  uint32_t pool_size = 0;
  uint32_t unit = 1;     // current unit of work
  bool writing = false;  // the current unit has started writing
  uint32_t count = 0;    // hazards seen
  int32_t op = -1;       // operator being evaluated (-1: the caller, reading outputs)
  char first[256] = {};  // description of the first hazard

  void OnRead(const Tensor& t, uint32_t pool_pos, uint32_t i, uint32_t n);
  void OnWrite(const Tensor& t, uint32_t pool_pos, uint32_t i, uint32_t n);
  void Tag(const Tensor& t);  // marks a whole tensor as holding its own bytes (inputs)
  void ReadsDone() {          // the unit's read views are dead: unpin them
    ++unit;
    writing = false;
  }
};

class RingBytes {
 public:
  RingBytes() = default;
  // Constants and flat buffers: `size` is large enough that nothing wraps.
  RingBytes(const Tensor* t, uint8_t* pool, uint32_t pool_size, uint32_t start, HazardState* hazard)
      : t_(t), pool_(pool), size_(pool_size), start_(start), hazard_(hazard) {}

  // Pointer to bytes [i, i + n) for reading: direct, or copied into `scratch` (n bytes)
  // when the range wraps.
  const int8_t* Read(uint32_t i, uint32_t n, int8_t* scratch) const {
    const uint32_t pos = Pos(i);
    if (hazard_ != nullptr) hazard_->OnRead(*t_, pos, i, n);
    if (size_ - pos >= n) return reinterpret_cast<const int8_t*>(pool_ + pos);
    const uint32_t head = size_ - pos;
    memcpy(scratch, pool_ + pos, head);
    memcpy(scratch + head, pool_, n - head);
    return scratch;
  }

  // Read view of bytes [i, i + n) of a range that never wraps (a fused kernel's workspace).
  const int8_t* ReadFlat(uint32_t i, uint32_t n) const {
    const uint32_t pos = Pos(i);
    if (hazard_ != nullptr) hazard_->OnRead(*t_, pos, i, n);
    return reinterpret_cast<const int8_t*>(pool_ + pos);
  }

  int8_t ReadByte(uint32_t i) const {
    const uint32_t pos = Pos(i);
    if (hazard_ != nullptr) hazard_->OnRead(*t_, pos, i, 1);
    return static_cast<int8_t>(pool_[pos]);
  }

  // Destination for bytes [i, i + n): direct, or `scratch` when the range wraps; the
  // bytes are in place after EndWrite(i, n, returned pointer).
  int8_t* BeginWrite(uint32_t i, uint32_t n, int8_t* scratch) const {
    const uint32_t pos = Pos(i);
    if (hazard_ != nullptr) hazard_->OnWrite(*t_, pos, i, n);
    if (size_ - pos >= n) return reinterpret_cast<int8_t*>(pool_ + pos);
    return scratch;
  }
  void EndWrite(uint32_t i, uint32_t n, const int8_t* written) const {
    const uint32_t pos = Pos(i);
    if (written == reinterpret_cast<const int8_t*>(pool_ + pos)) return;
    const uint32_t head = size_ - pos;
    memcpy(pool_ + pos, written, head);
    memcpy(pool_, written + head, n - head);
  }

  // Copies n bytes from `src` to bytes [i, i + n).
  void Store(uint32_t i, const void* src, uint32_t n) const {
    const uint32_t pos = Pos(i);
    if (hazard_ != nullptr) hazard_->OnWrite(*t_, pos, i, n);
    const uint8_t* s = static_cast<const uint8_t*>(src);
    if (size_ - pos >= n) {
      memmove(pool_ + pos, s, n);
      return;
    }
    const uint32_t head = size_ - pos;
    memmove(pool_ + pos, s, head);
    memmove(pool_, s + head, n - head);
  }

  void WriteByte(uint32_t i, int8_t v) const {
    const uint32_t pos = Pos(i);
    if (hazard_ != nullptr) hazard_->OnWrite(*t_, pos, i, 1);
    pool_[pos] = static_cast<uint8_t>(v);
  }

  // In-place RESHAPE: the bytes stay where they are and now belong to `to` (which has
  // the same offset). Under the hazard checker they must still be intact.
  void Rename(const Tensor* to) const {
    if (hazard_ == nullptr) return;
    hazard_->OnRead(*t_, start_, 0, static_cast<uint32_t>(t_->bytes));
    hazard_->Tag(*to);
  }

  // The whole tensor as one plain pointer, when it does not wrap and the hazard checker
  // is off; nullptr otherwise. Kernels may then run flat loops with the same unit order.
  uint8_t* Flat() const { return hazard_ == nullptr && Contiguous() ? pool_ + start_ : nullptr; }

  // The current unit of work reads its views no more (it copied what it needs): its writes
  // may overwrite them. (For the hazard checker; a kernel that reads all of a unit's inputs
  // before writing, as one pixel at a time does, need not say so.)
  void ReadsDone() const {
    if (hazard_ != nullptr) hazard_->ReadsDone();
  }

  // True when bytes [i, i + n) wrap around the pool end (a view of them would be staged).
  bool Wraps(uint32_t i, uint32_t n) const { return size_ - Pos(i) < n; }

  // True when no view of this tensor can wrap (kernels may then take one view of the
  // whole tensor).
  bool Contiguous() const { return size_ - start_ >= t_->bytes; }

 private:
  uint32_t Pos(uint32_t i) const {
    uint32_t p = start_ + i;
    if (p >= size_) p -= size_;  // i < tensor bytes <= pool size, start < pool size
    return p;
  }

  const Tensor* t_ = nullptr;
  uint8_t* pool_ = nullptr;
  uint32_t size_ = 0;
  uint32_t start_ = 0;
  HazardState* hazard_ = nullptr;
};

}  // namespace tflm_vmcu

// The bytes and alignment of each runtime-state type on a 32-bit Arm core (AAPCS: 4-byte
// pointers and size_t, 8-byte aligned int64 and double), so that a 64-bit host reports the
// state a Cortex-M needs (Interpreter::arm32_state_bytes) without a cross-compiler.
//
// Every type the runtime allocates as state declares its layout next to its definition with
// TFLM_VMCU_ARM32_LAYOUT; every 32-bit Arm build checks the declaration against the
// compiler, so a stale figure breaks the firmware build instead of a prediction.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace tflm_vmcu {

struct Arm32Layout {
  uint32_t bytes;
  uint32_t alignment;
};

#if defined(__arm__) && !defined(__aarch64__)
constexpr bool kArm32Build = true;
#else
constexpr bool kArm32Build = false;
#endif

// Found by argument-dependent lookup from LayoutOnArm32<T>(), so it works for types in
// anonymous namespaces too.
#define TFLM_VMCU_ARM32_LAYOUT(T, bytes, align)                                               \
  constexpr ::tflm_vmcu::Arm32Layout Arm32LayoutOf(const T*) { return {bytes, align}; }       \
  static_assert(!::tflm_vmcu::kArm32Build || (sizeof(T) == (bytes) && alignof(T) == (align)), \
                "the declared 32-bit Arm layout of " #T " is not sizeof/alignof on this core")

// Scalars and pointers, the same on every 32-bit Arm core.
constexpr Arm32Layout Arm32LayoutOf(const int8_t*) { return {1, 1}; }
constexpr Arm32Layout Arm32LayoutOf(const int32_t*) { return {4, 4}; }
template <typename T>
constexpr Arm32Layout Arm32LayoutOf(T* const*) {
  return {4, 4};
}

template <typename T>
constexpr Arm32Layout LayoutOnArm32() {
  return Arm32LayoutOf(static_cast<const T*>(nullptr));
}

// One allocation of runtime state: `count` objects of T on this build and on a 32-bit Arm
// core.
struct StateRequest {
  size_t bytes;
  size_t alignment;
  size_t arm32_bytes;
  size_t arm32_alignment;
};

template <typename T>
constexpr StateRequest StateOf(size_t count = 1) {
  return {sizeof(T) * count, alignof(T), LayoutOnArm32<T>().bytes * count,
          LayoutOnArm32<T>().alignment};
}

}  // namespace tflm_vmcu

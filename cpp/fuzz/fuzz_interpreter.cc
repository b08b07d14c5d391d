// libFuzzer target: the model reader, the plan reader and interpreter setup, plus one
// Invoke when setup succeeds. Any input must end in a status, never a crash, a hang or a
// write outside the memory block (checked with guard zones on both sides).
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tflm_vmcu/interpreter.h"

namespace {

constexpr size_t kMaxModel = 1 << 20;
constexpr size_t kMemory = 96 * 1024;  // small: large models fail fast with kOutOfMemory
constexpr size_t kGuard = 64;
constexpr uint8_t kGuardByte = 0xA5;

alignas(16) uint8_t model_copy[kMaxModel];
alignas(16) uint8_t block[kGuard + kMemory + kGuard];

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > kMaxModel) return 0;
  memcpy(model_copy, data, size);  // the runtime reads models in place: 4-byte aligned
  memset(block, kGuardByte, sizeof(block));
  tflm_vmcu::Interpreter interp(model_copy, size, block + kGuard, kMemory);
  if (interp.AllocateTensors() == tflm_vmcu::Status::kOk) {
    for (size_t i = 0; i < interp.inputs_size(); ++i) {
      tflm_vmcu::Tensor* t = interp.input(i);
      memset(t->data, static_cast<int>(i * 37 + 11), t->bytes);
    }
    interp.Invoke();
  }
  for (size_t i = 0; i < kGuard; ++i) {
    if (block[i] != kGuardByte || block[kGuard + kMemory + i] != kGuardByte) __builtin_trap();
  }
  return 0;
}

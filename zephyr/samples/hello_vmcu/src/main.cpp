// hello_vmcu: runs a small int8 model (src/model_data.h, made by `tflm-vmcu compile` and
// `tflm-vmcu export`) with the tflm-vmcu runtime in one static memory block, then prints
// the memory the runtime used and every output byte.
#include <stddef.h>
#include <stdint.h>
#include <zephyr/kernel.h>
#include <zephyr/sys/printk.h>

#include "model_data.h"
#include "tflm_vmcu/interpreter.h"

namespace {

// Activation pool + runtime state. G_MODEL_ARENA_BYTES was measured on a 64-bit host;
// the runtime state is smaller on a 32-bit core, so the model fits with room to spare.
alignas(16) uint8_t g_memory[G_MODEL_ARENA_BYTES];

// A fixed input pattern, so that the output can be compared with the host runtime.
void FillInput(tflm_vmcu::Tensor* t) {
  for (size_t i = 0; i < t->bytes; ++i) t->data[i] = static_cast<uint8_t>(i * 37u + 11u);
}

}  // namespace

int main(void) {
  tflm_vmcu::Interpreter interp(g_model, g_model_len, g_memory, sizeof(g_memory));
  if (interp.AllocateTensors() != tflm_vmcu::Status::kOk) {
    printk("hello_vmcu: AllocateTensors failed: %s\n", interp.error_message());
    return 1;
  }
  for (size_t k = 0; k < interp.inputs_size(); ++k) FillInput(interp.input(k));
  if (interp.Invoke() != tflm_vmcu::Status::kOk) {
    printk("hello_vmcu: Invoke failed: %s\n", interp.error_message());
    return 1;
  }

  printk("hello_vmcu: pool %u bytes, state %u bytes, plan %s\n",
         static_cast<unsigned>(interp.pool_bytes()), static_cast<unsigned>(interp.state_bytes()),
         interp.has_plan() ? "yes" : "no");
  for (size_t k = 0; k < interp.outputs_size(); ++k) {
    const tflm_vmcu::Tensor* out = interp.output(k);
    printk("hello_vmcu: output %u:", static_cast<unsigned>(k));
    for (size_t i = 0; i < out->bytes; ++i) printk(" %d", static_cast<int8_t>(out->data[i]));
    printk("\n");
  }
  printk("hello_vmcu: done\n");
  return 0;
}

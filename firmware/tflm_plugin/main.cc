// TFLM firmware harness: runs one model on one input in TensorFlow Lite Micro (built from
// the user's TFLM tree, e.g. with its CMSIS-NN kernels), prints the outputs and a short
// report over semihosting and exits with a firmware.h code. Built twice per model by
// `tflm-vmcu firmware OUT --runtime tflm-plugin` (tflm_vmcu/firmware/tflm_plugin.py):
//
//   stock        (no define)         stock TFLM: TFLM's planner and kernels, the model
//                                    without its plan
//   plug-in      -DTFLM_VMCU_PLUGIN  TFLM + the tflm-vmcu plug-in: the plan places the
//                                    buffers, the ring kernels run the ops they have
//
// The generated headers (BUILD/generated):
//   model_data.h  g_model[] (16-byte aligned, in flash), g_model_len, G_MODEL_ARENA_BYTES
//                 (the arena handed to TFLM: larger than needed; the report says how much
//                 TFLM used)
//   model_io.h    the input bytes and, with FW_HAS_EXPECTED, the expected output bytes
//   model_ops.h   FW_MODEL_OPS(RING, TFLM): the model's builtin ops with their
//                 MicroMutableOpResolver adders; RING for ops the plug-in's ring kernels run
//                 (TFLM's kernel in the stock build; with fallback 1, TFLM's kernel also runs
//                 the operators the plan leaves to it), TFLM for the others;
//                 FW_MODEL_BLOCK_OPS(BLOCK): the plug-in's fused-block custom op, if used
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "firmware.h"
#include "harness.h"
#include "model_data.h"
#include "model_io.h"
#include "model_ops.h"
#include "semihost.h"
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"
#ifdef TFLM_VMCU_PLUGIN
#include "tensorflow/lite/micro/micro_allocator.h"
#include "tflm_vmcu/tflm_plugin.h"
#endif

#ifndef FW_CPU
#define FW_CPU "unknown-cpu"
#endif
#ifndef FW_BOARD
#define FW_BOARD "unknown-board"
#endif

// C++ statics with destructors register them for exit; the firmware never exits normally.
extern "C" {
void* __dso_handle = nullptr;
int __aeabi_atexit(void*, void (*)(void*), void*) { return 0; }
int __cxa_atexit(void (*)(void*), void*, void*) { return 0; }
}

namespace {

using fw::CalibrationTicks;
using fw::Fail;
using fw::kCalibrationIterations;

alignas(16) uint8_t g_arena[G_MODEL_ARENA_BYTES];

// TFLM's messages (MicroPrintf) on the console. A failed TFLM check prints "HALTED" and
// then loops for ever (op_macros.h with TF_LITE_MCU_DEBUG_LOG): exit instead.
void Log(const char* text) {
  fw_write(text);
  if (strcmp(text, "HALTED") == 0) {
    fw_write("\nfirmware: TFLM halted (one of its checks failed)\n");
    fw_exit(kFwHalted);
  }
}

// "output K: <hex>" lines, 32 bytes a line, for the host to compare.
void WriteOutput(size_t index, const uint8_t* data, size_t bytes) {
  static const char kHex[] = "0123456789abcdef";
  char line[2 * 32 + 1];
  for (size_t start = 0; start < bytes; start += 32) {
    size_t n = bytes - start < 32 ? bytes - start : 32;
    for (size_t i = 0; i < n; ++i) {
      line[2 * i] = kHex[data[start + i] >> 4];
      line[2 * i + 1] = kHex[data[start + i] & 15];
    }
    line[2 * n] = '\0';
    fw_write("output ");
    fw_write_u32(static_cast<uint32_t>(index));
    fw_write(": ");
    fw_write(line);
    fw_write("\n");
  }
}

#define FW_COUNT_OP(builtin, adder, fallback) +1
#define FW_COUNT_BLOCK(name) +1
constexpr unsigned int kNumOps =
    0 FW_MODEL_OPS(FW_COUNT_OP, FW_COUNT_OP) FW_MODEL_BLOCK_OPS(FW_COUNT_BLOCK);
#undef FW_COUNT_OP
#undef FW_COUNT_BLOCK

#ifdef TFLM_VMCU_PLUGIN
const char kKind[] = "TFLM + tflm-vmcu plug-in";
#else
const char kKind[] = "stock TFLM";
#endif

TfLiteStatus AddOps(tflite::MicroMutableOpResolver<kNumOps>& resolver) {
#ifdef TFLM_VMCU_PLUGIN
  // The ring kernel; with `fallback`, TFLM's too, for the operators the plan leaves to it.
#define FW_ADD_RING(builtin, adder, fallback)                                                     \
  if (resolver.adder(tflm_vmcu::TflmPlugin::Kernel<(fallback) ? tflm_vmcu::Fallback::kTflmKernels \
                                                              : tflm_vmcu::Fallback::kNone,       \
                                                   tflite::Register_##builtin>()) != kTfLiteOk)   \
    return kTfLiteError;
#else
#define FW_ADD_RING(builtin, adder, fallback) \
  if (resolver.adder() != kTfLiteOk) return kTfLiteError;
#endif
#define FW_ADD_TFLM(builtin, adder, fallback) \
  if (resolver.adder() != kTfLiteOk) return kTfLiteError;
  FW_MODEL_OPS(FW_ADD_RING, FW_ADD_TFLM)
#undef FW_ADD_RING
#undef FW_ADD_TFLM
#ifdef TFLM_VMCU_PLUGIN
  // A fused inverted-bottleneck block: the plug-in's custom op.
#define FW_ADD_BLOCK(name)                                                            \
  {                                                                                   \
    static const TFLMRegistration block = tflm_vmcu::TflmPlugin::BlockRegistration(); \
    if (resolver.AddCustom(name, &block) != kTfLiteOk) return kTfLiteError;           \
  }
#else
#define FW_ADD_BLOCK(name) return kTfLiteError;  // stock TFLM has no kernel for it
#endif
  FW_MODEL_BLOCK_OPS(FW_ADD_BLOCK)
#undef FW_ADD_BLOCK
  return kTfLiteOk;
}

}  // namespace

int main() {
  RegisterDebugLogCallback(Log);
  fw_write("firmware: " FW_MODEL_NAME " in ");
  fw_write(kKind);
  fw_write(" on " FW_CPU " (" FW_BOARD ")\n");
  const uint64_t calibration_ticks = CalibrationTicks();

  const tflite::Model* model = tflite::GetModel(g_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    return Fail(kFwBadHarness, "model", "unsupported schema version");
  }
  static tflite::MicroMutableOpResolver<kNumOps> resolver;
  if (AddOps(resolver) != kTfLiteOk) return Fail(kFwBadHarness, "model_ops.h", "AddOps failed");
#ifdef TFLM_VMCU_PLUGIN
  // Constructed here, on the thread stack, not as a global: static constructors run on the
  // small handler stack (startup.c), and the plug-in reads the model and its plan.
  static tflm_vmcu::TflmPlugin plugin(g_model, g_model_len);
  if (plugin.status() != tflm_vmcu::Status::kOk) {
    return Fail(kFwAllocateFailed, "plug-in", plugin.error_message());
  }
  tflite::MicroAllocator* allocator =
      tflite::MicroAllocator::Create(g_arena, sizeof(g_arena), plugin.planner());
  if (allocator == nullptr)
    return Fail(kFwAllocateFailed, "AllocateTensors failed", "no allocator");
  static tflite::MicroInterpreter interpreter(model, resolver, allocator);
  interpreter.SetMicroExternalContext(&plugin);
#else
  static tflite::MicroInterpreter interpreter(model, resolver, g_arena, sizeof(g_arena));
#endif
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    return Fail(kFwAllocateFailed, "AllocateTensors failed", "see TFLM's message above");
  }
  if (interpreter.inputs_size() != FW_NUM_INPUTS || interpreter.outputs_size() != FW_NUM_OUTPUTS) {
    return Fail(kFwBadHarness, "model_io.h", "input/output count differs from the model");
  }
  for (size_t i = 0; i < FW_NUM_INPUTS; ++i) {
    TfLiteTensor* in = interpreter.input(i);
    if (in->bytes != fw_input_bytes[i]) {
      return Fail(kFwBadHarness, "model_io.h", "an input's size differs from the model");
    }
    memcpy(in->data.raw, fw_inputs[i], in->bytes);
  }

  fw_ticks_start();
  const TfLiteStatus status = interpreter.Invoke();
  const uint64_t invoke_ticks = fw_ticks_elapsed();
  if (status != kTfLiteOk)
    return Fail(kFwInvokeFailed, "Invoke failed", "see TFLM's message above");

  uint32_t mismatches = 0, output_bytes = 0;
  for (size_t i = 0; i < FW_NUM_OUTPUTS; ++i) {
    const TfLiteTensor* out = interpreter.output(i);
    const uint8_t* data = reinterpret_cast<const uint8_t*>(out->data.raw);
#if FW_HAS_EXPECTED
    if (out->bytes != fw_expected_bytes[i]) {
      return Fail(kFwBadHarness, "model_io.h", "an output's size differs from the model");
    }
    for (size_t b = 0; b < out->bytes; ++b) mismatches += data[b] != fw_expected[i][b];
#endif
    WriteOutput(i, data, out->bytes);
    output_bytes += static_cast<uint32_t>(out->bytes);
  }

  const uint32_t stack = fw_stack_high_water();
  const uint32_t arena_used = static_cast<uint32_t>(interpreter.arena_used_bytes());
#ifdef TFLM_VMCU_PLUGIN
  // The plan's activation pool (the head), and what TFLM keeps beside it (the tail).
  const uint32_t pool = plugin.pool_bytes();
#else
  const uint32_t pool = arena_used;  // stock TFLM: no split reported
#endif
  fw_write(mismatches == 0 ? "firmware: ok" : "firmware: OUTPUT DIFFERS");
  fw_write(": arena ");
  fw_write_u32(arena_used);
  fw_write(" B, stack ");
  fw_write_u32(stack);
  fw_write(" B\nreport:");
  fw_write_field("mismatches", mismatches);
  fw_write_field("expected", FW_HAS_EXPECTED);
  fw_write_field("output_bytes", output_bytes);
  fw_write_field("arena_bytes", arena_used);
  fw_write_field("arena_size", sizeof(g_arena));
  fw_write_field("pool_bytes", pool);
  fw_write_field("state_bytes", arena_used - pool);
  fw_write_field("stack_bytes", stack);
  fw_write_field("stack_size", fw_stack_size());
  fw_write_field("invoke_ticks", invoke_ticks);
  fw_write_field("calibration_ticks", calibration_ticks);
  fw_write_field("calibration_instructions", 2ull * kCalibrationIterations);
  fw_write("\n");
  return mismatches == 0 ? kFwBitExact : kFwMismatch;
}

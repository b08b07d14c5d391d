// Stock TFLM on the host: runs a model with TFLM's own planner and kernels. Built with
// -DTFLM_VMCU_PLUGIN, the same runner is an application using the tflm-vmcu plug-in
// (tflm_vmcu/tflm_plugin.h): the model's plan places the buffers and the ring kernels run
// every op this runtime has (TFLM's kernels the rest).
//
//   stock_main MODEL.tflite ARENA_BYTES OUT_DIR IN_0.bin [IN_1.bin ...]
//
// Each IN_K.bin holds the raw bytes of input K (exactly the tensor's size). Writes the raw
// bytes of output K to OUT_DIR/out_K.bin and prints one line "arena_used_bytes=N" on
// stdout. On failure prints TFLM's message (stderr) and exits 1. With the plug-in, the
// environment variable TFLM_VMCU_HAZARDS=1 runs it under the hazard checker (prints
// "hazards=N" and "first_hazard=..."), TFLM_VMCU_NO_VERIFY=1 skips the plan verifier
// (tests of the hazard checker) and TFLM_VMCU_NO_FALLBACK=1 registers the plug-in's kernels
// without TFLM's as fallback.
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "all_ops.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"
#ifdef TFLM_VMCU_PLUGIN
#include <vector>

#include "ring.h"
#include "tensorflow/lite/micro/micro_allocator.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#include "tflm_vmcu/interpreter.h"
#include "tflm_vmcu/tflm_plugin.h"
#endif

namespace {

#ifdef TFLM_VMCU_PLUGIN
// Reports each operator to the plug-in's hazard checker: TFLM calls the profiler around each
// operator's Invoke, in order.
class HazardProfiler : public tflite::MicroProfilerInterface {
 public:
  explicit HazardProfiler(tflm_vmcu::TflmPlugin& plugin) : plugin_(plugin) {}
  uint32_t BeginEvent(const char*) override {
    plugin_.BeginOperator(next_);
    return static_cast<uint32_t>(next_++);
  }
  void EndEvent(uint32_t handle) override { plugin_.EndOperator(static_cast<int32_t>(handle)); }

 private:
  tflm_vmcu::TflmPlugin& plugin_;
  int32_t next_ = 0;
};
#endif

int Fail(const char* what, const std::string& detail = "") {
  std::fprintf(stderr, "stock_main: %s%s%s\n", what, detail.empty() ? "" : ": ", detail.c_str());
  return 1;
}

// 16-byte aligned, as TFLM wants for the model (flatbuffers) and the arena.
uint8_t* AllocAligned(size_t bytes) {
  const size_t rounded = (bytes + 15) / 16 * 16;
  return static_cast<uint8_t*>(std::aligned_alloc(16, rounded == 0 ? 16 : rounded));
}

// Reads a whole file into a 16-byte aligned buffer; nullptr (and errno) on failure.
uint8_t* ReadFile(const char* path, size_t* size) {
  FILE* f = std::fopen(path, "rb");
  if (f == nullptr) return nullptr;
  uint8_t* data = nullptr;
  if (std::fseek(f, 0, SEEK_END) == 0) {
    const long end = std::ftell(f);
    if (end >= 0 && std::fseek(f, 0, SEEK_SET) == 0) {
      *size = static_cast<size_t>(end);
      data = AllocAligned(*size);
      if (data != nullptr && std::fread(data, 1, *size, f) != *size) {
        std::free(data);
        data = nullptr;
      }
    }
  }
  std::fclose(f);
  return data;
}

bool WriteFile(const std::string& path, const void* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return false;
  const bool ok = std::fwrite(data, 1, size, f) == size;
  return std::fclose(f) == 0 && ok;
}

// Everything after reading the model: the interpreter is destroyed on return, before
// main() frees the arena it points into.
int Run(char** argv, size_t num_inputs, const uint8_t* model_data, size_t model_size,
        uint8_t* arena, size_t arena_size) {
  const tflite::Model* model = tflite::GetModel(model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    return Fail("unsupported model schema version", std::to_string(model->version()));
  }
#ifdef TFLM_VMCU_PLUGIN
  // Every op, and the custom operator of fused blocks.
  tflite::MicroMutableOpResolver<tflm_vmcu_host::kAllOpsCount + 1> resolver;
  // What an application changes to use the plug-in (docs/MIGRATION.md): the planner, the
  // ring kernels for the ops this runtime has, and the external context.
  tflm_vmcu::TflmPlugin plugin(model_data, model_size);
  // TFLM's kernels as fallback for the operators the plan leaves to TFLM (tests: without).
  const TfLiteStatus ring = std::getenv("TFLM_VMCU_NO_FALLBACK") == nullptr
                                ? plugin.AddKernels<tflm_vmcu::Fallback::kTflmKernels>(resolver)
                                : plugin.AddKernels(resolver);
  if (ring != kTfLiteOk || tflm_vmcu_host::AddAllOps(resolver) != kTfLiteOk)
    return Fail("op registration failed");
  tflite::MicroAllocator* allocator =
      tflite::MicroAllocator::Create(arena, arena_size, plugin.planner());
  if (allocator == nullptr) return Fail("AllocateTensors failed", "no allocator");
  // The hazard checker's shadow state spans the ring.
  const bool hazards = std::getenv("TFLM_VMCU_HAZARDS") != nullptr;
  const size_t ring_bytes = hazards ? plugin.pool_bytes() : 0;
  std::vector<int32_t> tags_tensor(ring_bytes, -1), tags_element(ring_bytes, -1);
  std::vector<uint32_t> pins(ring_bytes, 0);
  tflm_vmcu::HazardState hazard;
  hazard.tensor = tags_tensor.data();
  hazard.element = tags_element.data();
  hazard.pin = pins.data();
  hazard.pool_size = static_cast<uint32_t>(ring_bytes);
  if (hazards) plugin.set_hazard_state(&hazard);
  if (std::getenv("TFLM_VMCU_NO_VERIFY") != nullptr) plugin.set_verify_plan(false);
  HazardProfiler profiler(plugin);
  tflite::MicroInterpreter interpreter(model, resolver, allocator, nullptr,
                                       hazards ? &profiler : nullptr);
  if (std::getenv("TFLM_VMCU_NO_CONTEXT") == nullptr)  // tests: the step an app may forget
    interpreter.SetMicroExternalContext(&plugin);
#else
  (void)model_size;
  tflite::MicroMutableOpResolver<tflm_vmcu_host::kAllOpsCount> resolver;
  if (tflm_vmcu_host::AddAllOps(resolver) != kTfLiteOk) return Fail("op registration failed");
  tflite::MicroInterpreter interpreter(model, resolver, arena, arena_size);
#endif
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    return Fail("AllocateTensors failed", "arena of " + std::to_string(arena_size) + " bytes");
  }

  if (num_inputs != interpreter.inputs_size()) {
    return Fail("wrong number of inputs", "model has " + std::to_string(interpreter.inputs_size()) +
                                              ", given " + std::to_string(num_inputs));
  }
  for (size_t i = 0; i < num_inputs; ++i) {
    TfLiteTensor* input = interpreter.input(i);
    size_t size = 0;
    uint8_t* data = ReadFile(argv[4 + i], &size);
    if (data == nullptr) return Fail("cannot read input", argv[4 + i]);
    const bool size_ok = size == input->bytes;
    if (size_ok) std::memcpy(input->data.raw, data, size);
    std::free(data);
    if (!size_ok) {
      return Fail("input size mismatch", std::string(argv[4 + i]) + " has " + std::to_string(size) +
                                             " bytes, input " + std::to_string(i) + " needs " +
                                             std::to_string(input->bytes));
    }
  }

#ifdef TFLM_VMCU_PLUGIN
  plugin.BeginInvoke();
#endif
  if (interpreter.Invoke() != kTfLiteOk) return Fail("Invoke failed");
#ifdef TFLM_VMCU_PLUGIN
  plugin.EndInvoke();
  if (hazards) std::printf("hazards=%u\nfirst_hazard=%s\n", hazard.count, hazard.first);
#endif

  for (size_t i = 0; i < interpreter.outputs_size(); ++i) {
    const TfLiteTensor* output = interpreter.output(i);
    const std::string path = std::string(argv[3]) + "/out_" + std::to_string(i) + ".bin";
    if (!WriteFile(path, output->data.raw, output->bytes)) {
      return Fail("cannot write output", path + " (" + std::strerror(errno) + ")");
    }
  }
  std::printf("arena_used_bytes=%zu\n", interpreter.arena_used_bytes());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s MODEL.tflite ARENA_BYTES OUT_DIR IN_0.bin [IN_1.bin ...]\n",
                 argv[0]);
    return 1;
  }
  char* end = nullptr;
  const unsigned long long arena_size = std::strtoull(argv[2], &end, 10);
  if (end == argv[2] || *end != '\0' || arena_size == 0) {
    return Fail("ARENA_BYTES is not a positive integer", argv[2]);
  }
  size_t model_size = 0;
  uint8_t* model_data = ReadFile(argv[1], &model_size);
  if (model_data == nullptr) return Fail("cannot read model", argv[1]);
  uint8_t* arena = AllocAligned(arena_size);
  if (arena == nullptr) return Fail("cannot allocate the arena", argv[2]);
  const int status =
      Run(argv, static_cast<size_t>(argc - 4), model_data, model_size, arena, arena_size);
  std::free(arena);
  std::free(model_data);
  return status;
}

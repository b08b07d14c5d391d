// Stock TFLM on the host: runs a model with TFLM's own planner and kernels.
//
//   stock_main MODEL.tflite ARENA_BYTES OUT_DIR IN_0.bin [IN_1.bin ...]
//
// Each IN_K.bin holds the raw bytes of input K (exactly the tensor's size). Writes the raw
// bytes of output K to OUT_DIR/out_K.bin and prints one line "arena_used_bytes=N" on
// stdout. On failure prints TFLM's message (stderr) and exits 1.
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "all_ops.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

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

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s MODEL.tflite ARENA_BYTES OUT_DIR IN_0.bin [IN_1.bin ...]\n",
                 argv[0]);
    return 1;
  }
  size_t model_size = 0;
  uint8_t* model_data = ReadFile(argv[1], &model_size);
  if (model_data == nullptr) return Fail("cannot read model", argv[1]);
  char* end = nullptr;
  const unsigned long long arena_size = std::strtoull(argv[2], &end, 10);
  if (end == argv[2] || *end != '\0' || arena_size == 0) {
    return Fail("ARENA_BYTES is not a positive integer", argv[2]);
  }
  uint8_t* arena = AllocAligned(arena_size);
  if (arena == nullptr) return Fail("cannot allocate the arena", argv[2]);

  const tflite::Model* model = tflite::GetModel(model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    return Fail("unsupported model schema version", std::to_string(model->version()));
  }
  tflite::MicroMutableOpResolver<tflm_vmcu_host::kAllOpsCount> resolver;
  if (tflm_vmcu_host::AddAllOps(resolver) != kTfLiteOk) return Fail("op registration failed");
  tflite::MicroInterpreter interpreter(model, resolver, arena, arena_size);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    return Fail("AllocateTensors failed", "arena of " + std::string(argv[2]) + " bytes");
  }

  const size_t num_inputs = static_cast<size_t>(argc - 4);
  if (num_inputs != interpreter.inputs_size()) {
    return Fail("wrong number of inputs", "model has " + std::to_string(interpreter.inputs_size()) +
                                              ", given " + std::to_string(num_inputs));
  }
  for (size_t i = 0; i < num_inputs; ++i) {
    TfLiteTensor* input = interpreter.input(i);
    size_t size = 0;
    uint8_t* data = ReadFile(argv[4 + i], &size);
    if (data == nullptr) return Fail("cannot read input", argv[4 + i]);
    if (size != input->bytes) {
      return Fail("input size mismatch", std::string(argv[4 + i]) + " has " + std::to_string(size) +
                                             " bytes, input " + std::to_string(i) + " needs " +
                                             std::to_string(input->bytes));
    }
    std::memcpy(input->data.raw, data, size);
    std::free(data);
  }

  if (interpreter.Invoke() != kTfLiteOk) return Fail("Invoke failed");

  for (size_t i = 0; i < interpreter.outputs_size(); ++i) {
    const TfLiteTensor* output = interpreter.output(i);
    const std::string path = std::string(argv[3]) + "/out_" + std::to_string(i) + ".bin";
    if (!WriteFile(path, output->data.raw, output->bytes)) {
      return Fail("cannot write output", path + " (" + std::strerror(errno) + ")");
    }
  }
  std::printf("arena_used_bytes=%zu\n", interpreter.arena_used_bytes());
  std::free(arena);
  std::free(model_data);
  return 0;
}

// Host example: runs a .tflite model with the tflm-vmcu runtime on one input file.
//
//   run_model MODEL.tflite INPUT.bin OUTPUT.bin [MEMORY_BYTES]
//
// INPUT.bin holds the raw bytes of input 0; OUTPUT.bin receives output 0. Prints the
// pool and runtime-state bytes, or the runtime's error message (exit 1).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "tflm_vmcu/interpreter.h"

namespace {

bool ReadFile(const char* path, std::vector<unsigned char>* out) {
  FILE* f = std::fopen(path, "rb");
  if (f == nullptr) return false;
  unsigned char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out->insert(out->end(), buf, buf + n);
  std::fclose(f);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s MODEL INPUT OUTPUT [MEMORY_BYTES]\n", argv[0]);
    return 2;
  }
  std::vector<unsigned char> file, input;
  if (!ReadFile(argv[1], &file) || !ReadFile(argv[2], &input)) {
    std::fprintf(stderr, "cannot read %s or %s\n", argv[1], argv[2]);
    return 2;
  }
  // The model must be 4-byte aligned: copy it into 8-byte words.
  std::vector<unsigned long long> model((file.size() + 7) / 8);
  std::memcpy(model.data(), file.data(), file.size());
  const size_t memory_bytes = argc > 4 ? std::strtoul(argv[4], nullptr, 10) : (4u << 20);
  std::vector<unsigned long long> memory((memory_bytes + 7) / 8);

  tflm_vmcu::Interpreter interp(reinterpret_cast<const uint8_t*>(model.data()), file.size(),
                                reinterpret_cast<uint8_t*>(memory.data()), memory_bytes);
  if (interp.AllocateTensors() != tflm_vmcu::Status::kOk) {
    std::fprintf(stderr, "%s\n", interp.error_message());
    return 1;
  }
  tflm_vmcu::Tensor* in = interp.input(0);
  if (input.size() != in->bytes) {
    std::fprintf(stderr, "input 0 needs %zu bytes, file has %zu\n", in->bytes, input.size());
    return 1;
  }
  std::memcpy(in->data, input.data(), in->bytes);
  if (interp.Invoke() != tflm_vmcu::Status::kOk) {
    std::fprintf(stderr, "%s\n", interp.error_message());
    return 1;
  }
  const tflm_vmcu::Tensor* out = interp.output(0);
  FILE* f = std::fopen(argv[3], "wb");
  if (f == nullptr || std::fwrite(out->data, 1, out->bytes, f) != out->bytes) return 2;
  std::fclose(f);
  std::printf("pool_bytes=%zu state_bytes=%zu\n", interp.pool_bytes(), interp.state_bytes());
  return 0;
}

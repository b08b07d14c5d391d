// libFuzzer target for the plan verifier: compiled models whose 'tflm_vmcu.plan' entry is
// replaced by the fuzz input. A plan that AllocateTensors accepts must be safe: Invoke
// under the hazard checker reports no hazard, every model output still holds its own
// bytes when Invoke returns, the outputs equal those of the model's own plan, and nothing
// outside the memory block is written. Anything else aborts: that is the class of plan the
// verifier must refuse.
//
// FUZZ_PLAN_MODELS names the compiled models (paths separated by ':', or a directory whose
// *.tflite files are taken in name order). Input byte 0 picks the model; the rest is the
// plan, cut or padded (with the model's own plan bytes) to the length of the entry.
#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <string>
#include <vector>

#include "ring.h"
#include "tflm_vmcu/interpreter.h"
#include "tflm_vmcu/model.h"

namespace {

constexpr size_t kMemory = 1 << 20;
constexpr size_t kGuard = 64;
constexpr uint8_t kGuardByte = 0xA5;

struct Target {
  std::string path;
  std::vector<uint64_t> words;  // the model, 8-byte aligned; its plan bytes are rewritten
  size_t size = 0;
  size_t plan_at = 0;  // the plan entry's bytes in the model
  size_t plan_bytes = 0;
  std::vector<uint8_t> plan;                 // the model's own plan
  std::vector<std::vector<uint8_t>> output;  // outputs under its own plan

  uint8_t* bytes() { return reinterpret_cast<uint8_t*>(words.data()); }
};

std::vector<Target> targets;
alignas(16) uint8_t block[kGuard + kMemory + kGuard];
std::vector<int32_t> tags_tensor(kMemory), tags_element(kMemory);
std::vector<uint32_t> pins(kMemory);
tflm_vmcu::HazardState hazard;

[[noreturn]] void Die(const Target& t, const char* what, const char* detail) {
  fprintf(stderr, "fuzz_plan: %s: %s: %s\n", t.path.c_str(), what, detail);
  abort();
}

void EnableHazardCheck(tflm_vmcu::Interpreter& interp) {
  const size_t n = interp.pool_bytes();
  std::fill_n(tags_tensor.begin(), n, -1);
  std::fill_n(tags_element.begin(), n, -1);
  std::fill_n(pins.begin(), n, 0u);
  hazard = tflm_vmcu::HazardState();
  hazard.tensor = tags_tensor.data();
  hazard.element = tags_element.data();
  hazard.pin = pins.data();
  hazard.pool_size = static_cast<uint32_t>(n);
  interp.set_hazard_state(&hazard);
}

// Sets seeded inputs, runs one Invoke under the hazard checker and checks what an
// accepted plan must guarantee. Returns false when Invoke refuses (a status, no harm).
bool RunChecked(Target& t, tflm_vmcu::Interpreter& interp, std::vector<std::vector<uint8_t>>* out) {
  uint32_t seed = 12345;
  for (size_t i = 0; i < interp.inputs_size(); ++i) {
    const tflm_vmcu::Tensor* in = interp.input(i);
    std::vector<uint8_t> data(in->bytes);
    for (uint8_t& b : data) b = static_cast<uint8_t>((seed = seed * 1664525u + 1013904223u) >> 24);
    if (interp.WriteTensor(in->index, data.data(), data.size()) != tflm_vmcu::Status::kOk)
      return false;
  }
  EnableHazardCheck(interp);
  if (interp.Invoke() != tflm_vmcu::Status::kOk) return false;
  if (hazard.count != 0) Die(t, "accepted plan has a hazard", hazard.first);
  const uint32_t pool = static_cast<uint32_t>(interp.pool_bytes());
  for (size_t k = 0; k < interp.outputs_size(); ++k) {
    const tflm_vmcu::Tensor* o = interp.output(k);
    if (o == nullptr || o->data == nullptr || o->is_const) continue;
    for (uint32_t i = 0; i < o->bytes; ++i) {
      const uint32_t pos = static_cast<uint32_t>((uint64_t{o->offset} + i) % pool);
      if (tags_tensor[pos] != o->index || tags_element[pos] != static_cast<int32_t>(i)) {
        char detail[160];
        snprintf(detail, sizeof(detail), "output '%s' byte %u at pool offset %u was overwritten",
                 o->name, i, pos);
        Die(t, "accepted plan overwrites a model output", detail);
      }
    }
    std::vector<uint8_t> bytes(o->bytes);
    if (interp.ReadTensor(o->index, bytes.data(), bytes.size()) != tflm_vmcu::Status::kOk)
      Die(t, "cannot read an output", interp.error_message());
    out->push_back(std::move(bytes));
  }
  return true;
}

bool Load(const std::string& path) {
  FILE* f = fopen(path.c_str(), "rb");
  if (f == nullptr) return false;
  Target t;
  t.path = path;
  std::vector<uint8_t> data;
  uint8_t chunk[1 << 16];
  for (size_t n; (n = fread(chunk, 1, sizeof(chunk), f)) > 0;)
    data.insert(data.end(), chunk, chunk + n);
  fclose(f);
  t.size = data.size();
  t.words.assign(data.size() / 8 + 1, 0);
  memcpy(t.bytes(), data.data(), data.size());
  tflm_vmcu::Model model;
  char error[256];
  if (model.Init(t.bytes(), t.size, error, sizeof(error)) != tflm_vmcu::Status::kOk) {
    fprintf(stderr, "fuzz_plan: %s: %s\n", path.c_str(), error);
    return false;
  }
  const uint8_t* plan = model.metadata(tflm_vmcu::kPlanMetadataName, &t.plan_bytes);
  if (plan == nullptr || t.plan_bytes == 0) {
    fprintf(stderr, "fuzz_plan: %s has no plan (compile it first)\n", path.c_str());
    return false;
  }
  t.plan_at = static_cast<size_t>(plan - t.bytes());
  t.plan.assign(plan, plan + t.plan_bytes);
  memset(block, kGuardByte, sizeof(block));
  tflm_vmcu::Interpreter interp(t.bytes(), t.size, block + kGuard, kMemory);
  if (interp.AllocateTensors() != tflm_vmcu::Status::kOk || !RunChecked(t, interp, &t.output)) {
    fprintf(stderr, "fuzz_plan: %s does not run with its own plan: %s\n", path.c_str(),
            interp.error_message());
    return false;
  }
  targets.push_back(std::move(t));
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* spec = getenv("FUZZ_PLAN_MODELS");
  if (spec == nullptr || *spec == '\0') {
    fprintf(stderr,
            "fuzz_plan: set FUZZ_PLAN_MODELS to compiled models (':'-separated or a dir)\n");
    exit(2);
  }
  std::vector<std::string> paths;
  if (DIR* dir = opendir(spec)) {
    while (const dirent* e = readdir(dir)) {
      const std::string name = e->d_name;
      if (name.size() > 7 && name.compare(name.size() - 7, 7, ".tflite") == 0)
        paths.push_back(std::string(spec) + "/" + name);
    }
    closedir(dir);
    std::sort(paths.begin(), paths.end());
  } else {
    std::string s = spec;
    for (size_t at = 0; at <= s.size();) {
      const size_t end = std::min(s.find(':', at), s.size());
      if (end > at) paths.push_back(s.substr(at, end - at));
      at = end + 1;
    }
  }
  for (const std::string& p : paths) Load(p);
  if (targets.empty()) {
    fprintf(stderr, "fuzz_plan: no usable model in FUZZ_PLAN_MODELS=%s\n", spec);
    exit(2);
  }
  fprintf(stderr, "fuzz_plan: %zu models\n", targets.size());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Target& t = targets[data[0] % targets.size()];
  const size_t n = std::min(size - 1, t.plan_bytes);
  uint8_t* plan = t.bytes() + t.plan_at;
  memcpy(plan, data + 1, n);
  memcpy(plan + n, t.plan.data() + n, t.plan_bytes - n);
  memset(block, kGuardByte, sizeof(block));
  {
    tflm_vmcu::Interpreter interp(t.bytes(), t.size, block + kGuard, kMemory);
    if (interp.AllocateTensors() == tflm_vmcu::Status::kOk) {
      std::vector<std::vector<uint8_t>> out;
      if (RunChecked(t, interp, &out) && out != t.output)
        Die(t, "accepted plan changes an output", "outputs differ from the model's own plan");
    }
  }
  for (size_t i = 0; i < kGuard; ++i) {
    if (block[i] != kGuardByte || block[kGuard + kMemory + i] != kGuardByte)
      Die(t, "write outside the memory block", "guard zone changed");
  }
  return 0;
}

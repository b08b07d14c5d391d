#include "plan_reader.h"

#include "flatbuffer.h"
#include "format.h"
#include "plan_verifier.h"
#include "tflm_vmcu/interpreter.h"

namespace tflm_vmcu {
namespace {
constexpr uint32_t kPlanMagic = 0x50434D56;  // "VMCP"
constexpr size_t kPlanHeaderWords = 6;
}  // namespace

int32_t PlanTables::Offset(uint32_t tensor) const {
  return static_cast<int32_t>(fb::LoadU32(offsets + 4 * static_cast<size_t>(tensor)));
}

uint32_t PlanTables::BlockWord(uint32_t k, uint32_t i) const {
  return fb::LoadU32(blocks + 4 * (kPlanBlockWords * k + i));
}

bool PlanTables::RunsOnTflmKernel(uint32_t op) const {
  return op_starts != nullptr &&
         static_cast<int32_t>(fb::LoadU32(op_starts + 4 * static_cast<size_t>(op))) == -2;
}

const int32_t* PlanTables::OpData(uint32_t op, uint32_t* words) const {
  *words = 0;
  if (op_starts == nullptr) return nullptr;
  const uint32_t start = fb::LoadU32(op_starts + 4 * static_cast<size_t>(op));
  if (start >= op_words) return nullptr;
  *words = op_words - start;
  return reinterpret_cast<const int32_t*>(op_data) + start;
}

bool ReadPlanTables(const Model& model, const uint8_t* plan, size_t plan_bytes, PlanTables* out,
                    char* why, size_t why_size) {
  const uint32_t n = model.num_tensors();
  const uint32_t ops = model.num_operators();
  auto word = [&](size_t i) { return fb::LoadU32(plan + 4 * i); };
  if (plan_bytes < 4 * kPlanHeaderWords || (plan_bytes & 3) != 0 || word(0) != kPlanMagic ||
      word(1) != kPlanVersion) {
    Format(why, why_size, "metadata '%s' is not a version-%u tflm-vmcu plan", kPlanMetadataName,
           kPlanVersion);
    return false;
  }
  const uint32_t digest = PlanDigest(model);
  if (word(4) != digest) {
    Format(why, why_size,
           "the memory plan belongs to another model (its graph, operator options or small "
           "constants differ: plan digest %u, this model %u)",
           word(4), digest);
    return false;
  }
  const size_t words = plan_bytes / 4;
  const size_t ops_at = kPlanHeaderWords + n;
  if (word(5) != n) {
    Format(why, why_size, "the memory plan is for a model with %u tensors, this one has %u",
           word(5), n);
    return false;
  }
  if (words < ops_at + 1 + ops) {
    Format(why, why_size,
           "the memory plan is truncated: %u bytes, its tensor and operator tables need more",
           static_cast<unsigned>(plan_bytes));
    return false;
  }
  if (word(ops_at) != ops) {
    Format(why, why_size, "the memory plan is for a model with %u operators, this one has %u",
           word(ops_at), ops);
    return false;
  }
  const size_t blocks_at = ops_at + 1 + ops;
  const uint32_t blocks = words > blocks_at ? word(blocks_at) : 0;
  if (words <= blocks_at || blocks > ops || words < blocks_at + 1 + kPlanBlockWords * blocks) {
    Format(why, why_size, "the memory plan's fused-block table is truncated");
    return false;
  }
  *out = PlanTables();
  out->pool_bytes = word(2);
  out->offsets = plan + 4 * kPlanHeaderWords;
  out->blocks = plan + 4 * (blocks_at + 1);
  out->num_blocks = blocks;
  const size_t data_at = blocks_at + 1 + kPlanBlockWords * blocks;
  // Op data is handed to kernels as int32 arrays in place: it must be aligned.
  if ((reinterpret_cast<uintptr_t>(plan) & 3) == 0) {
    out->op_starts = plan + 4 * (ops_at + 1);
    out->op_data = plan + 4 * data_at;
    out->op_words = static_cast<uint32_t>(words - data_at);
  }
  return true;
}

}  // namespace tflm_vmcu

// The memory plan a model carries (metadata "tflm_vmcu.plan", written by
// tflm_vmcu/plan_format.py), read in place: little-endian u32 words
//   [magic 'VMCP', version 4, pool bytes, segment bytes, plan digest, tensor count,
//    offset per tensor (-1: not in the pool),
//    op count, start word of each op's data (-1: none; -2: the op runs on TFLM's own
//    kernel, in plans for the TFLM plug-in),
//    fused block count, per block (first op, last op, mode, workspace offset, workspace
//    bytes; mode 0: rows, 1: window),
//    data words]
// Shared by the interpreter and the TFLM plug-in, which place tensors from it.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "tflm_vmcu/model.h"

namespace tflm_vmcu {

constexpr uint32_t kPlanVersion = 4;
constexpr size_t kPlanBlockWords = 5;

struct PlanTables {
  uint32_t pool_bytes = 0;
  const uint8_t* offsets = nullptr;  // int32 per tensor
  const uint8_t* blocks = nullptr;   // kPlanBlockWords words per fused block
  uint32_t num_blocks = 0;
  const uint8_t* op_starts = nullptr;  // per op: start word in op_data; nullptr: no op data
  const uint8_t* op_data = nullptr;    // int32 words (the plan is 4-byte aligned)
  uint32_t op_words = 0;

  int32_t Offset(uint32_t tensor) const;
  // Word `i` (< kPlanBlockWords) of fused block `k`'s record.
  uint32_t BlockWord(uint32_t k, uint32_t i) const;
  // True when the plan leaves operator `op` to TFLM's kernel (plans for the TFLM plug-in).
  bool RunsOnTflmKernel(uint32_t op) const;
  // Op `op`'s precomputed words and an upper bound of their count; nullptr if none.
  const int32_t* OpData(uint32_t op, uint32_t* words) const;
};

// Checks the plan's header and table sizes against `model` (its digest included) and
// fills `out`; on failure writes one line to `why` and returns false.
bool ReadPlanTables(const Model& model, const uint8_t* plan, size_t plan_bytes, PlanTables* out,
                    char* why, size_t why_size);

}  // namespace tflm_vmcu

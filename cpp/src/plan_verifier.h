// What ties a memory plan to its model, and what proves it safe (plan_verifier.cc).
#pragma once

#include <stdint.h>

#include "access_order.h"
#include "tflm_vmcu/model.h"

namespace tflm_vmcu {

// The digest a plan records: FNV-1a over the graph's structure (Model::Digest), every
// operator's decoded builtin options, and the data of small integer constants (PAD's
// paddings, TRANSPOSE's permutation, MEAN's axes), i.e. everything the access orders depend
// on. A plan is refused for a model whose digest differs.
uint32_t PlanDigest(const Model& model);

// The plan verifier's rule, shared by the interpreter (Interpreter::VerifyPlan) and the TFLM
// plug-in: tensors live at the same step share no pool byte, except that a step's output
// may overlap an input that dies at that step, starting at least the kernel's minimal
// displacement behind it (for every position the input is read at), without the input
// wrapping onto the output's start.

// Byte ranges [a, a + an) and [b, b + bn) of a ring of `pool` bytes share no byte.
bool RingDisjoint(uint32_t a, size_t an, uint32_t b, size_t bn, uint32_t pool);

// How far `out` starts behind `in` in the ring.
uint32_t Displacement(const Tensor& in, const Tensor& out, uint32_t pool);

// The displacement `op`'s kernel needs between its output and input `in` (every position
// that names it), -1 if the output may not overlap it. `d`: the plan's displacement (a
// RESHAPE may alias its input exactly).
int64_t NeededDisplacement(const AccessOp& op, const Tensor* in, uint32_t d);

// True if the overlapping output may start `d` bytes behind `in` given the kernel's `need`.
bool OverlapAllowed(const Tensor& in, uint32_t d, int64_t need, uint32_t pool);

}  // namespace tflm_vmcu

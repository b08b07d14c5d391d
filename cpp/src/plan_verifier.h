// What ties a memory plan to its model, and what proves it safe (plan_verifier.cc).
#pragma once

#include <stdint.h>

#include "tflm_vmcu/model.h"

namespace tflm_vmcu {

// The digest a plan records: FNV-1a over the graph's structure (Model::Digest), every
// operator's decoded builtin options, and the data of small integer constants (PAD's
// paddings, TRANSPOSE's permutation, MEAN's axes), i.e. everything the access orders depend
// on. A plan is refused for a model whose digest differs.
uint32_t PlanDigest(const Model& model);

}  // namespace tflm_vmcu

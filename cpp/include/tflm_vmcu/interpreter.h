// The tflm-vmcu interpreter: runs an int8 .tflite model inside one memory block
// given by the caller, in the spirit of TFLM's MicroInterpreter.
//
//   memory block (caller-owned)
//   +---------------------------+----------------+--------------------------+
//   | activation pool  ->       |    (unused)    |   <- runtime state       |
//   | tensor data, planned      |                | tensor structs, op data, |
//   | offsets (head)            |                | multipliers (tail)       |
//   +---------------------------+----------------+--------------------------+
//
// Usage:
//   alignas(16) static uint8_t memory[64 * 1024];
//   tflm_vmcu::Interpreter interp(model_bytes, model_size, memory, sizeof(memory));
//   if (interp.AllocateTensors() != tflm_vmcu::Status::kOk) puts(interp.error_message());
//   memcpy(interp.input(0)->data, image, interp.input(0)->bytes);
//   interp.Invoke();
//   const int8_t* scores = interp.output(0)->Data<int8_t>();
//
// No exceptions, no heap, no OS calls: every failure is a Status plus a message.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "tflm_vmcu/model.h"
#include "tflm_vmcu/status.h"
#include "tflm_vmcu/tensor.h"

namespace tflm_vmcu {

struct Bottleneck;
struct StateRequest;
struct Kernel;
struct Node;
struct HazardState;

// Name of the model metadata entry that carries a tflm-vmcu memory plan.
constexpr const char* kPlanMetadataName = "tflm_vmcu.plan";

// True when the runtime has a kernel for this tflite builtin operator code.
bool IsOpSupported(int32_t builtin_code);

class Interpreter {
 public:
  // `model` must stay valid (and unchanged) for the interpreter's lifetime. It must
  // be 4-byte aligned (16 recommended) so that constant data can be read in place.
  Interpreter(const uint8_t* model, size_t model_size, uint8_t* memory, size_t memory_size);

  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  // Validates the model, prepares every kernel and places every activation tensor.
  Status AllocateTensors();
  // Every check AllocateTensors makes except the size of the activation pool: the model,
  // its operators and quantisation, the plan's header, every kernel's Prepare. For tools
  // that vet a model before planning it; the interpreter cannot be allocated afterwards.
  Status CheckModel();
  Status Invoke();

  size_t inputs_size() const { return model_.num_inputs(); }
  size_t outputs_size() const { return model_.num_outputs(); }
  // nullptr before a successful AllocateTensors() or for an out-of-range index.
  Tensor* input(size_t i);
  Tensor* output(size_t i);

  size_t tensors_size() const { return model_.num_tensors(); }
  const Tensor* tensor(size_t i) const;
  // Copy all `bytes` bytes of tensor i out of / into the memory block. Unlike
  // Tensor::data, these follow the ring, so they work for intermediates the plan wraps
  // around the pool end. kInvalidArgument (with a message) for a size mismatch, a tensor
  // without bytes (one inside a fused block), or a write to a constant.
  Status ReadTensor(size_t i, void* dst, size_t bytes);
  Status WriteTensor(size_t i, const void* src, size_t bytes);
  size_t operators_size() const { return model_.num_operators(); }
  int32_t op_code(size_t i) const;  // tflite builtin code, -1 for custom

  // Bytes of the activation pool (head) and of the runtime state (tail).
  size_t pool_bytes() const { return pool_bytes_; }
  size_t state_bytes() const { return state_bytes_; }
  // The runtime state the same model needs on a 32-bit Arm core (Cortex-M), whatever this
  // build's pointer size: a 64-bit host sizes a device's memory block with it. On such a
  // core it equals state_bytes() when the block ends on a 16-byte boundary.
  size_t arm32_state_bytes() const { return arm32_state_bytes_; }
  // True when the model carries a memory plan (ring placement); false when the
  // runtime placed tensors itself (tensor-level first fit, no overlaps).
  bool has_plan() const { return has_plan_; }
  // Inverted-bottleneck blocks the plan runs fused (each as one kernel).
  size_t fused_blocks() const { return has_plan_ ? plan_num_blocks_ : 0; }
  uint8_t* pool() { return pool_; }

  // Host builds: run every kernel under the hazard checker (see ring.h). `state`
  // must have tag arrays of pool_bytes() entries and outlive the interpreter's use.
  void set_hazard_state(HazardState* state) { hazard_ = state; }

  // Every plan is proven safe at AllocateTensors (see cpp/src/plan_verifier.cc) unless this
  // is called with false first: for tests of the hazard checker, which must see unsafe plans
  // run. An unverified plan stays inside the pool but can give wrong outputs. Device builds
  // can leave the verifier out (CMake option TFLM_VMCU_VERIFY_PLAN=OFF) for plans verified
  // on the host.
  void set_verify_plan(bool verify);

  Status status() const { return status_; }
  const char* error_message() const { return error_; }

 private:
  class Context;
  friend class Context;

  Status Fail(Status status, const char* format, ...);
  void* AllocateTail(const StateRequest& request);
  Status TensorCopyCheck(size_t i, size_t bytes, bool write);
  Status VerifyPlan();
  Status CheckAndPrepare(const uint8_t** plan, size_t* plan_bytes);
  Status InitTensors();
  Status CheckGraph();  // graph_checks.cc: execution order, inputs, outputs
  Status PrepareNodes();
  Status PlanActivations();
  Status ReadPlanOpData(const uint8_t* plan, size_t plan_bytes);
  Status ApplyPlan();  // after ReadPlanOpData
  Status ApplyBlocks(uint32_t pool);
  bool InsideBlock(const Tensor& t) const;
  const int32_t* PlannedOpData(int op_index, uint32_t* words) const;

  Model model_;
  const uint8_t* model_bytes_;
  size_t model_size_;
  uint8_t* memory_;
  size_t memory_size_;
  size_t tail_ = 0;  // offset of the lowest byte in use by the tail
  uint8_t* pool_ = nullptr;
  size_t pool_bytes_ = 0;
  bool has_plan_ = false;
  HazardState* hazard_ = nullptr;
  uint32_t plan_pool_ = 0;                   // the plan's pool bytes
  const uint8_t* plan_offsets_ = nullptr;    // in the model: int32 offset per tensor
  const uint8_t* plan_op_starts_ = nullptr;  // in the model: per-op start words
  const uint8_t* plan_op_data_ = nullptr;    // in the model: int32 op data
  uint32_t plan_op_words_ = 0;
  const uint8_t* plan_blocks_ = nullptr;  // in the model: fused block table
  uint32_t plan_num_blocks_ = 0;
  Bottleneck* blocks_ = nullptr;  // the plan's fused blocks, validated (runtime state)
  size_t state_bytes_ = 0;
  size_t arm32_state_bytes_ = 0;
  Tensor* tensors_ = nullptr;
  Node* nodes_ = nullptr;
  bool allocated_ = false;
  bool checked_ = false;
  bool verify_plan_ = true;
  Status status_ = Status::kOk;
  char error_[256] = {};
};

}  // namespace tflm_vmcu

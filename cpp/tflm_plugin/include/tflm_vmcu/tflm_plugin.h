// tflm-vmcu inside TensorFlow Lite Micro: the compiler's memory plan and this runtime's ring
// kernels as a plug-in for an existing TFLM application. Every op TFLM has keeps working.
//
//   #include "tflm_vmcu/tflm_plugin.h"
//   static tflm_vmcu::TflmPlugin plugin(g_model, g_model_len);             // 1
//   plugin.AddKernels(resolver);  // before the app's own Add* calls        // 2
//   tflite::MicroAllocator* allocator =
//       tflite::MicroAllocator::Create(arena, kArenaSize, plugin.planner()); // 3
//   tflite::MicroInterpreter interpreter(model, resolver, allocator);      // 4
//   interpreter.SetMicroExternalContext(&plugin);                          // 5
//
// The model must be compiled for the plug-in (`tflm-vmcu compile --target tflm-plugin`): its
// plan places every buffer TFLM allocates, wraps tensors around the ring only where the
// plug-in's kernels alone touch them, and keeps them flat where a TFLM kernel does. The
// planner reports the plan's true extent, so TFLM refuses an arena that is too small, and it
// places scratch buffers that TFLM kernels request without overlapping anything live.
//
// Build against the same TFLM tree, with the same defines (TF_LITE_STATIC_MEMORY ...), as
// the application. The plug-in and the plug-in's objects must outlive the interpreter.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "tensorflow/lite/micro/memory_planner/micro_memory_planner.h"
#include "tensorflow/lite/micro/micro_common.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tflm_vmcu/model.h"
#include "tflm_vmcu/status.h"

namespace tflm_vmcu {

struct PlanTables;
struct HazardState;

// The MicroMemoryPlanner that places TFLM's buffers where the model's plan says.
class PlanPlanner : public tflite::MicroMemoryPlanner {
 public:
  explicit PlanPlanner(const class TflmPlugin* plugin) : plugin_(plugin) {}

  TfLiteStatus Init(unsigned char* scratch, int scratch_bytes) override;
  TfLiteStatus AddBuffer(int size, int first_time_used, int last_time_used) override;
  TfLiteStatus AddBuffer(int size, int first_time_used, int last_time_used,
                         int offline_offset) override;
  size_t GetMaximumMemorySize() override;
  int GetBufferCount() override { return count_; }
  TfLiteStatus GetOffsetForBuffer(int buffer_index, int* offset) override;
  bool preserves_all_tensors() const override { return false; }

 private:
  struct Buffer {
    int32_t size, first, last, offset;
    int32_t tensor;  // model tensor, -1 for a scratch buffer
    // A tensor inside a fused block: no operator touches it, so it gets no bytes (size 0;
    // TFLM plans no empty tensors). The struct stays small: TFLM's temporary memory holds
    // one per buffer while it plans.
    bool unused() const { return tensor >= 0 && size == 0; }
  };
  TfLiteStatus Place();
  TfLiteStatus Verify() const;

  const TflmPlugin* plugin_;
  Buffer* buffers_ = nullptr;  // in the scratch memory TFLM lends while it plans
  int capacity_ = 0;
  int count_ = 0;
  int32_t next_tensor_ = 0;  // the model tensor the next buffer must be
  bool placed_ = false;
  bool failed_ = false;
  size_t extent_ = 0;
};

class TflmPlugin {
 public:
  // `model` must stay valid (in flash) and be 4-byte aligned.
  TflmPlugin(const uint8_t* model, size_t model_size);

  // kOk when the model reads and carries a plan for the plug-in; else error_message() says why.
  Status status() const { return status_; }
  const char* error_message() const { return error_; }

  tflite::MicroMemoryPlanner* planner() { return &planner_; }

  // Registers the ring kernels for every op this runtime runs, in place of TFLM's own. Call it
  // before the application adds its other ops (an op can be added once).
  template <unsigned int N>
  TfLiteStatus AddKernels(tflite::MicroMutableOpResolver<N>& r) {
    TfLiteStatus s = kTfLiteOk;
    auto add = [&s](TfLiteStatus t) {
      if (t != kTfLiteOk) s = t;
    };
    add(r.AddAdd(Registration()));
    add(r.AddAveragePool2D(Registration()));
    add(r.AddConcatenation(Registration()));
    add(r.AddConv2D(Registration()));
    add(r.AddDepthwiseConv2D(Registration()));
    add(r.AddDequantize(Registration()));
    add(r.AddFullyConnected(Registration()));
    add(r.AddLogistic(Registration()));
    add(r.AddMaxPool2D(Registration()));
    add(r.AddMul(Registration()));
    add(r.AddRelu(Registration()));
    add(r.AddRelu6(Registration()));
    add(r.AddReshape(Registration()));
    add(r.AddSoftmax(Registration()));
    add(r.AddPad(Registration()));
    add(r.AddTranspose(Registration()));
    add(r.AddMean(Registration()));
    add(r.AddQuantize(Registration()));
    add(r.AddHardSwish(Registration()));
    const TFLMRegistration block = BlockRegistration();  // AddCustom copies it
    add(r.AddCustom(kBlockOpName, &block));
    return s;
  }

  // The TFLM registration of the ring kernels (one for every op: each node finds its kernel
  // from the model's operator).
  static TFLMRegistration Registration();

  // The custom operator a fused inverted-bottleneck block becomes in a model compiled for the
  // plug-in, and its registration (the runtime's fused kernel).
  static constexpr const char* kBlockOpName = kFusedBlockCustomCode;
  static TFLMRegistration BlockRegistration();

  // Host builds, for `tflm-vmcu validate --runtime tflm-plugin --check-hazards`: later Invokes
  // run under the hazard checker (cpp/src/ring.h), whose shadow state spans the ring
  // (pool_bytes()). Ring kernels and fused blocks report every read and write. The
  // application brackets Invoke() with BeginInvoke/EndInvoke (model inputs tagged, outputs
  // read after the last operator) and reports each operator from a MicroProfiler, so that
  // one on a TFLM kernel counts as reading all its inputs, then writing all its outputs.
  void set_hazard_state(HazardState* state) { hazard_ = state; }
  HazardState* hazard_state() const { return hazard_; }
  void BeginInvoke();
  void BeginOperator(int32_t op);
  void EndOperator(int32_t op);
  void EndInvoke();
  // Tests of the hazard checker only: skip the plan verifier, which refuses unsafe plans.
  void set_verify_plan(bool verify) { verify_plan_ = verify; }
  bool verify_plan() const { return verify_plan_; }

  // For the plug-in's planner and kernels.
  const Model& model() const { return model_; }
  const PlanTables& plan() const;
  uint32_t pool_bytes() const;
  int32_t OperatorWriting(int32_t tensor) const;  // the op whose output 0 it is, -1: none

 private:
  Model model_;
  alignas(8) unsigned char plan_[64];  // PlanTables, kept opaque to TFLM applications
  PlanPlanner planner_;
  Status status_ = Status::kOk;
  HazardState* hazard_ = nullptr;
  bool verify_plan_ = true;
  char error_[192] = {};
};

}  // namespace tflm_vmcu

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

// Whether operators that the plan leaves to TFLM's kernels can run beside the ring kernels
// of the same builtin (TflmPlugin::AddKernels).
enum class Fallback { kNone, kTflmKernels };

class TflmPlugin {
 public:
  // `model` must stay valid (in flash) and be 4-byte aligned.
  TflmPlugin(const uint8_t* model, size_t model_size);

  // kOk when the model reads and carries a plan for the plug-in; else error_message() says why.
  Status status() const { return status_; }
  const char* error_message() const { return error_; }

  tflite::MicroMemoryPlanner* planner() { return &planner_; }

  // Registers the ring kernels for every op this runtime runs, in place of TFLM's own, and the
  // custom operator of fused blocks. Call it before the application adds its other ops (an op
  // can be added once). With Fallback::kTflmKernels, an operator that the model's plan leaves
  // to TFLM although its builtin has a ring kernel (an int16 QUANTIZE, say) runs on TFLM's
  // kernel; this links TFLM's kernels for those builtins, so it is opt-in.
  template <Fallback F = Fallback::kNone, unsigned int N>
  TfLiteStatus AddKernels(tflite::MicroMutableOpResolver<N>& r) {
    TfLiteStatus s = kTfLiteOk;
    auto add = [&s](TfLiteStatus t) {
      if (t != kTfLiteOk) s = t;
    };
    add(r.AddAdd(Kernel<F, tflite::Register_ADD>()));
    add(r.AddAveragePool2D(Kernel<F, tflite::Register_AVERAGE_POOL_2D>()));
    add(r.AddConcatenation(Kernel<F, tflite::Register_CONCATENATION>()));
    add(r.AddConv2D(Kernel<F, tflite::Register_CONV_2D>()));
    add(r.AddDepthwiseConv2D(Kernel<F, tflite::Register_DEPTHWISE_CONV_2D>()));
    add(r.AddDequantize(Kernel<F, tflite::Register_DEQUANTIZE>()));
    add(r.AddFullyConnected(Kernel<F, tflite::Register_FULLY_CONNECTED>()));
    add(r.AddLogistic(Kernel<F, tflite::Register_LOGISTIC>()));
    add(r.AddMaxPool2D(Kernel<F, tflite::Register_MAX_POOL_2D>()));
    add(r.AddMul(Kernel<F, tflite::Register_MUL>()));
    add(r.AddRelu(Kernel<F, tflite::Register_RELU>()));
    add(r.AddRelu6(Kernel<F, tflite::Register_RELU6>()));
    add(r.AddReshape(Kernel<F, tflite::Register_RESHAPE>()));
    add(r.AddSoftmax(Kernel<F, tflite::Register_SOFTMAX>()));
    add(r.AddPad(Kernel<F, tflite::Register_PAD>()));
    add(r.AddTranspose(Kernel<F, tflite::Register_TRANSPOSE>()));
    add(r.AddMean(Kernel<F, tflite::Register_MEAN>()));
    add(r.AddQuantize(Kernel<F, tflite::Register_QUANTIZE>()));
    add(r.AddHardSwish(Kernel<F, tflite::Register_HARD_SWISH>()));
    const TFLMRegistration block = BlockRegistration();  // AddCustom copies it
    add(r.AddCustom(kBlockOpName, &block));
    return s;
  }
  // Registrations AddKernels adds (size the resolver for them and the application's own).
  static constexpr unsigned int kKernelCount = 20;

  // The registration of the ring kernel of builtin op `TflmKernel` (TFLM's registration
  // function for it, e.g. tflite::Register_CONV_2D), with or without TFLM's as fallback.
  template <Fallback F, TFLMRegistration (*TflmKernel)()>
  static TFLMRegistration Kernel() {
    TFLMRegistration r = Registration();
    if constexpr (F == Fallback::kTflmKernels) r.init = InitWithFallback<TflmKernel>;
    return r;
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

  // Node state of the ring kernels' registration; `tflm_kernel` (nullptr: none) is TFLM's
  // registration function for the builtin, run for the operators the plan leaves to TFLM.
  static void* InitNode(TfLiteContext* context, const char* buffer, size_t length,
                        TFLMRegistration (*tflm_kernel)());
  template <TFLMRegistration (*TflmKernel)()>
  static void* InitWithFallback(TfLiteContext* context, const char* buffer, size_t length) {
    return InitNode(context, buffer, length, TflmKernel);
  }

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

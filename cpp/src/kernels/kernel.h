// The contract between the interpreter and one operator kernel.
//
// Like TFLM: Prepare validates every shape, type and parameter and stores what Eval
// needs (multipliers, shifts, activation ranges) in persistent op data; Eval trusts
// Prepare and only computes. Kernels never print and never allocate on their own.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "arm32_layout.h"
#include "ring.h"
#include "tflm_vmcu/status.h"
#include "tflm_vmcu/tensor.h"

namespace tflm_vmcu {

enum class Padding : uint8_t { kSame = 0, kValid = 1 };

// Values match tflite's ActivationFunctionType.
enum class Activation : uint8_t {
  kNone = 0,
  kRelu = 1,
  kReluN1To1 = 2,
  kRelu6 = 3,
  kTanh = 4,
  kSignBit = 5,
};

// The builtin options of one operator, decoded from the model (defaults as in the
// tflite schema). Only the fields of the op's own options table are meaningful.
struct OpOptions {
  Padding padding = Padding::kSame;
  int32_t stride_w = 0;
  int32_t stride_h = 0;
  int32_t dilation_w = 1;
  int32_t dilation_h = 1;
  int32_t depth_multiplier = 0;
  int32_t filter_w = 0;
  int32_t filter_h = 0;
  Activation activation = Activation::kNone;
  int32_t axis = 0;            // CONCATENATION
  float beta = 0.0f;           // SOFTMAX
  bool keep_dims = false;      // MEAN (ReducerOptions)
  bool keep_num_dims = false;  // FULLY_CONNECTED
  uint8_t weights_format = 0;  // FULLY_CONNECTED: 0 = DEFAULT
};

class OpContext {
 public:
  const OpOptions& options() const { return *options_; }
  int num_inputs() const { return num_inputs_; }
  int num_outputs() const { return num_outputs_; }
  // nullptr for an omitted optional input (tensor index -1 in the model).
  Tensor* input(int i) const { return inputs_[i]; }
  Tensor* output(int i) const { return outputs_[i]; }
  const char* op_name() const { return op_name_; }
  int op_index() const { return op_index_; }

  // Ring view of a tensor's bytes (see ring.h for the read-then-write contract).
  // Constants are plain views of the model data.
  RingBytes bytes(const Tensor* t) const {
    if (t->is_const) return RingBytes(t, t->data, static_cast<uint32_t>(t->bytes), 0, nullptr);
    return RingBytes(t, pool_, pool_size_, t->offset, hazard_);
  }

  // Persistent op data set in Prepare, read in Eval.
  void* op_data() const { return op_data_; }
  void set_op_data(void* data) { op_data_ = data; }

  // Parameters the compiler precomputed for this op and stored in the model's plan
  // (flash), e.g. per-channel multipliers; nullptr when there are none. `words` is an
  // upper bound of the int32 words available. Only valid during Prepare; callers must
  // check the data against their own computation before trusting it.
  virtual const int32_t* PlannedData(uint32_t* words) const = 0;

  // Persistent memory from the tail of the caller's block (counted as runtime state, on
  // this build and on a 32-bit Arm core). Returns nullptr (and records kOutOfMemory) when
  // the block is too small. Only valid during Prepare. Kernels call it through
  // AllocateState<T> (kernel_util.h), which fills in the request from T.
  virtual void* AllocatePersistent(const StateRequest& request) = 0;

  // Records an error naming this op; the format supports %d %u %s %f (no width).
  // Returns `status` so a kernel can write `return ctx.Fail(...)`.
  Status Fail(Status status, const char* format, ...);

  // How a front end delivers "operator N (NAME): detail": the interpreter keeps it as its
  // error message, the TFLM plug-in prints it.
  virtual Status Report(Status status, const char* message) = 0;

 protected:
  ~OpContext() = default;  // not virtual: no deleting destructor, no heap

  const OpOptions* options_ = nullptr;
  Tensor* const* inputs_ = nullptr;
  Tensor* const* outputs_ = nullptr;
  int num_inputs_ = 0;
  int num_outputs_ = 0;
  const char* op_name_ = "";
  int op_index_ = -1;
  void* op_data_ = nullptr;
  uint8_t* pool_ = nullptr;
  uint32_t pool_size_ = 0;
  HazardState* hazard_ = nullptr;
};

// Unit sizes of the kernels, shared with their access-order models (cpp/src/access_order.cc):
// channels per unit of DEPTHWISE_CONV_2D (multiplier 1) and pooling; elements per unit of
// the element-wise ops, SOFTMAX and MEAN; bytes per unit of RESHAPE and CONCATENATION.
constexpr int32_t kWindowChannelBlock = 64;
constexpr uint32_t kUnitChunk = 64;
constexpr uint32_t kReshapeChunk = kUnitChunk;
constexpr uint32_t kPadScratch = 256;  // PAD rows up to this size are staged whole
constexpr uint32_t kConcatChunk = kUnitChunk;
constexpr uint32_t kTransposeScratch = 256;  // TRANSPOSE rows up to this size are staged

struct Kernel {
  Status (*prepare)(OpContext& ctx);
  Status (*eval)(OpContext& ctx);
};

// Kernels of the runtime, one per builtin op (defined in the op's .cc file).
extern const Kernel kAdd;
extern const Kernel kAveragePool2D;
extern const Kernel kConcatenation;
extern const Kernel kConv2D;
extern const Kernel kDepthwiseConv2D;
extern const Kernel kDequantize;
extern const Kernel kFullyConnected;
extern const Kernel kHardSwish;
extern const Kernel kLogistic;
extern const Kernel kMaxPool2D;
extern const Kernel kMean;
extern const Kernel kMul;
extern const Kernel kPad;
extern const Kernel kQuantize;
extern const Kernel kRelu;
extern const Kernel kRelu6;
extern const Kernel kReshape;
extern const Kernel kSoftmax;
extern const Kernel kTranspose;

}  // namespace tflm_vmcu

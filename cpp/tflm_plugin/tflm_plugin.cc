// The TFLM plug-in (tflm_vmcu/tflm_plugin.h): a planner that places TFLM's buffers from the
// model's plan, and a front end that runs this runtime's kernels (the same objects the
// interpreter runs) as TFLM registrations.
#include "tflm_vmcu/tflm_plugin.h"

#include <new>

#include "format.h"
#include "kernels/kernel.h"
#include "model_tensor.h"
#include "op_names.h"
#include "op_options.h"
#include "plan_reader.h"
#include "registry.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tflm_vmcu/interpreter.h"

namespace tflm_vmcu {
namespace {

constexpr int32_t kAlignment = 16;  // MicroArenaBufferAlignment()
constexpr int kMaxOperands = 16;    // inputs + outputs of one op run by the plug-in

int32_t AlignUp(int64_t v) {
  return static_cast<int32_t>((v + kAlignment - 1) / kAlignment * kAlignment);
}

// Bytes TFLM allocates for tensor `info`: none for constants, variables and empty tensors.
int64_t AllocatedBytes(const TensorInfo& info) {
  if (info.data != nullptr || info.is_variable) return 0;
  return info.shape.FlatSize() * static_cast<int64_t>(DTypeSize(info.type));
}

}  // namespace

// ---- the plug-in ---------------------------------------------------------------------------

static_assert(sizeof(PlanTables) <= 64, "TflmPlugin::plan_ holds a PlanTables");

TflmPlugin::TflmPlugin(const uint8_t* model, size_t model_size) : planner_(this) {
  new (plan_) PlanTables();
  status_ = model_.Init(model, model_size, error_, sizeof(error_));
  if (status_ != Status::kOk) return;
  size_t bytes = 0;
  const uint8_t* plan = model_.metadata(kPlanMetadataName, &bytes);
  if (plan == nullptr) {
    status_ = Status::kInvalidModel;
    Format(error_, sizeof(error_),
           "the model carries no tflm-vmcu plan: compile it with `tflm-vmcu compile --target "
           "tflm-plugin`");
    return;
  }
  PlanTables* tables = reinterpret_cast<PlanTables*>(plan_);
  if (!ReadPlanTables(model_, plan, bytes, tables, error_, sizeof(error_))) {
    status_ = Status::kInvalidModel;
  } else if (tables->num_blocks > 0) {  // a plan for the tflm-vmcu runtime, not for TFLM
    status_ = Status::kInvalidModel;
    Format(error_, sizeof(error_),
           "the plan fuses %u inverted-bottleneck blocks, which run in the tflm-vmcu runtime "
           "only: compile the model with `tflm-vmcu compile --target tflm-plugin`",
           tables->num_blocks);
  }
}

const PlanTables& TflmPlugin::plan() const { return *reinterpret_cast<const PlanTables*>(plan_); }

uint32_t TflmPlugin::pool_bytes() const { return plan().pool_bytes; }

int32_t TflmPlugin::OperatorWriting(int32_t tensor) const {
  for (uint32_t i = 0; i < model_.num_operators(); ++i) {
    const OperatorInfo op = model_.op(i);
    if (op.num_outputs > 0 && op.Output(0) == tensor) return static_cast<int32_t>(i);
  }
  return -1;
}

// ---- the planner ---------------------------------------------------------------------------

TfLiteStatus PlanPlanner::Init(unsigned char* scratch, int scratch_bytes) {
  const uintptr_t at = (reinterpret_cast<uintptr_t>(scratch) + alignof(Buffer) - 1) &
                       ~static_cast<uintptr_t>(alignof(Buffer) - 1);
  const int64_t room =
      scratch_bytes - static_cast<int64_t>(at - reinterpret_cast<uintptr_t>(scratch));
  buffers_ = reinterpret_cast<Buffer*>(at);
  capacity_ = room > 0 ? static_cast<int>(room / static_cast<int64_t>(sizeof(Buffer))) : 0;
  count_ = 0;
  next_tensor_ = 0;
  placed_ = false;
  failed_ = false;
  extent_ = 0;
  return kTfLiteOk;
}

TfLiteStatus PlanPlanner::AddBuffer(int size, int first_time_used, int last_time_used) {
  if (plugin_->status() != Status::kOk) {
    MicroPrintf("tflm-vmcu: %s", plugin_->error_message());
    return kTfLiteError;
  }
  if (count_ >= capacity_) {
    MicroPrintf("tflm-vmcu: the arena leaves no room to plan buffer %d", count_);
    return kTfLiteError;
  }
  // TFLM adds a buffer for each tensor without data in index order, then scratch buffers.
  const Model& m = plugin_->model();
  int32_t tensor = -1;
  while (next_tensor_ < static_cast<int32_t>(m.num_tensors())) {
    const int32_t t = next_tensor_++;
    if (AllocatedBytes(m.tensor(static_cast<uint32_t>(t))) > 0) {
      tensor = t;
      break;
    }
  }
  Buffer& b = buffers_[count_++];
  b = Buffer{size, first_time_used, last_time_used, -1, tensor};
  if (tensor >= 0) {
    const TensorInfo info = m.tensor(static_cast<uint32_t>(tensor));
    if (size != AlignUp(AllocatedBytes(info))) {
      MicroPrintf(
          "tflm-vmcu: the memory plan does not match the model: buffer %d has %d bytes, "
          "tensor %d ('%s') needs %d",
          count_ - 1, size, static_cast<int>(tensor), info.name,
          static_cast<int>(AlignUp(AllocatedBytes(info))));
      failed_ = true;
      return kTfLiteError;
    }
    b.offset = plugin_->plan().Offset(static_cast<uint32_t>(tensor));
  }
  return kTfLiteOk;
}

TfLiteStatus PlanPlanner::AddBuffer(int, int, int, int) {
  MicroPrintf(
      "tflm-vmcu: the model also carries an offline plan (OfflineMemoryAllocation): the "
      "tflm-vmcu plan places every buffer, remove the other one");
  failed_ = true;
  return kTfLiteError;
}

// Tensors go where the plan puts them (wrapping around the ring of plan().pool_bytes where
// the compiler allowed it); scratch buffers and anything the plan leaves out go first fit
// after every buffer live at the same time, without wrapping.
TfLiteStatus PlanPlanner::Place() {
  if (failed_) return kTfLiteError;
  const uint32_t ring = plugin_->pool_bytes();
  extent_ = ring;
  auto ranges = [&](const Buffer& b, int64_t r[4]) {  // [r0, r1) and [r2, r3)
    const int64_t bytes =
        b.tensor >= 0 ? AllocatedBytes(plugin_->model().tensor(static_cast<uint32_t>(b.tensor)))
                      : b.size;
    r[0] = b.offset;
    r[1] = b.offset + b.size;
    r[2] = r[3] = 0;
    if (b.tensor >= 0 && b.offset + bytes > ring) {  // wraps: the tail lies at the ring start
      r[1] = ring;
      r[3] = b.offset + bytes - ring;
    }
  };
  auto live_together = [](const Buffer& a, const Buffer& b) {
    if (a.first < 0 || b.first < 0) return true;  // no lifetime: assume always live
    return !(a.last < b.first || b.last < a.first);
  };
  for (int i = 0; i < count_; ++i) {
    Buffer& b = buffers_[i];
    if (b.offset < 0) continue;
    if (static_cast<uint32_t>(b.offset) >= (ring == 0 ? 1 : ring)) {
      MicroPrintf("tflm-vmcu: the memory plan puts tensor %d at offset %d of a %u-byte ring",
                  static_cast<int>(b.tensor), static_cast<int>(b.offset),
                  static_cast<unsigned>(ring));
      return kTfLiteError;
    }
    int64_t r[4];
    ranges(b, r);
    if (static_cast<size_t>(r[1]) > extent_) extent_ = static_cast<size_t>(r[1]);
  }
  for (int i = 0; i < count_; ++i) {
    Buffer& b = buffers_[i];
    if (b.offset >= 0) continue;
    int64_t at = 0;
    for (bool moved = true; moved;) {
      moved = false;
      for (int j = 0; j < count_; ++j) {
        const Buffer& o = buffers_[j];
        if (j == i || o.offset < 0 || !live_together(b, o)) continue;
        int64_t r[4];
        ranges(o, r);
        for (int k = 0; k < 4; k += 2) {
          if (r[k] < r[k + 1] && at < r[k + 1] && r[k] < at + b.size) {
            at = r[k + 1];
            moved = true;
          }
        }
      }
    }
    b.offset = static_cast<int32_t>(at);
    if (static_cast<size_t>(at + b.size) > extent_) extent_ = static_cast<size_t>(at + b.size);
  }
  placed_ = true;
  return kTfLiteOk;
}

TfLiteStatus PlanPlanner::GetOffsetForBuffer(int buffer_index, int* offset) {
  if (!placed_ && Place() != kTfLiteOk) return kTfLiteError;
  if (buffer_index < 0 || buffer_index >= count_) return kTfLiteError;
  *offset = buffers_[buffer_index].offset;
  return kTfLiteOk;
}

size_t PlanPlanner::GetMaximumMemorySize() {
  if (!placed_ && count_ > 0 && Place() != kTfLiteOk) return SIZE_MAX;  // no arena is enough
  return extent_;
}

// ---- the kernels ---------------------------------------------------------------------------

namespace {

struct NodeState {
  int32_t op = -1;  // operator index in the model
  const Kernel* kernel = nullptr;
  void* op_data = nullptr;
};

// One op's operands as this runtime's kernels see them, built from the model (flash) each
// time: nothing per tensor is kept in the arena.
struct Operands {
  Tensor tensors[kMaxOperands];
  Tensor* inputs[kMaxOperands] = {};
  Tensor* outputs[kMaxOperands] = {};
  int num_inputs = 0;
  int num_outputs = 0;

  // `pool`: the ring's start (activations get their data pointers), nullptr in Prepare.
  Status Load(const TflmPlugin& p, int32_t op, uint8_t* pool, char* why, size_t why_size) {
    const OperatorInfo info = p.model().op(static_cast<uint32_t>(op));
    if (info.num_inputs + info.num_outputs > static_cast<uint32_t>(kMaxOperands)) {
      Format(why, why_size, "has %u operands, the plug-in runs at most %d",
             info.num_inputs + info.num_outputs, kMaxOperands);
      return Status::kUnsupportedOp;
    }
    num_inputs = static_cast<int>(info.num_inputs);
    num_outputs = static_cast<int>(info.num_outputs);
    for (int k = 0; k < num_inputs + num_outputs; ++k) {
      const int32_t index = k < num_inputs ? info.Input(static_cast<uint32_t>(k))
                                           : info.Output(static_cast<uint32_t>(k - num_inputs));
      Tensor** slot = k < num_inputs ? &inputs[k] : &outputs[k - num_inputs];
      *slot = nullptr;
      if (index < 0) continue;
      Tensor& t = tensors[k];
      const Status s =
          TensorFromModel(p.model().tensor(static_cast<uint32_t>(index)), index, &t, why, why_size);
      if (s != Status::kOk) return s;
      if (!t.is_const) {
        const int32_t offset = p.plan().Offset(static_cast<uint32_t>(index));
        if (offset < 0) {
          Format(why, why_size, "tensor '%s' has no place in the memory plan", t.name);
          return Status::kInvalidModel;
        }
        t.offset = static_cast<uint32_t>(offset);
        t.data = pool != nullptr ? pool + offset : nullptr;
      }
      *slot = &t;
    }
    return Status::kOk;
  }
};

class PluginContext : public OpContext {
 public:
  PluginContext(TfLiteContext* context, const TflmPlugin& plugin, int32_t op, int32_t code,
                const OpOptions* options, Operands& operands, void* op_data, uint8_t* pool)
      : context_(context), plugin_(plugin) {
    options_ = options;
    inputs_ = operands.inputs;
    outputs_ = operands.outputs;
    num_inputs_ = operands.num_inputs;
    num_outputs_ = operands.num_outputs;
    op_name_ = BuiltinOpName(code);
    op_index_ = op;
    op_data_ = op_data;
    pool_ = pool;
    pool_size_ = plugin.pool_bytes();
  }

  const int32_t* PlannedData(uint32_t* words) const override {
    return plugin_.plan().OpData(static_cast<uint32_t>(op_index_), words);
  }

  void* AllocatePersistent(size_t bytes, size_t alignment) override {
    // TFLM aligns persistent buffers to 16 bytes.
    if (alignment > static_cast<size_t>(kAlignment)) return nullptr;
    return context_->AllocatePersistentBuffer(context_, bytes);
  }

  Status Report(Status status, const char* message) override {
    MicroPrintf("tflm-vmcu: %s", message);
    return status;
  }

 private:
  TfLiteContext* context_;
  const TflmPlugin& plugin_;
};

TflmPlugin* PluginOf(TfLiteContext* context) {
  TflmPlugin* p = static_cast<TflmPlugin*>(tflite::GetMicroContext(context)->external_context());
  if (p == nullptr)
    MicroPrintf(
        "tflm-vmcu: no plug-in: call interpreter.SetMicroExternalContext(&plugin) before "
        "AllocateTensors()");
  else if (p->status() != Status::kOk)
    MicroPrintf("tflm-vmcu: %s", p->error_message());
  return p != nullptr && p->status() == Status::kOk ? p : nullptr;
}

void* InitNode(TfLiteContext* context, const char*, size_t) {
  void* raw = context->AllocatePersistentBuffer(context, sizeof(NodeState));
  return raw != nullptr ? new (raw) NodeState() : nullptr;
}

TfLiteStatus PrepareNode(TfLiteContext* context, TfLiteNode* node) {
  TflmPlugin* p = PluginOf(context);
  NodeState* state = static_cast<NodeState*>(node->user_data);
  if (p == nullptr || state == nullptr || node->outputs->size < 1) return kTfLiteError;
  state->op = p->OperatorWriting(node->outputs->data[0]);
  if (state->op < 0) {
    MicroPrintf("tflm-vmcu: no operator of the model writes tensor %d", node->outputs->data[0]);
    return kTfLiteError;
  }
  const OperatorInfo info = p->model().op(static_cast<uint32_t>(state->op));
  state->kernel = FindKernel(info.builtin_code);
  char why[192];
  Operands operands;
  Status s = state->kernel == nullptr ? Status::kUnsupportedOp : Status::kOk;
  if (s == Status::kOk) s = operands.Load(*p, state->op, nullptr, why, sizeof(why));
  if (s != Status::kOk) {
    if (state->kernel == nullptr) Format(why, sizeof(why), "no ring kernel");
    MicroPrintf("tflm-vmcu: operator %d (%s): %s", static_cast<int>(state->op),
                BuiltinOpName(info.builtin_code), why);
    return kTfLiteError;
  }
  const OpOptions options = DecodeOptions(p->model(), info.options_type, info.options_pos);
  PluginContext ctx(context, *p, state->op, info.builtin_code, &options, operands, nullptr,
                    nullptr);
  if (state->kernel->prepare(ctx) != Status::kOk) return kTfLiteError;
  state->op_data = ctx.op_data();
  return kTfLiteOk;
}

TfLiteStatus InvokeNode(TfLiteContext* context, TfLiteNode* node) {
  TflmPlugin* p = PluginOf(context);
  const NodeState* state = static_cast<const NodeState*>(node->user_data);
  if (p == nullptr || state == nullptr || state->kernel == nullptr) return kTfLiteError;
  const OperatorInfo info = p->model().op(static_cast<uint32_t>(state->op));
  // The ring starts where TFLM put the head: the output's address less its plan offset.
  const int32_t out = info.Output(0);
  const TfLiteEvalTensor* eval = tflite::micro::GetEvalOutput(context, node, 0);
  uint8_t* pool =
      static_cast<uint8_t*>(eval->data.data) - p->plan().Offset(static_cast<uint32_t>(out));
  char why[192];
  Operands operands;
  if (operands.Load(*p, state->op, pool, why, sizeof(why)) != Status::kOk) {
    MicroPrintf("tflm-vmcu: operator %d: %s", static_cast<int>(state->op), why);
    return kTfLiteError;
  }
  const OpOptions options = DecodeOptions(p->model(), info.options_type, info.options_pos);
  PluginContext ctx(context, *p, state->op, info.builtin_code, &options, operands, state->op_data,
                    pool);
  return state->kernel->eval(ctx) == Status::kOk ? kTfLiteOk : kTfLiteError;
}

}  // namespace

TFLMRegistration TflmPlugin::Registration() {
  TFLMRegistration r = {};
  r.init = InitNode;
  r.prepare = PrepareNode;
  r.invoke = InvokeNode;
  return r;
}

}  // namespace tflm_vmcu

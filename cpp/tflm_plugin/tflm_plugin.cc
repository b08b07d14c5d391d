// The TFLM plug-in (tflm_vmcu/tflm_plugin.h): a planner that places TFLM's buffers from the
// model's plan, and a front end that runs this runtime's kernels (the same objects the
// interpreter runs) as TFLM registrations.
#include "tflm_vmcu/tflm_plugin.h"

#include <new>

#include "access_order.h"
#include "format.h"
#include "kernels/inverted_bottleneck.h"
#include "kernels/kernel.h"
#include "model_tensor.h"
#include "op_names.h"
#include "op_options.h"
#include "plan_reader.h"
#include "plan_verifier.h"
#include "registry.h"
#include "ring.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tflm_vmcu/interpreter.h"

namespace tflm_vmcu {
namespace {

constexpr int32_t kAlignment = 16;  // MicroArenaBufferAlignment()

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
  } else {
    // Each fused block must be one custom operator (a plan for the tflm-vmcu runtime fuses
    // runs of the model's own operators, which TFLM would run one by one).
    for (uint32_t k = 0; k < tables->num_blocks; ++k) {
      const uint32_t first = tables->BlockWord(k, 0);
      const uint32_t last = tables->BlockWord(k, 1);
      const bool custom =
          first == last && first < model_.num_operators() && IsFusedBlockOperator(model_.op(first));
      if (!custom) {
        status_ = Status::kInvalidModel;
        Format(error_, sizeof(error_),
               "the plan fuses operators %u..%u, which run fused in the tflm-vmcu runtime "
               "only: compile the model with `tflm-vmcu compile --target tflm-plugin`",
               first, last);
        return;
      }
    }
  }
}

const PlanTables& TflmPlugin::plan() const { return *reinterpret_cast<const PlanTables*>(plan_); }

uint32_t TflmPlugin::pool_bytes() const { return plan().pool_bytes; }

namespace {

// Activation tensor `index` with its ring offset, as the hazard checker sees it.
bool PlacedTensor(const TflmPlugin& p, int32_t index, Tensor* t) {
  char why[64];
  if (index < 0 || TensorFromModel(p.model().tensor(static_cast<uint32_t>(index)), index, t, why,
                                   sizeof(why)) != Status::kOk)
    return false;
  const int32_t offset = p.plan().Offset(static_cast<uint32_t>(index));
  if (t->is_const || offset < 0) return false;
  t->offset = static_cast<uint32_t>(offset);
  return true;
}

// Ring kernels and fused blocks report their own reads and writes.
bool RunsOnTflmKernel(const TflmPlugin& p, uint32_t op, const OperatorInfo& info) {
  return !IsFusedBlockOperator(info) &&
         (FindKernel(info.builtin_code) == nullptr || p.plan().RunsOnTflmKernel(op));
}

void StartUnit(HazardState* h, int32_t op) {
  h->op = op;
  ++h->unit;
  h->writing = false;
}

}  // namespace

void TflmPlugin::BeginInvoke() {
  Tensor t;
  for (uint32_t k = 0; hazard_ != nullptr && k < model_.num_inputs(); ++k) {
    if (PlacedTensor(*this, model_.input_tensor(k), &t)) hazard_->Tag(t);
  }
}

void TflmPlugin::BeginOperator(int32_t op) {
  if (hazard_ == nullptr || op < 0 || static_cast<uint32_t>(op) >= model_.num_operators()) return;
  StartUnit(hazard_, op);
  const OperatorInfo info = model_.op(static_cast<uint32_t>(op));
  Tensor t;
  for (uint32_t k = 0;
       RunsOnTflmKernel(*this, static_cast<uint32_t>(op), info) && k < info.num_inputs; ++k) {
    if (PlacedTensor(*this, info.Input(k), &t))
      hazard_->OnRead(t, t.offset, 0, static_cast<uint32_t>(t.bytes));
  }
}

void TflmPlugin::EndOperator(int32_t op) {
  if (hazard_ == nullptr || op < 0 || static_cast<uint32_t>(op) >= model_.num_operators()) return;
  const OperatorInfo info = model_.op(static_cast<uint32_t>(op));
  Tensor t;
  for (uint32_t k = 0;
       RunsOnTflmKernel(*this, static_cast<uint32_t>(op), info) && k < info.num_outputs; ++k) {
    if (PlacedTensor(*this, info.Output(k), &t))
      hazard_->OnWrite(t, t.offset, 0, static_cast<uint32_t>(t.bytes));
  }
}

void TflmPlugin::EndInvoke() {
  if (hazard_ == nullptr) return;
  StartUnit(hazard_, -1);
  Tensor t;
  for (uint32_t k = 0; k < model_.num_outputs(); ++k) {
    if (PlacedTensor(*this, model_.output_tensor(k), &t))
      hazard_->OnRead(t, t.offset, 0, static_cast<uint32_t>(t.bytes));
  }
}

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
    if (b.offset < 0) {
      // Only the inner tensors of fused blocks are left out of the plan: no operator reads or
      // writes them (TFLM gives them no lifetime), so they get no bytes.
      if (first_time_used >= 0 || last_time_used >= 0) {
        MicroPrintf(
            "tflm-vmcu: the memory plan gives tensor %d ('%s'), which operator %d uses, "
            "no place",
            static_cast<int>(tensor), info.name, first_time_used);
        failed_ = true;
        return kTfLiteError;
      }
      b.offset = 0;
      b.size = 0;
    }
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
    if (b.offset < 0 || b.unused()) continue;
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
  if (Verify() != kTfLiteOk) return kTfLiteError;
  for (int i = 0; i < count_; ++i) {
    Buffer& b = buffers_[i];
    if (b.offset >= 0) continue;
    int64_t at = 0;
    for (bool moved = true; moved;) {
      moved = false;
      for (int j = 0; j < count_; ++j) {
        const Buffer& o = buffers_[j];
        if (j == i || o.offset < 0 || o.unused() || !live_together(b, o)) continue;
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

#ifdef TFLM_VMCU_NO_PLAN_VERIFIER
TfLiteStatus PlanPlanner::Verify() const { return kTfLiteOk; }
#else
// The plan verifier's rule (plan_verifier.h) over TFLM's own lifetimes: tensors live at the
// same time share no ring byte, except an operator's output over an input that dies at that
// operator, when the runtime's kernel or fused block runs it (the kernels check the
// displacement at Prepare, which TFLM runs before it plans). A fused block's workspace
// overlaps nothing live at its operator. TFLM's lifetimes count scopes: model inputs are
// created in scope 0, operator k runs in scope k + 1 (one subgraph).
TfLiteStatus PlanPlanner::Verify() const {
  if (!plugin_->verify_plan()) return kTfLiteOk;
  const Model& m = plugin_->model();
  const PlanTables& plan = plugin_->plan();
  const uint32_t ring = plugin_->pool_bytes();
  auto bytes = [&](const Buffer& b) {
    return static_cast<size_t>(AllocatedBytes(m.tensor(static_cast<uint32_t>(b.tensor))));
  };
  auto name = [&](const Buffer& b) { return m.tensor(static_cast<uint32_t>(b.tensor)).name; };
  for (int i = 0; i < count_; ++i) {
    const Buffer& a = buffers_[i];
    if (a.tensor < 0 || a.unused()) continue;
    for (uint32_t k = 0; k < plan.num_blocks; ++k) {
      const int32_t op = static_cast<int32_t>(plan.BlockWord(k, 0));
      const uint32_t ws = plan.BlockWord(k, 3), ws_bytes = plan.BlockWord(k, 4);
      if (a.first <= op + 1 && op + 1 <= a.last &&
          !RingDisjoint(ws, ws_bytes, static_cast<uint32_t>(a.offset), bytes(a), ring)) {
        MicroPrintf(
            "tflm-vmcu: unsafe memory plan at operator %d (fused block): its workspace (%u "
            "bytes at offset %u) overlaps live tensor %d ('%s', %u bytes at offset %d)",
            static_cast<int>(op), static_cast<unsigned>(ws_bytes), static_cast<unsigned>(ws),
            static_cast<int>(a.tensor), name(a), static_cast<unsigned>(bytes(a)),
            static_cast<int>(a.offset));
        return kTfLiteError;
      }
    }
    for (int j = 0; j < i; ++j) {
      const Buffer& b = buffers_[j];
      if (b.tensor < 0 || b.unused() || a.last < b.first || b.last < a.first) continue;
      if (RingDisjoint(static_cast<uint32_t>(a.offset), bytes(a), static_cast<uint32_t>(b.offset),
                       bytes(b), ring))
        continue;
      const Buffer& out = a.first > b.first ? a : b;
      const Buffer& in = &out == &a ? b : a;
      const int32_t k = out.first - 1;  // the operator writing `out`
      bool allowed = in.last == out.first && k >= 0 && static_cast<uint32_t>(k) < m.num_operators();
      if (allowed) {
        const OperatorInfo op = m.op(static_cast<uint32_t>(k));
        bool reads = false;
        for (uint32_t q = 0; q < op.num_inputs; ++q) reads |= op.Input(q) == in.tensor;
        const bool ours = IsFusedBlockOperator(op)
                              ? op.Input(0) == in.tensor
                              : FindKernel(op.builtin_code) != nullptr &&
                                    !plan.RunsOnTflmKernel(static_cast<uint32_t>(k));
        allowed = op.num_outputs > 0 && op.Output(0) == out.tensor && reads && ours;
      }
      if (!allowed) {
        MicroPrintf(
            "tflm-vmcu: unsafe memory plan: tensor %d ('%s', %u bytes at offset %d, live in "
            "scopes %d..%d) overlaps tensor %d ('%s', %u bytes at offset %d, scopes %d..%d); "
            "only a ring kernel's output may overlap an input that dies at its operator",
            static_cast<int>(out.tensor), name(out), static_cast<unsigned>(bytes(out)),
            static_cast<int>(out.offset), out.first, out.last, static_cast<int>(in.tensor),
            name(in), static_cast<unsigned>(bytes(in)), static_cast<int>(in.offset), in.first,
            in.last);
        return kTfLiteError;
      }
    }
  }
  return kTfLiteOk;
}
#endif

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

constexpr int kMaxTensors = 16;  // distinct tensors of one op or one fused block

// Kept as small as the ring kernels alone need: TFLM allocates one per node in its
// persistent arena.
struct NodeState {
  int32_t op = -1;         // operator index in the model
  bool runs_tflm = false;  // the plan leaves the operator to TFLM's kernel
  union {
    // From Init to Prepare: TFLM's registration function for the builtin (nullptr: no
    // fallback registered).
    TFLMRegistration (*tflm_kernel)() = nullptr;
    const Kernel* kernel;                                      // after Prepare: the ring kernel,
    TfLiteStatus (*tflm_invoke)(TfLiteContext*, TfLiteNode*);  // or TFLM kernel's Invoke
  };
  void* op_data = nullptr;  // either kernel's node data
};
static_assert(sizeof(NodeState) <= 2 * sizeof(int32_t) + 2 * sizeof(void*), "NodeState grew");

// Runs TFLM's kernel `invoke` (or prepare) on a node whose user data is the plug-in's.
TfLiteStatus RunTflmKernel(TfLiteStatus (*fn)(TfLiteContext*, TfLiteNode*), void* data,
                           TfLiteContext* context, TfLiteNode* node) {
  void* ours = node->user_data;
  node->user_data = data;
  const TfLiteStatus s = fn != nullptr ? fn(context, node) : kTfLiteOk;
  node->user_data = ours;
  return s;
}

// A fused block's kernel state, built at Prepare from the operators nested in the custom
// operator: the Bottleneck and the block's input and output, which it points to.
struct BlockState {
  Bottleneck block;
  Tensor input, output;
};

// The tensors of one op, or of one fused block's operators, each loaded once from the model
// (flash) when first named: nothing per tensor is kept in the arena.
class TensorSet {
 public:
  // `pool`: the ring's start (activations get their addresses), nullptr in Prepare.
  TensorSet(const TflmPlugin& p, uint8_t* pool) : plugin_(p), pool_(pool) {}

  // Tensor `index` (nullptr for -1, an omitted optional input). `inner`: the tensor may be
  // one the plan leaves out (inside a fused block). On failure returns false with `why` set.
  bool Get(int32_t index, bool inner, Tensor** out, char* why, size_t why_size) {
    *out = nullptr;
    if (index < 0) return true;
    for (int k = 0; k < count_; ++k) {
      if (tensors_[k].index == index) {
        *out = &tensors_[k];
        return true;
      }
    }
    if (count_ == kMaxTensors) {
      Format(why, why_size, "names more than %d tensors, the plug-in runs at most that many",
             kMaxTensors);
      return false;
    }
    Tensor& t = tensors_[count_];
    if (TensorFromModel(plugin_.model().tensor(static_cast<uint32_t>(index)), index, &t, why,
                        why_size) != Status::kOk)
      return false;
    if (!t.is_const) {
      const int32_t offset = plugin_.plan().Offset(static_cast<uint32_t>(index));
      if (offset < 0 && !inner) {
        Format(why, why_size, "tensor '%s' has no place in the memory plan", t.name);
        return false;
      }
      t.offset = offset < 0 ? 0 : static_cast<uint32_t>(offset);
      t.data = pool_ != nullptr && offset >= 0 ? pool_ + offset : nullptr;
    }
    ++count_;
    *out = &t;
    return true;
  }

 private:
  const TflmPlugin& plugin_;
  uint8_t* pool_;
  Tensor tensors_[kMaxTensors];
  int count_ = 0;
};

// One operator's operands as this runtime's kernels see them.
struct Operands {
  Tensor* inputs[kMaxTensors] = {};
  Tensor* outputs[kMaxTensors] = {};
  int num_inputs = 0;
  int num_outputs = 0;

  bool Load(const OperatorInfo& info, TensorSet& set, bool inner, char* why, size_t why_size) {
    if (info.num_inputs + info.num_outputs > static_cast<uint32_t>(kMaxTensors)) {
      Format(why, why_size, "has %u operands, the plug-in runs at most %d",
             info.num_inputs + info.num_outputs, kMaxTensors);
      return false;
    }
    num_inputs = static_cast<int>(info.num_inputs);
    num_outputs = static_cast<int>(info.num_outputs);
    for (int k = 0; k < num_inputs; ++k) {
      if (!set.Get(info.Input(static_cast<uint32_t>(k)), inner, &inputs[k], why, why_size))
        return false;
    }
    for (int k = 0; k < num_outputs; ++k) {
      if (!set.Get(info.Output(static_cast<uint32_t>(k)), inner, &outputs[k], why, why_size))
        return false;
    }
    return true;
  }
};

class PluginContext : public OpContext {
 public:
  // `planned`: the op's words in the plan (nullptr: none), an upper bound of their count.
  PluginContext(TfLiteContext* context, const TflmPlugin& plugin, int32_t op, int32_t code,
                const OpOptions* options, Operands& operands, void* op_data, uint8_t* pool,
                const int32_t* planned, uint32_t planned_words)
      : context_(context), planned_(planned), planned_words_(planned_words) {
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
    hazard_ = pool != nullptr ? plugin.hazard_state() : nullptr;
  }

  const int32_t* PlannedData(uint32_t* words) const override {
    *words = planned_ != nullptr ? planned_words_ : 0;
    return planned_;
  }

  void* AllocatePersistent(const StateRequest& request) override {
    // TFLM aligns persistent buffers to 16 bytes.
    if (request.alignment > static_cast<size_t>(kAlignment)) return nullptr;
    return context_->AllocatePersistentBuffer(context_, request.bytes);
  }

  Status Report(Status status, const char* message) override {
    MicroPrintf("tflm-vmcu: %s", message);
    return status;
  }

 private:
  TfLiteContext* context_;
  const int32_t* planned_;
  uint32_t planned_words_;
};

// The plan verifier's displacement rule for an output over input `in` that the plan lets it
// overlap (plan_verifier.h); `need` computes the kernel's minimal displacement from the
// plan's. Whether `in` dies at the operator is checked when TFLM plans.
template <typename Need>
bool OverlapSafe(const TflmPlugin& p, int32_t op, const char* op_name, const Tensor& in,
                 const Tensor& out, Need need) {
#ifdef TFLM_VMCU_NO_PLAN_VERIFIER
  return true;
#else
  const uint32_t ring = p.pool_bytes();
  if (!p.verify_plan() || in.is_const || &in == &out ||
      RingDisjoint(in.offset, in.bytes, out.offset, out.bytes, ring))
    return true;
  const uint32_t d = Displacement(in, out, ring);
  const int64_t n = need(d);
  if (OverlapAllowed(in, d, n, ring)) return true;
  MicroPrintf(
      "tflm-vmcu: unsafe memory plan at operator %d (%s): output tensor %d (%u bytes at offset "
      "%u) starts %u bytes behind input tensor %d (%u bytes at offset %u): the kernel needs "
      "at least %d (-1: no overlap), without the input wrapping onto the output",
      static_cast<int>(op), op_name, static_cast<int>(out.index), static_cast<unsigned>(out.bytes),
      static_cast<unsigned>(out.offset), static_cast<unsigned>(d), static_cast<int>(in.index),
      static_cast<unsigned>(in.bytes), static_cast<unsigned>(in.offset), static_cast<int>(n));
  return false;
#endif
}

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

// The ring's start: where TFLM put the output of `op`, less its plan offset.
uint8_t* PoolOf(TfLiteContext* context, TfLiteNode* node, const TflmPlugin& p, int32_t op) {
  const TfLiteEvalTensor* eval = tflite::micro::GetEvalOutput(context, node, 0);
  const int32_t out = p.model().op(static_cast<uint32_t>(op)).Output(0);
  return static_cast<uint8_t*>(eval->data.data) - p.plan().Offset(static_cast<uint32_t>(out));
}

// The model operator a node runs: the one writing the node's output.
bool FindOperator(const TflmPlugin& p, TfLiteNode* node, int32_t* op) {
  *op = node->outputs->size < 1 ? -1 : p.OperatorWriting(node->outputs->data[0]);
  if (*op < 0)
    MicroPrintf("tflm-vmcu: no operator of the model writes tensor %d",
                node->outputs->size < 1 ? -1 : node->outputs->data[0]);
  return *op >= 0;
}

TfLiteStatus PrepareNode(TfLiteContext* context, TfLiteNode* node) {
  TflmPlugin* p = PluginOf(context);
  NodeState* state = static_cast<NodeState*>(node->user_data);
  if (p == nullptr || state == nullptr || !FindOperator(*p, node, &state->op)) return kTfLiteError;
  const OperatorInfo info = p->model().op(static_cast<uint32_t>(state->op));
  if (p->plan().RunsOnTflmKernel(static_cast<uint32_t>(state->op))) {
    if (state->tflm_kernel == nullptr) {
      MicroPrintf(
          "tflm-vmcu: operator %d (%s): the plan leaves it to TFLM's kernel: register the "
          "plug-in's kernels with TFLM's as fallback, "
          "plugin.AddKernels<tflm_vmcu::Fallback::kTflmKernels>(resolver)",
          static_cast<int>(state->op), BuiltinOpName(info.builtin_code));
      return kTfLiteError;
    }
    const TFLMRegistration tflm = state->tflm_kernel();  // checked non-null above
    const char* init_data = static_cast<const char*>(node->builtin_data);
    state->op_data = tflm.init != nullptr ? tflm.init(context, init_data, 0) : nullptr;
    state->tflm_invoke = tflm.invoke;
    state->runs_tflm = true;
    return RunTflmKernel(tflm.prepare, state->op_data, context, node);
  }
  state->kernel = FindKernel(info.builtin_code);  // replaces tflm_kernel (unused here)
  char why[192];
  TensorSet set(*p, nullptr);
  Operands operands;
  if (state->kernel == nullptr || !operands.Load(info, set, false, why, sizeof(why))) {
    if (state->kernel == nullptr) Format(why, sizeof(why), "no ring kernel");
    MicroPrintf("tflm-vmcu: operator %d (%s): %s", static_cast<int>(state->op),
                BuiltinOpName(info.builtin_code), why);
    return kTfLiteError;
  }
  const OpOptions options = DecodeOptions(p->model(), info.options_type, info.options_pos);
  if (operands.num_outputs > 0 && operands.outputs[0] != nullptr) {
    const Tensor& out = *operands.outputs[0];
    const AccessOp access{info.builtin_code, &options, operands.inputs, operands.num_inputs, &out};
    for (int k = 0; k < operands.num_inputs; ++k) {
      const Tensor* in = operands.inputs[k];
      if (in != nullptr &&
          !OverlapSafe(*p, state->op, BuiltinOpName(info.builtin_code), *in, out,
                       [&](uint32_t d) { return NeededDisplacement(access, in, d); }))
        return kTfLiteError;
    }
  }
  uint32_t words = 0;
  const int32_t* planned = p->plan().OpData(static_cast<uint32_t>(state->op), &words);
  PluginContext ctx(context, *p, state->op, info.builtin_code, &options, operands, nullptr, nullptr,
                    planned, words);
  if (state->kernel->prepare(ctx) != Status::kOk) return kTfLiteError;
  state->op_data = ctx.op_data();
  return kTfLiteOk;
}

TfLiteStatus InvokeNode(TfLiteContext* context, TfLiteNode* node) {
  TflmPlugin* p = PluginOf(context);
  const NodeState* state = static_cast<const NodeState*>(node->user_data);
  if (p != nullptr && state != nullptr && state->runs_tflm)
    return RunTflmKernel(state->tflm_invoke, state->op_data, context, node);
  if (p == nullptr || state == nullptr || state->kernel == nullptr) return kTfLiteError;
  const OperatorInfo info = p->model().op(static_cast<uint32_t>(state->op));
  char why[192];
  TensorSet set(*p, PoolOf(context, node, *p, state->op));
  Operands operands;
  if (!operands.Load(info, set, false, why, sizeof(why))) {
    MicroPrintf("tflm-vmcu: operator %d: %s", static_cast<int>(state->op), why);
    return kTfLiteError;
  }
  const OpOptions options = DecodeOptions(p->model(), info.options_type, info.options_pos);
  if (p->hazard_state() != nullptr) StartUnit(p->hazard_state(), state->op);
  PluginContext ctx(context, *p, state->op, info.builtin_code, &options, operands, state->op_data,
                    PoolOf(context, node, *p, state->op), nullptr, 0);
  return state->kernel->eval(ctx) == Status::kOk ? kTfLiteOk : kTfLiteError;
}

// ---- fused blocks --------------------------------------------------------------------------

void* InitBlock(TfLiteContext* context, const char*, size_t) {
  void* raw = context->AllocatePersistentBuffer(context, sizeof(BlockState));
  return raw != nullptr ? new (raw) BlockState() : nullptr;
}

// Inner operator `j`'s words in the block operator's plan data: [count, start of each
// inner operator's words (-1: none), the words].
const int32_t* InnerWords(const int32_t* words, uint32_t n, uint32_t j, uint32_t count,
                          uint32_t* out) {
  *out = 0;
  if (words == nullptr || n < 1 + count || static_cast<uint32_t>(words[0]) != count) return nullptr;
  const int32_t start = words[1 + j];
  if (start < static_cast<int32_t>(1 + count) || static_cast<uint32_t>(start) >= n) return nullptr;
  *out = n - static_cast<uint32_t>(start);
  return words + start;
}

// A block's operators, prepared, for MakeBottleneck.
class PreparedOps final : public BlockOpReader {
 public:
  explicit PreparedOps(const BlockOp* ops) : ops_(ops) {}
  void Read(int32_t k, BlockOp* op, OpOptions* options) const override {
    *options = *ops_[k].options;
    *op = ops_[k];
    op->options = options;
  }

 private:
  const BlockOp* ops_;
};

TfLiteStatus BlockFail(int32_t op, const char* why) {
  MicroPrintf("tflm-vmcu: operator %d (%s): %s", static_cast<int>(op), TflmPlugin::kBlockOpName,
              why);
  return kTfLiteError;
}

TfLiteStatus PrepareBlock(TfLiteContext* context, TfLiteNode* node) {
  TflmPlugin* p = PluginOf(context);
  BlockState* state = static_cast<BlockState*>(node->user_data);
  int32_t op;
  if (p == nullptr || state == nullptr || !FindOperator(*p, node, &op)) return kTfLiteError;
  const Model& m = p->model();
  const OperatorInfo info = m.op(static_cast<uint32_t>(op));
  char why[192];
  uint32_t k = 0;  // the plan's record of this block
  while (k < p->plan().num_blocks && p->plan().BlockWord(k, 0) != static_cast<uint32_t>(op)) ++k;
  if (k == p->plan().num_blocks) return BlockFail(op, "the memory plan has no fused block here");
  NestedOperators nested;
  if (m.ReadNested(info, &nested, why, sizeof(why)) != Status::kOk) return BlockFail(op, why);
  // One block (the plug-in runs no chains: its Prepare holds every operand of the block).
  if (nested.count < 2 || nested.count > static_cast<uint32_t>(kMaxStageOps)) {
    Format(why, sizeof(why), "stands for %u operators, a fused block is 2 to %d", nested.count,
           kMaxStageOps);
    return BlockFail(op, why);
  }
  // The block's operators prepared by their own kernels, then fused as the interpreter does.
  TensorSet set(*p, nullptr);
  Operands operands[kMaxStageOps];
  OpOptions options[kMaxStageOps];
  BlockOp ops[kMaxStageOps];
  uint32_t words = 0;
  const int32_t* planned = p->plan().OpData(static_cast<uint32_t>(op), &words);
  for (uint32_t j = 0; j < nested.count; ++j) {
    const OperatorInfo inner = m.nested_op(nested, j);
    const Kernel* kernel = FindKernel(inner.builtin_code);
    if (kernel == nullptr || inner.num_outputs != 1 ||
        !operands[j].Load(inner, set, true, why, sizeof(why))) {
      if (kernel == nullptr || inner.num_outputs != 1)
        Format(why, sizeof(why), "nested operator %u (%s) cannot be part of a fused block", j,
               BuiltinOpName(inner.builtin_code));
      return BlockFail(op, why);
    }
    options[j] = DecodeOptions(m, inner.options_type, inner.options_pos);
    uint32_t n = 0;
    const int32_t* data = InnerWords(planned, words, j, nested.count, &n);
    PluginContext ctx(context, *p, op, inner.builtin_code, &options[j], operands[j], nullptr,
                      nullptr, data, n);
    if (kernel->prepare(ctx) != Status::kOk) return kTfLiteError;
    ops[j] =
        BlockOp{inner.builtin_code,     &options[j],  operands[j].inputs, operands[j].num_inputs,
                operands[j].outputs[0], ctx.op_data()};
  }
  Bottleneck b;
  BlockStage stages[kMaxChainStages];
  const PreparedOps reader(ops);
  if (!MakeBottleneck(reader, static_cast<int32_t>(nested.count), p->pool_bytes(), stages, &b, why,
                      sizeof(why)))
    return BlockFail(op, why);
  if (info.num_inputs < 1 || info.num_outputs != 1 || b.input->index != info.Input(0) ||
      b.output->index != info.Output(0))
    return BlockFail(op, "its operands are not the input and output of the block it stands for");
  const uint32_t mode = p->plan().BlockWord(k, 2);
  const uint32_t ws_offset = p->plan().BlockWord(k, 3);
  const uint32_t ws_bytes = p->plan().BlockWord(k, 4);
  b.window = mode == 1;
  const uint32_t pool = p->pool_bytes();
  char where[160];
  if (mode > 1) {
    Format(why, sizeof(why), "the memory plan runs the block in unknown mode %u", mode);
    return BlockFail(op, why);
  }
  if (!PlaceWorkspace(&b, ws_offset, ws_bytes, pool, static_cast<int32_t>(m.num_tensors() + k),
                      where, sizeof(where))) {
    Format(why, sizeof(why), "the memory plan gives the block %s", where);
    return BlockFail(op, why);
  }
  b.first_op = b.last_op = static_cast<uint32_t>(op);
  if (!OverlapSafe(*p, op, "fused block", *b.input, *b.output,
                   [&](uint32_t) { return BlockMinDisplacement(b); }))
    return kTfLiteError;
  // The stages in the arena's persistent part; their tensors were loaded for Prepare only.
  void* raw =
      context->AllocatePersistentBuffer(context, sizeof(BlockStage) * static_cast<size_t>(b.count));
  if (raw == nullptr) return BlockFail(op, "no arena left for its state");
  b.stages = static_cast<BlockStage*>(raw);
  state->input = *b.input;
  state->output = *b.output;
  b.input = &state->input;
  b.output = &state->output;
  for (int32_t s = 0; s < b.count; ++s) {
    b.stages[s] = stages[s];
    b.stages[s].input = s == 0 ? b.input : nullptr;
    b.stages[s].output = s + 1 == b.count ? b.output : nullptr;
  }
  state->block = b;
  return kTfLiteOk;
}

TfLiteStatus InvokeBlock(TfLiteContext* context, TfLiteNode* node) {
  TflmPlugin* p = PluginOf(context);
  const BlockState* state = static_cast<const BlockState*>(node->user_data);
  if (p == nullptr || state == nullptr || state->block.input == nullptr) return kTfLiteError;
  const int32_t op = static_cast<int32_t>(state->block.first_op);
  if (p->hazard_state() != nullptr) StartUnit(p->hazard_state(), op);
  EvalBottleneck(state->block, PoolOf(context, node, *p, op), p->pool_bytes(), p->hazard_state());
  return kTfLiteOk;
}

}  // namespace

void* TflmPlugin::InitNode(TfLiteContext* context, const char*, size_t,
                           TFLMRegistration (*tflm_kernel)()) {
  void* raw = context->AllocatePersistentBuffer(context, sizeof(NodeState));
  if (raw == nullptr) return nullptr;
  NodeState* state = new (raw) NodeState();
  state->tflm_kernel = tflm_kernel;
  return state;
}

TFLMRegistration TflmPlugin::Registration() {
  TFLMRegistration r = {};
  r.init = [](TfLiteContext* context, const char* buffer, size_t length) {
    return InitNode(context, buffer, length, nullptr);
  };
  r.prepare = PrepareNode;
  r.invoke = InvokeNode;
  return r;
}

TFLMRegistration TflmPlugin::BlockRegistration() {
  TFLMRegistration r = {};
  r.init = InitBlock;
  r.prepare = PrepareBlock;
  r.invoke = InvokeBlock;
  return r;
}

}  // namespace tflm_vmcu

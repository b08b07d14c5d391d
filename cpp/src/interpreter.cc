#include "tflm_vmcu/interpreter.h"

#include <stdarg.h>
#include <string.h>

#include "flatbuffer.h"
#include "format.h"
#include "kernels/inverted_bottleneck.h"
#include "kernels/kernel.h"
#include "model_tensor.h"
#include "node.h"
#include "op_names.h"
#include "op_options.h"
#include "plan_reader.h"
#include "plan_verifier.h"
#include "registry.h"
#include "ring.h"

namespace tflm_vmcu {

namespace {

constexpr size_t kPoolAlignment = 16;

size_t AlignUp(size_t v, size_t a) { return (v + a - 1) / a * a; }

}  // namespace

TFLM_VMCU_ARM32_LAYOUT(Tensor, 76, 4);

// The OpContext handed to kernels: routes allocations to the tail and prefixes
// errors with the operator's index and name.
class Interpreter::Context : public OpContext {
 public:
  Context(Interpreter* interp, const Node& node, int op_index, const OpOptions* options)
      : interp_(interp) {
    options_ = options;
    inputs_ = node.inputs;
    outputs_ = node.outputs;
    num_inputs_ = node.num_inputs;
    num_outputs_ = node.num_outputs;
    op_name_ = BuiltinOpName(node.builtin_code);
    op_index_ = op_index;
    op_data_ = node.op_data;
    pool_ = interp->pool_;
    pool_size_ = static_cast<uint32_t>(interp->pool_bytes_);
    hazard_ = interp->hazard_;
  }

  const int32_t* PlannedData(uint32_t* words) const override {
    return interp_->PlannedOpData(op_index_, words);
  }

  void* AllocatePersistent(const StateRequest& request) override {
    void* p = interp_->AllocateTail(request);
    if (p == nullptr) {
      interp_->Fail(Status::kOutOfMemory,
                    "memory block of %u bytes is too small: operator %d (%s) needs %u more "
                    "bytes of runtime state",
                    static_cast<unsigned>(interp_->memory_size_), op_index_, op_name_,
                    static_cast<unsigned>(request.bytes));
    }
    return p;
  }

  Status Report(Status status, const char* message) override {
    return interp_->Fail(status, "%s", message);
  }

 private:
  Interpreter* interp_;
};

Interpreter::Interpreter(const uint8_t* model, size_t model_size, uint8_t* memory,
                         size_t memory_size)
    : model_bytes_(model), model_size_(model_size), memory_(memory), memory_size_(memory_size) {}

Status Interpreter::Fail(Status status, const char* format, ...) {
  va_list args;
  va_start(args, format);
  FormatV(error_, sizeof(error_), format, args);
  va_end(args);
  status_ = status;
  return status;
}

void* Interpreter::AllocateTail(const StateRequest& r) {
  const uintptr_t base = reinterpret_cast<uintptr_t>(memory_);
  if (r.bytes > tail_) return nullptr;
  uintptr_t p = base + tail_ - r.bytes;
  p -= p % (r.alignment == 0 ? 1 : r.alignment);
  if (p < base) return nullptr;
  tail_ = p - base;
  state_bytes_ = memory_size_ - tail_;
  // The same allocation on a 32-bit Arm core, below the end of a block aligned to 16 bytes
  // (as the firmware's is), where the state grows down from the end exactly like this.
  arm32_state_bytes_ = AlignUp(arm32_state_bytes_ + r.arm32_bytes, r.arm32_alignment);
  return reinterpret_cast<void*>(p);
}

Tensor* Interpreter::input(size_t i) {
  if (!allocated_ || i >= model_.num_inputs()) return nullptr;
  return &tensors_[model_.input_tensor(static_cast<uint32_t>(i))];
}

Tensor* Interpreter::output(size_t i) {
  if (!allocated_ || i >= model_.num_outputs()) return nullptr;
  return &tensors_[model_.output_tensor(static_cast<uint32_t>(i))];
}

const Tensor* Interpreter::tensor(size_t i) const {
  if (tensors_ == nullptr || i >= model_.num_tensors()) return nullptr;
  return &tensors_[i];
}

Status Interpreter::TensorCopyCheck(size_t i, size_t bytes, bool write) {
  if (!allocated_)
    return Fail(Status::kInvalidState, "tensor access before a successful AllocateTensors()");
  if (i >= model_.num_tensors())
    return Fail(Status::kInvalidArgument, "tensor %u does not exist (%u tensors)",
                static_cast<unsigned>(i), static_cast<unsigned>(model_.num_tensors()));
  const Tensor& t = tensors_[i];
  if (bytes != t.bytes)
    return Fail(Status::kInvalidArgument, "tensor '%s' holds %u bytes, not %u", t.name,
                static_cast<unsigned>(t.bytes), static_cast<unsigned>(bytes));
  if (write && t.is_const)
    return Fail(Status::kInvalidArgument, "tensor '%s' is a constant: not writable", t.name);
  if (t.data == nullptr && t.bytes > 0)
    return Fail(Status::kInvalidArgument,
                "tensor %u lives inside a fused block and has no bytes in the pool ('%s')",
                static_cast<unsigned>(i), t.name);
  return Status::kOk;
}

Status Interpreter::ReadTensor(size_t i, void* dst, size_t bytes) {
  const Status s = TensorCopyCheck(i, bytes, false);
  if (s != Status::kOk || bytes == 0) return s;
  const Tensor& t = tensors_[i];
  uint8_t* out = static_cast<uint8_t*>(dst);
  const size_t head =
      t.is_const || pool_bytes_ - t.offset >= bytes ? bytes : pool_bytes_ - t.offset;
  memcpy(out, t.data, head);
  memcpy(out + head, pool_, bytes - head);
  return Status::kOk;
}

Status Interpreter::WriteTensor(size_t i, const void* src, size_t bytes) {
  const Status s = TensorCopyCheck(i, bytes, true);
  if (s != Status::kOk || bytes == 0) return s;
  const Tensor& t = tensors_[i];
  const uint8_t* in = static_cast<const uint8_t*>(src);
  const size_t head = pool_bytes_ - t.offset >= bytes ? bytes : pool_bytes_ - t.offset;
  memcpy(t.data, in, head);
  memcpy(pool_, in + head, bytes - head);
  return Status::kOk;
}

int32_t Interpreter::op_code(size_t i) const {
  if (i >= model_.num_operators()) return -1;
  return model_.op(static_cast<uint32_t>(i)).builtin_code;
}

Status Interpreter::AllocateTensors() {
  if (allocated_ || checked_)
    return Fail(Status::kInvalidState, "AllocateTensors() was already called");
  size_t plan_bytes = 0;
  const uint8_t* plan = nullptr;
  Status st = CheckAndPrepare(&plan, &plan_bytes);
  if (st == Status::kOk) st = plan != nullptr ? ApplyPlan() : PlanActivations();
  if (st != Status::kOk) return st;
  allocated_ = true;
  status_ = Status::kOk;
  return Status::kOk;
}

Status Interpreter::CheckModel() {
  if (allocated_ || checked_)
    return Fail(Status::kInvalidState, "AllocateTensors() or CheckModel() was already called");
  size_t plan_bytes = 0;
  const uint8_t* plan = nullptr;
  const Status st = CheckAndPrepare(&plan, &plan_bytes);
  checked_ = true;
  return st;
}

// Everything AllocateTensors does before placing activations: the model, its operators,
// tensors and plan header are checked and every kernel is prepared (state in the tail).
Status Interpreter::CheckAndPrepare(const uint8_t** plan, size_t* plan_bytes) {
  if (memory_ == nullptr) return Fail(Status::kInvalidArgument, "no memory block given");
  if ((reinterpret_cast<uintptr_t>(model_bytes_) & 3) != 0)
    return Fail(Status::kInvalidArgument, "model bytes must be 4-byte aligned");
  const Status s = model_.Init(model_bytes_, model_size_, error_, sizeof(error_));
  if (s != Status::kOk) {
    status_ = s;
    return s;
  }
  tail_ = memory_size_;
  state_bytes_ = 0;
  arm32_state_bytes_ = 0;
  for (uint32_t i = 0; i < model_.num_operators(); ++i) {
    const OperatorInfo op = model_.op(i);
    if (FindKernel(op.builtin_code) == nullptr) {
      if (IsFusedBlockOperator(op))
        return Fail(Status::kUnsupportedOp,
                    "operator %u: custom op '%s' is a fused block of a model compiled for TFLM "
                    "+ the tflm-vmcu plug-in (--target tflm-plugin): it runs in TFLM with the "
                    "plug-in's kernels; compile the original model for this runtime",
                    i, op.custom_code);
      if (op.builtin_code < 0)
        return Fail(Status::kUnsupportedOp, "operator %u: custom op '%s' is not supported", i,
                    op.custom_code);
      return Fail(Status::kUnsupportedOp, "operator %u: %s is not supported (supported: %s)", i,
                  BuiltinOpName(op.builtin_code), SupportedOpsList());
    }
  }
  *plan = model_.metadata(kPlanMetadataName, plan_bytes);
  Status st = InitTensors();
  if (st == Status::kOk) st = CheckGraph();
  if (st == Status::kOk && *plan != nullptr) st = ReadPlanOpData(*plan, *plan_bytes);
  if (st == Status::kOk) st = PrepareNodes();
  return st;
}

Status Interpreter::InitTensors() {
  const uint32_t n = model_.num_tensors();
  tensors_ = static_cast<Tensor*>(AllocateTail(StateOf<Tensor>(n)));
  if (tensors_ == nullptr && n > 0)
    return Fail(Status::kOutOfMemory,
                "memory block of %u bytes is too small for %u tensor structs (%u bytes)",
                static_cast<unsigned>(memory_size_), n, static_cast<unsigned>(sizeof(Tensor) * n));
  char why[sizeof(error_)];
  for (uint32_t i = 0; i < n; ++i) {
    const Status st =
        TensorFromModel(model_.tensor(i), static_cast<int32_t>(i), &tensors_[i], why, sizeof(why));
    if (st != Status::kOk) return Fail(st, "%s", why);
  }
  return Status::kOk;
}

Status Interpreter::PrepareNodes() {
  const uint32_t n = model_.num_operators();
  nodes_ = static_cast<Node*>(AllocateTail(StateOf<Node>(n)));
  if (nodes_ == nullptr && n > 0)
    return Fail(Status::kOutOfMemory, "memory block of %u bytes is too small for %u operators",
                static_cast<unsigned>(memory_size_), n);
  for (uint32_t i = 0; i < n; ++i) {
    const OperatorInfo op = model_.op(i);
    Node& node = nodes_[i];
    node = Node{FindKernel(op.builtin_code),
                nullptr,
                nullptr,
                nullptr,
                static_cast<int32_t>(op.num_inputs),
                static_cast<int32_t>(op.num_outputs),
                op.builtin_code,
                static_cast<uint32_t>(op.options_pos),
                op.options_type};
    const size_t io = op.num_inputs + op.num_outputs;
    Tensor** ptrs = static_cast<Tensor**>(AllocateTail(StateOf<Tensor*>(io + 1)));
    if (ptrs == nullptr)
      return Fail(Status::kOutOfMemory, "memory block of %u bytes is too small for operator %u",
                  static_cast<unsigned>(memory_size_), i);
    for (uint32_t k = 0; k < op.num_inputs; ++k) {
      const int32_t t = op.Input(k);
      ptrs[k] = t < 0 ? nullptr : &tensors_[t];
    }
    for (uint32_t k = 0; k < op.num_outputs; ++k) {
      Tensor* t = &tensors_[op.Output(k)];
      if (t->is_const)
        return Fail(Status::kInvalidModel, "operator %u (%s) writes constant tensor '%s'", i,
                    BuiltinOpName(op.builtin_code), t->name);
      ptrs[op.num_inputs + k] = t;
    }
    node.inputs = ptrs;
    node.outputs = ptrs + op.num_inputs;
    const OpOptions options = DecodeOptions(model_, op.options_type, op.options_pos);
    Context ctx(this, node, static_cast<int>(i), &options);
    const Status s = node.kernel->prepare(ctx);
    if (s != Status::kOk) {
      if (status_ == Status::kOk || error_[0] == '\0')
        Fail(s, "operator %u (%s): prepare failed", i, BuiltinOpName(op.builtin_code));
      return s;
    }
    node.op_data = ctx.op_data();
  }
  return Status::kOk;
}

// Tensor-level placement: each activation tensor gets its own bytes for its whole
// lifetime, first fit in order of decreasing size. The segment-level planner
// replaces this for models that carry a plan.
Status Interpreter::PlanActivations() {
  const uint32_t n = model_.num_tensors();
  const uint32_t ops = model_.num_operators();
  const uintptr_t base = AlignUp(reinterpret_cast<uintptr_t>(memory_), kPoolAlignment);
  const size_t head_room = base - reinterpret_cast<uintptr_t>(memory_);
  // Sizes and offsets are 64-bit: a tensor just under 2 GiB aligned to 16 must not wrap.
  const size_t scratch_bytes = (2 * sizeof(int64_t) + 3 * sizeof(int32_t)) * n;
  if (head_room > tail_ || scratch_bytes > tail_ - head_room)
    return Fail(Status::kOutOfMemory,
                "memory block of %u bytes is too small: %u bytes of runtime state leave no "
                "room to plan %u tensors",
                static_cast<unsigned>(memory_size_), static_cast<unsigned>(state_bytes_), n);
  // Scratch arrays live where the pool will be; the pool is not in use yet.
  int64_t* size = reinterpret_cast<int64_t*>(base);
  int64_t* offset = size + n;
  int32_t* first = reinterpret_cast<int32_t*>(offset + n);
  int32_t* last = first + n;
  int32_t* order = last + n;
  for (uint32_t i = 0; i < n; ++i) {
    first[i] = -1;
    last[i] = -1;
    offset[i] = -1;
    size[i] =
        tensors_[i].is_const ? 0 : static_cast<int64_t>(AlignUp(tensors_[i].bytes, kPoolAlignment));
  }
  for (uint32_t i = 0; i < model_.num_inputs(); ++i) {
    const int32_t t = model_.input_tensor(i);
    first[t] = 0;
    if (last[t] < 0) last[t] = 0;
  }
  for (uint32_t k = 0; k < ops; ++k) {
    const Node& node = nodes_[k];
    for (int32_t j = 0; j < node.num_inputs; ++j) {
      const Tensor* t = node.inputs[j];
      if (t == nullptr) continue;
      if (first[t->index] < 0) first[t->index] = static_cast<int32_t>(k);
      last[t->index] = static_cast<int32_t>(k);
    }
    for (int32_t j = 0; j < node.num_outputs; ++j) {
      const Tensor* t = node.outputs[j];
      if (first[t->index] < 0) first[t->index] = static_cast<int32_t>(k);
      if (last[t->index] < static_cast<int32_t>(k)) last[t->index] = static_cast<int32_t>(k);
    }
  }
  for (uint32_t i = 0; i < model_.num_outputs(); ++i) {
    const int32_t t = model_.output_tensor(i);
    if (first[t] < 0) first[t] = 0;
    last[t] = static_cast<int32_t>(ops);
  }
  uint32_t count = 0;
  for (uint32_t i = 0; i < n; ++i) {
    if (size[i] > 0 && first[i] >= 0) order[count++] = static_cast<int32_t>(i);
  }
  // Insertion sort by size descending, index ascending (deterministic).
  for (uint32_t a = 1; a < count; ++a) {
    const int32_t v = order[a];
    uint32_t b = a;
    while (b > 0 && size[order[b - 1]] < size[v]) {
      order[b] = order[b - 1];
      --b;
    }
    order[b] = v;
  }
  int64_t pool = 0;
  for (uint32_t a = 0; a < count; ++a) {
    const int32_t t = order[a];
    int64_t candidate = 0;
    bool moved = true;
    while (moved) {
      moved = false;
      for (uint32_t b = 0; b < a; ++b) {
        const int32_t p = order[b];
        if (last[p] < first[t] || last[t] < first[p]) continue;
        if (offset[p] + size[p] <= candidate || candidate + size[t] <= offset[p]) continue;
        candidate = offset[p] + size[p];
        moved = true;
      }
    }
    offset[t] = candidate;
    if (candidate + size[t] > pool) pool = candidate + size[t];
  }
  if (pool > 0x7fffffff)  // no block can hold it: say so at once, in MiB (no 32-bit wrap)
    return Fail(Status::kInvalidModel,
                "the model's activations need %u MiB at once, more than the 2048 MiB the runtime "
                "addresses",
                static_cast<unsigned>(pool >> 20));
  if (static_cast<uint64_t>(pool) > tail_ - head_room)
    return Fail(Status::kOutOfMemory,
                "memory block of %u bytes is too small: needs %u bytes (activation pool %u + "
                "runtime state %u)",
                static_cast<unsigned>(memory_size_),
                static_cast<unsigned>(head_room + pool + state_bytes_), static_cast<unsigned>(pool),
                static_cast<unsigned>(state_bytes_));
  // Read offsets before the pool (which overlaps the scratch arrays) is handed out.
  pool_ = reinterpret_cast<uint8_t*>(base);
  for (uint32_t i = 0; i < n; ++i) {
    if (offset[i] < 0) continue;
    tensors_[i].offset = static_cast<uint32_t>(offset[i]);
    tensors_[i].data = pool_ + offset[i];
  }
  pool_bytes_ = static_cast<size_t>(pool);
  return Status::kOk;
}

Status Interpreter::ReadPlanOpData(const uint8_t* plan, size_t plan_bytes) {
  PlanTables t;
  char why[sizeof(error_)];
  if (!ReadPlanTables(model_, plan, plan_bytes, &t, why, sizeof(why)))
    return Fail(Status::kInvalidModel, "%s", why);
  for (uint32_t i = 0; i < model_.num_operators(); ++i) {
    if (t.RunsOnTflmKernel(i))
      return Fail(Status::kInvalidModel,
                  "the memory plan leaves operator %u (%s) to TFLM's kernel: it is a plan for "
                  "TFLM + the tflm-vmcu plug-in (--target tflm-plugin)",
                  i, BuiltinOpName(model_.op(i).builtin_code));
  }
  plan_pool_ = t.pool_bytes;
  plan_offsets_ = t.offsets;
  plan_blocks_ = t.blocks;
  plan_num_blocks_ = t.num_blocks;
  plan_op_starts_ = t.op_starts;
  plan_op_data_ = t.op_data;
  plan_op_words_ = t.op_words;
  return Status::kOk;
}

namespace {

// The nodes of a candidate chain, for MakeBottleneck.
class NodeOps final : public BlockOpReader {
 public:
  NodeOps(const Model& model, const Node* nodes) : model_(model), nodes_(nodes) {}
  void Read(int32_t k, BlockOp* op, OpOptions* options) const override {
    const Node& node = nodes_[k];
    *options = DecodeOptions(model_, node.options_type, node.options_pos);
    *op = BlockOp{node.builtin_code, options,         node.inputs,
                  node.num_inputs,   node.outputs[0], node.op_data};
  }

 private:
  const Model& model_;
  const Node* nodes_;
};

}  // namespace

// The fused blocks of the plan: each must be consecutive operators forming an inverted
// bottleneck (MakeBottleneck), its inner tensors read by no other operator, and its
// workspace inside the pool.
Status Interpreter::ApplyBlocks(uint32_t pool) {
  const uint32_t ops = model_.num_operators();
  auto word = [&](size_t i) { return fb::LoadU32(plan_blocks_ + 4 * i); };
  constexpr size_t kBlockWords = kPlanBlockWords;
  uint32_t next_free = 0;  // blocks must be ordered and disjoint
  if (plan_num_blocks_ > 0) {
    blocks_ = static_cast<Bottleneck*>(AllocateTail(StateOf<Bottleneck>(plan_num_blocks_)));
    if (blocks_ == nullptr)
      return Fail(Status::kOutOfMemory, "memory block of %u bytes is too small for %u fused blocks",
                  static_cast<unsigned>(memory_size_), plan_num_blocks_);
  }
  BlockStage stages[kMaxChainStages];
  for (uint32_t k = 0; k < plan_num_blocks_; ++k) {
    const uint32_t first = word(kBlockWords * k);
    const uint32_t last = word(kBlockWords * k + 1);
    const uint32_t mode = word(kBlockWords * k + 2);
    const uint32_t ws_offset = word(kBlockWords * k + 3);
    const uint32_t ws_bytes = word(kBlockWords * k + 4);
    if (first < next_free || last <= first || last >= ops ||
        last - first >= static_cast<uint32_t>(kMaxBlockOps))
      return Fail(Status::kInvalidModel,
                  "the memory plan fuses operators %u..%u: not an ordered block of 2 to %d of "
                  "the %u operators",
                  first, last, kMaxBlockOps, ops);
    next_free = last + 1;
    Bottleneck b;
    char why[128];
    const NodeOps reader(model_, nodes_ + first);
    if (!MakeBottleneck(reader, static_cast<int32_t>(last - first + 1), pool, stages, &b, why,
                        sizeof(why)))
      return Fail(Status::kInvalidModel,
                  "the memory plan fuses operators %u..%u, which are not a chain of inverted "
                  "bottlenecks: %s",
                  first, last, why);
    // The stages live in runtime state, as the block does.
    b.stages =
        static_cast<BlockStage*>(AllocateTail(StateOf<BlockStage>(static_cast<size_t>(b.count))));
    if (b.stages == nullptr)
      return Fail(Status::kOutOfMemory, "memory block of %u bytes is too small for %u fused blocks",
                  static_cast<unsigned>(memory_size_), plan_num_blocks_);
    for (int32_t s = 0; s < b.count; ++s) b.stages[s] = stages[s];
    // Tensors produced inside the block (all but its output) never exist: nothing else
    // may read them.
    for (uint32_t j = first; j < last; ++j) {
      const Tensor* inner = nodes_[j].outputs[0];
      bool outside = false;
      for (uint32_t i = 0; i < model_.num_outputs(); ++i)
        outside |= model_.output_tensor(i) == inner->index;
      for (uint32_t o = 0; o < ops && !outside; ++o) {
        if (o >= first && o <= last) continue;
        for (int32_t q = 0; q < nodes_[o].num_inputs; ++q) outside |= nodes_[o].inputs[q] == inner;
      }
      if (outside)
        return Fail(Status::kInvalidModel,
                    "the memory plan fuses operators %u..%u, but tensor '%s' inside the block "
                    "is read outside it",
                    first, last, inner->name);
    }
    if (mode > 1)
      return Fail(Status::kInvalidModel,
                  "the memory plan runs the block at operators %u..%u in unknown mode %u", first,
                  last, mode);
    b.window = mode == 1;
    if (!PlaceWorkspace(&b, ws_offset, ws_bytes, pool,
                        static_cast<int32_t>(model_.num_tensors() + k), why, sizeof(why)))
      return Fail(Status::kInvalidModel, "the memory plan gives the block at operators %u..%u %s",
                  first, last, why);
    b.first_op = first;
    b.last_op = last;
    blocks_[k] = b;
  }
  return Status::kOk;
}

// True when tensor t is produced inside a fused block (and so has no bytes in the pool).
bool Interpreter::InsideBlock(const Tensor& t) const {
  for (uint32_t k = 0; k < plan_num_blocks_; ++k) {
    for (uint32_t j = blocks_[k].first_op; j < blocks_[k].last_op; ++j)
      if (nodes_[j].outputs[0] == &t) return true;
  }
  return false;
}

const int32_t* Interpreter::PlannedOpData(int op_index, uint32_t* words) const {
  *words = 0;
  if (plan_op_starts_ == nullptr) return nullptr;
  const uint32_t start = fb::LoadU32(plan_op_starts_ + 4 * static_cast<size_t>(op_index));
  if (start >= plan_op_words_) return nullptr;
  *words = plan_op_words_ - start;
  return reinterpret_cast<const int32_t*>(plan_op_data_) + start;
}

Status Interpreter::ApplyPlan() {
  const uint32_t n = model_.num_tensors();
  const uint32_t pool = plan_pool_;
  const uintptr_t base = AlignUp(reinterpret_cast<uintptr_t>(memory_), kPoolAlignment);
  const size_t head_room = base - reinterpret_cast<uintptr_t>(memory_);
  pool_ = reinterpret_cast<uint8_t*>(base);
  // Every tail allocation (the blocks' state) comes before the pool is checked against
  // the tail, so the pool can never overlap runtime state.
  const Status blocks = ApplyBlocks(pool);
  if (blocks != Status::kOk) return blocks;
  if (pool > 0x7fffffff || head_room > tail_ || pool > tail_ - head_room)
    return Fail(Status::kOutOfMemory,
                "memory block of %u bytes is too small: needs %u bytes (activation pool %u + "
                "runtime state %u)",
                static_cast<unsigned>(memory_size_),
                static_cast<unsigned>(head_room + pool + state_bytes_), pool,
                static_cast<unsigned>(state_bytes_));
  for (uint32_t i = 0; i < n; ++i) {
    Tensor& t = tensors_[i];
    const int32_t offset = static_cast<int32_t>(fb::LoadU32(plan_offsets_ + 4 * size_t{i}));
    if (t.is_const) continue;
    if (offset < 0 || static_cast<uint32_t>(offset) >= (pool == 0 ? 1 : pool) || t.bytes > pool) {
      if (offset < 0 && (t.bytes == 0 || InsideBlock(t))) continue;
      return Fail(Status::kInvalidModel,
                  "the memory plan puts tensor '%s' (%u bytes) at offset %d of a %u-byte pool",
                  t.name, static_cast<unsigned>(t.bytes), offset, pool);
    }
    t.offset = static_cast<uint32_t>(offset);
    t.data = pool_ + offset;
  }
  // Model inputs and outputs must be flat so callers can use Tensor::data directly.
  for (uint32_t k = 0; k < model_.num_inputs() + model_.num_outputs(); ++k) {
    const Tensor& t =
        tensors_[k < model_.num_inputs() ? model_.input_tensor(k)
                                         : model_.output_tensor(k - model_.num_inputs())];
    if (!t.is_const && t.offset + t.bytes > pool)
      return Fail(Status::kInvalidModel,
                  "the memory plan wraps model input/output '%s' around the pool end", t.name);
  }
  pool_bytes_ = pool;
  has_plan_ = true;
  return VerifyPlan();
}

Status Interpreter::Invoke() {
  if (!allocated_)
    return Fail(Status::kInvalidState, "Invoke() before a successful AllocateTensors()");
  if (hazard_ != nullptr) {
    for (uint32_t k = 0; k < model_.num_inputs(); ++k)
      hazard_->Tag(tensors_[model_.input_tensor(k)]);
  }
  uint32_t block = 0;  // next fused block
  for (uint32_t i = 0; i < model_.num_operators(); ++i) {
    Node& node = nodes_[i];
    // Options are decoded from the model (flash) again rather than kept in RAM.
    const OpOptions options = DecodeOptions(model_, node.options_type, node.options_pos);
    Context ctx(this, node, static_cast<int>(i), &options);
    if (hazard_ != nullptr) {
      hazard_->op = static_cast<int32_t>(i);
      ++hazard_->unit;
      hazard_->writing = false;
    }
    if (block < plan_num_blocks_ && blocks_[block].first_op == i) {
      EvalBottleneck(blocks_[block], pool_, static_cast<uint32_t>(pool_bytes_), hazard_);
      i = blocks_[block++].last_op;
      continue;
    }
    const Status s = node.kernel->eval(ctx);
    if (s != Status::kOk) return s;
  }
  // The caller reads the model outputs after the last operator: under the hazard checker,
  // each must still hold its own bytes (no later write overwrote it).
  if (hazard_ != nullptr) {
    hazard_->op = -1;
    ++hazard_->unit;
    hazard_->writing = false;
    for (uint32_t k = 0; k < model_.num_outputs(); ++k) {
      const Tensor& t = tensors_[model_.output_tensor(k)];
      if (!t.is_const && t.data != nullptr && t.bytes > 0)
        hazard_->OnRead(t, t.offset, 0, static_cast<uint32_t>(t.bytes));
    }
  }
  return Status::kOk;
}

}  // namespace tflm_vmcu

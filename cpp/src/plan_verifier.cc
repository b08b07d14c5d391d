// The plan verifier: before anything runs, proves that a memory plan read from the model is
// safe. Every two activation tensors live at the same time either share no pool byte or
// overlap only as the access order of the op that runs allows (access_order.h): the output
// of a step may start d bytes behind an input that dies at that step when d is at least the
// kernel's minimal displacement and the input does not wrap onto the output's start.
//
// A step is one operator, or one fused block (its operators run as one kernel: the block's
// input A dies and its output E is born at the block's last operator; its workspace is live
// only then and may overlap nothing). Cost: one pass over the steps, checking each new
// output against the tensors live at that step; access orders are walked only for pairs
// that actually overlap.
#include "plan_verifier.h"

#include <string.h>

#include "access_order.h"
#include "fnv.h"
#include "kernels/inverted_bottleneck.h"
#include "node.h"
#include "op_names.h"
#include "op_options.h"
#include "tflm_vmcu/interpreter.h"

namespace tflm_vmcu {

uint32_t PlanDigest(const Model& model) {
  Fnv f;
  f.Add(model.Digest());
  for (uint32_t i = 0; i < model.num_operators(); ++i) {
    const OperatorInfo op = model.op(i);
    const OpOptions o = DecodeOptions(model, op.options_type, op.options_pos);
    uint32_t beta;
    memcpy(&beta, &o.beta, 4);
    const uint32_t words[] = {op.options_type,
                              static_cast<uint32_t>(o.padding),
                              static_cast<uint32_t>(o.stride_w),
                              static_cast<uint32_t>(o.stride_h),
                              static_cast<uint32_t>(o.dilation_w),
                              static_cast<uint32_t>(o.dilation_h),
                              static_cast<uint32_t>(o.depth_multiplier),
                              static_cast<uint32_t>(o.filter_w),
                              static_cast<uint32_t>(o.filter_h),
                              static_cast<uint32_t>(o.activation),
                              static_cast<uint32_t>(o.axis),
                              beta,
                              o.keep_dims,
                              o.keep_num_dims,
                              o.weights_format};
    for (uint32_t w : words) f.Add(w);
    // A custom operator's options are its structure (a fused block's nested operators).
    for (uint32_t b = 0; b < op.custom_options_size; ++b) f.Add(op.custom_options[b]);
  }
  constexpr size_t kSmallConstant = 64;  // bytes: operand parameters, not weights
  for (uint32_t i = 0; i < model.num_tensors(); ++i) {
    const TensorInfo t = model.tensor(i);
    const bool integer = t.type == static_cast<uint8_t>(DType::kInt32) ||
                         t.type == static_cast<uint8_t>(DType::kInt64);
    if (t.data == nullptr || !integer || t.data_bytes > kSmallConstant) continue;
    f.Add(i);
    f.Add(static_cast<uint32_t>(t.data_bytes));
    for (size_t b = 0; b < t.data_bytes; ++b) f.Add(t.data[b]);
  }
  return f.h;
}

void Interpreter::set_verify_plan(bool verify) { verify_plan_ = verify; }

bool RingDisjoint(uint32_t a, size_t an, uint32_t b, size_t bn, uint32_t pool) {
  if (an == 0 || bn == 0) return true;
  const uint64_t d = (static_cast<uint64_t>(a) + pool - b) % pool;  // a relative to b
  return bn <= d && d + an <= pool;
}

uint32_t Displacement(const Tensor& in, const Tensor& out, uint32_t pool) {
  return static_cast<uint32_t>((static_cast<uint64_t>(in.offset) + pool - out.offset) % pool);
}

int64_t NeededDisplacement(const AccessOp& op, const Tensor* in, uint32_t d) {
  int64_t need = -1;
  for (int32_t p = 0; p < op.num_inputs; ++p) {
    if (op.inputs[p] != in) continue;
    const int64_t m = op.builtin_code == kOpReshape && d == 0 ? 0 : MinDisplacement(op, p);
    if (m < 0) return -1;
    if (m > need) need = m;
  }
  return need;
}

bool OverlapAllowed(const Tensor& in, uint32_t d, int64_t need, uint32_t pool) {
  return need >= 0 && d >= need && d + in.bytes <= pool;
}

#ifdef TFLM_VMCU_NO_PLAN_VERIFIER
Status Interpreter::VerifyPlan() { return Status::kOk; }
#else

Status Interpreter::VerifyPlan() {
  if (!verify_plan_) return Status::kOk;
  const uint32_t n = model_.num_tensors();
  const uint32_t ops = model_.num_operators();
  const uint32_t pool = static_cast<uint32_t>(pool_bytes_);
  // Lifetimes in steps (first and last step that touches each tensor), kept in the pool,
  // which is not in use yet.
  const size_t scratch = 2 * sizeof(int32_t) * n;
  const size_t room = tail_ - static_cast<size_t>(pool_ - memory_);
  if (scratch > room)
    return Fail(Status::kOutOfMemory,
                "memory block of %u bytes is too small to verify the memory plan: %u bytes of "
                "scratch for %u tensors, %u bytes free",
                static_cast<unsigned>(memory_size_), static_cast<unsigned>(scratch), n,
                static_cast<unsigned>(room));
  int32_t* first = reinterpret_cast<int32_t*>(pool_);
  int32_t* last = first + n;
  for (uint32_t i = 0; i < n; ++i) first[i] = last[i] = -1;
  auto touch = [&](const Tensor* t, int32_t step) {
    if (t == nullptr || t->is_const || t->data == nullptr || t->bytes == 0) return;
    if (first[t->index] < 0) first[t->index] = step;
    if (last[t->index] < step) last[t->index] = step;
  };
  for (uint32_t i = 0; i < model_.num_inputs(); ++i) touch(&tensors_[model_.input_tensor(i)], 0);
  // The fused block holding operator k (nullptr: none); `cursor` walks the ordered blocks.
  auto block_of = [&](uint32_t k, uint32_t* cursor) -> const Bottleneck* {
    while (*cursor < plan_num_blocks_ && blocks_[*cursor].last_op < k) ++*cursor;
    const bool inside = *cursor < plan_num_blocks_ && blocks_[*cursor].first_op <= k;
    return inside ? &blocks_[*cursor] : nullptr;
  };
  // A block's operators all run at its last operator's step.
  uint32_t cursor = 0;
  for (uint32_t k = 0; k < ops; ++k) {
    const Bottleneck* b = block_of(k, &cursor);
    const int32_t step = static_cast<int32_t>(b != nullptr ? b->last_op : k);
    const Node& node = nodes_[k];
    for (int32_t j = 0; j < node.num_inputs; ++j) touch(node.inputs[j], step);
    for (int32_t j = 0; j < node.num_outputs; ++j) touch(node.outputs[j], step);
  }
  for (uint32_t i = 0; i < model_.num_outputs(); ++i) {
    const Tensor* t = &tensors_[model_.output_tensor(i)];
    touch(t, 0);
    if (first[t->index] >= 0) last[t->index] = static_cast<int32_t>(ops);
  }
  auto live_at = [&](int32_t i, int32_t step) { return first[i] <= step && step <= last[i]; };

  // Model inputs are all live before the first operator: pairwise disjoint.
  for (uint32_t a = 0; a < model_.num_inputs(); ++a) {
    for (uint32_t b = 0; b < a; ++b) {
      const Tensor& x = tensors_[model_.input_tensor(a)];
      const Tensor& y = tensors_[model_.input_tensor(b)];
      if (&x == &y || x.data == nullptr || y.data == nullptr || x.is_const || y.is_const) continue;
      if (!RingDisjoint(x.offset, x.bytes, y.offset, y.bytes, pool))
        return Fail(Status::kInvalidModel,
                    "unsafe memory plan: model inputs %d (%u bytes at offset %u) and %d (%u bytes "
                    "at offset %u) overlap ('%s', '%s')",
                    x.index, static_cast<unsigned>(x.bytes), x.offset, y.index,
                    static_cast<unsigned>(y.bytes), y.offset, x.name, y.name);
    }
  }

  cursor = 0;
  for (uint32_t k = 0; k < ops; ++k) {
    const Bottleneck* b = block_of(k, &cursor);
    if (b != nullptr && b->last_op != k) continue;  // the block is checked at its end
    const Node& node = nodes_[k];
    const int32_t step = static_cast<int32_t>(k);
    const OpOptions options = DecodeOptions(model_, node.options_type, node.options_pos);
    const AccessOp access{node.builtin_code, &options, node.inputs, node.num_inputs, nullptr};
    const uint32_t first_op = b != nullptr ? b->first_op : k;
    const char* op_name = b != nullptr ? "fused block" : BuiltinOpName(node.builtin_code);
    if (b != nullptr) {
      const Tensor& ws = b->workspace;
      for (uint32_t i = 0; i < n; ++i) {
        const Tensor& t = tensors_[i];
        if (t.is_const || t.data == nullptr || !live_at(static_cast<int32_t>(i), step)) continue;
        if (!RingDisjoint(ws.offset, ws.bytes, t.offset, t.bytes, pool))
          return Fail(Status::kInvalidModel,
                      "unsafe memory plan at operators %u..%u (fused block): its workspace (%u "
                      "bytes at offset %u) overlaps live tensor %d (%u bytes at offset %u, '%s')",
                      first_op, k, static_cast<unsigned>(ws.bytes), ws.offset, t.index,
                      static_cast<unsigned>(t.bytes), t.offset, t.name);
      }
    }
    for (int32_t o = 0; o < node.num_outputs; ++o) {
      const Tensor& out = *node.outputs[o];
      if (out.data == nullptr || out.bytes == 0) continue;
      for (uint32_t i = 0; i < n; ++i) {
        const Tensor& in = tensors_[i];
        if (&in == &out || in.is_const || in.data == nullptr ||
            !live_at(static_cast<int32_t>(i), step))
          continue;
        if (RingDisjoint(in.offset, in.bytes, out.offset, out.bytes, pool)) continue;
        const uint32_t d = Displacement(in, out, pool);
        // Overlap is allowed only with an input that dies here, as the kernel's units allow
        // for every position it is read at, and without wrapping onto the output's start.
        const bool dies = o == 0 && last[i] == step && (b == nullptr || b->input == &in);
        int64_t need = -1;
        if (dies) {
          AccessOp a = access;
          a.output = &out;
          need = b != nullptr ? BlockMinDisplacement(*b) : NeededDisplacement(a, &in, d);
        }
        if (dies && OverlapAllowed(in, d, need, pool)) continue;
        if (!dies || need < 0)
          return Fail(
              Status::kInvalidModel,
              "unsafe memory plan at operator %u (%s): output tensor %d (%u bytes at offset "
              "%u) overlaps tensor %d (%u bytes at offset %u), which it may not overlap "
              "('%s' over '%s')",
              k, op_name, out.index, static_cast<unsigned>(out.bytes), out.offset, in.index,
              static_cast<unsigned>(in.bytes), in.offset, out.name, in.name);
        return Fail(Status::kInvalidModel,
                    "unsafe memory plan at operator %u (%s): output tensor %d (%u bytes at offset "
                    "%u) starts %u bytes behind input tensor %d (%u bytes at offset %u): the "
                    "kernel needs at least %d, without the input wrapping onto the output ('%s' "
                    "over '%s')",
                    k, op_name, out.index, static_cast<unsigned>(out.bytes), out.offset, d,
                    in.index, static_cast<unsigned>(in.bytes), in.offset, static_cast<int>(need),
                    out.name, in.name);
      }
    }
  }
  return Status::kOk;
}
#endif

}  // namespace tflm_vmcu

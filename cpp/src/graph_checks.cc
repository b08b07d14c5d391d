// Graph-level checks of a model, run once at AllocateTensors before any kernel is prepared:
// the operators form a graph the runtime can execute in file order. TFLM runs such graphs
// with tensors nobody wrote (reading uninitialised arena bytes); this runtime refuses them.
//
//   - the model has at least one operator;
//   - no model input is a constant tensor;
//   - every tensor an operator reads is a constant, a model input, or the output of an
//     earlier operator (not a later one: no cycles; not its own output);
//   - no operator writes a constant;
//   - every model output is written by an operator or is a model input.

#include "op_names.h"
#include "tflm_vmcu/interpreter.h"

namespace tflm_vmcu {

namespace {

// One bit per tensor, in scratch bytes the caller provides.
struct Bits {
  uint8_t* bytes;
  bool Get(uint32_t i) const { return (bytes[i >> 3] >> (i & 7)) & 1u; }
  void Set(uint32_t i) { bytes[i >> 3] = static_cast<uint8_t>(bytes[i >> 3] | (1u << (i & 7))); }
};

// Index of the first operator from `from` on that writes tensor t, or -1.
int64_t WriterFrom(const Model& model, uint32_t from, int32_t t) {
  for (uint32_t i = from; i < model.num_operators(); ++i) {
    const OperatorInfo op = model.op(i);
    for (uint32_t k = 0; k < op.num_outputs; ++k)
      if (op.Output(k) == t) return i;
  }
  return -1;
}

}  // namespace

Status Interpreter::CheckGraph() {
  const uint32_t n = model_.num_tensors();
  const uint32_t ops = model_.num_operators();
  if (ops == 0) return Fail(Status::kInvalidModel, "the model has no operators");
  for (uint32_t i = 0; i < model_.num_inputs(); ++i) {
    const Tensor& t = tensors_[model_.input_tensor(i)];
    if (t.is_const)
      return Fail(Status::kInvalidModel, "model input %u is constant tensor '%s'", i, t.name);
  }
  // Scratch: one bit per tensor at the start of the block, where the pool will be (it is
  // not in use yet; the tail holds the tensor structs).
  const size_t scratch = (static_cast<size_t>(n) + 7) / 8;
  if (scratch > tail_)
    return Fail(Status::kOutOfMemory,
                "memory block of %u bytes is too small: %u bytes of runtime state leave no "
                "room to check %u tensors",
                static_cast<unsigned>(memory_size_), static_cast<unsigned>(state_bytes_), n);
  Bits written{memory_};
  for (size_t i = 0; i < scratch; ++i) written.bytes[i] = 0;
  for (uint32_t i = 0; i < model_.num_inputs(); ++i)
    written.Set(static_cast<uint32_t>(model_.input_tensor(i)));

  for (uint32_t i = 0; i < ops; ++i) {
    const OperatorInfo op = model_.op(i);
    const char* name = BuiltinOpName(op.builtin_code);
    for (uint32_t k = 0; k < op.num_inputs; ++k) {
      const int32_t t = op.Input(k);
      if (t < 0 || tensors_[t].is_const || written.Get(static_cast<uint32_t>(t))) continue;
      for (uint32_t j = 0; j < op.num_outputs; ++j) {
        if (op.Output(j) == t)
          return Fail(Status::kInvalidModel, "operator %u (%s) input %u: reads its own output '%s'",
                      i, name, k, tensors_[t].name);
      }
      const int64_t later = WriterFrom(model_, i + 1, t);
      if (later >= 0)
        return Fail(Status::kInvalidModel,
                    "operator %u (%s) input %u: tensor '%s' is written later, by operator %u "
                    "(%s) (operators must be in execution order, without cycles)",
                    i, name, k, tensors_[t].name, static_cast<unsigned>(later),
                    BuiltinOpName(model_.op(static_cast<uint32_t>(later)).builtin_code));
      return Fail(Status::kInvalidModel,
                  "operator %u (%s) input %u: tensor '%s' has no data (empty buffer), is not a "
                  "model input and no operator writes it",
                  i, name, k, tensors_[t].name);
    }
    for (uint32_t k = 0; k < op.num_outputs; ++k) {
      const int32_t t = op.Output(k);
      if (tensors_[t].is_const)
        return Fail(Status::kInvalidModel, "operator %u (%s) writes constant tensor '%s'", i, name,
                    tensors_[t].name);
      written.Set(static_cast<uint32_t>(t));
    }
  }

  for (uint32_t i = 0; i < model_.num_outputs(); ++i) {
    const int32_t t = model_.output_tensor(i);
    if (!written.Get(static_cast<uint32_t>(t)) || tensors_[t].is_const)
      return Fail(Status::kInvalidModel,
                  "model output %u '%s' is written by no operator and is not a model input", i,
                  tensors_[t].name);
  }
  return Status::kOk;
}

}  // namespace tflm_vmcu

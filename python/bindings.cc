// pybind11 module tflm_vmcu._runtime: the C++ interpreter for the Python package.
// Thin by design: the Python layer (tflm_vmcu/interpreter.py) turns statuses into
// exceptions and shapes the tf.lite-style API.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "access_order.h"
#include "kernels/inverted_bottleneck.h"
#include "plan_verifier.h"
#include "ring.h"
#include "tflm_vmcu/interpreter.h"

namespace py = pybind11;
using tflm_vmcu::Interpreter;
using tflm_vmcu::Status;
using tflm_vmcu::Tensor;

namespace {

// Owns aligned copies of the model and the memory block the interpreter runs in.
class Runtime {
 public:
  Runtime(py::bytes model, size_t memory_bytes, bool verify_plan) {
    const std::string bytes = model;
    model_size_ = bytes.size();
    model_.resize(bytes.size() / 8 + 1);
    std::memcpy(model_.data(), bytes.data(), bytes.size());
    // The block sits between two guard zones so tests can prove the runtime never
    // writes outside the memory it was given.
    memory_.resize((memory_bytes + 2 * kGuardBytes) / 8 + 1);
    memory_size_ = memory_bytes;
    std::memset(memory_.data(), kGuardByte, memory_.size() * 8);
    interp_ = std::make_unique<Interpreter>(reinterpret_cast<const uint8_t*>(model_.data()),
                                            model_size_, Block(), memory_size_);
    interp_->set_verify_plan(verify_plan);
  }

  int Allocate() { return static_cast<int>(interp_->AllocateTensors()); }

  // Runs every later Invoke under the hazard checker (after a successful Allocate).
  void EnableHazardCheck() {
    const size_t n = interp_->pool_bytes();
    tags_tensor_.assign(n, -1);
    tags_element_.assign(n, -1);
    pins_.assign(n, 0);
    hazard_ = tflm_vmcu::HazardState();
    hazard_.tensor = tags_tensor_.data();
    hazard_.element = tags_element_.data();
    hazard_.pin = pins_.data();
    hazard_.pool_size = static_cast<uint32_t>(n);
    interp_->set_hazard_state(&hazard_);
  }
  unsigned HazardCount() const { return hazard_.count; }
  std::string HazardMessage() const { return hazard_.first; }
  bool HasPlan() const { return interp_->has_plan(); }
  size_t FusedBlocks() const { return interp_->fused_blocks(); }
  int Invoke() { return static_cast<int>(interp_->Invoke()); }
  std::string Error() const { return interp_->error_message(); }

  std::vector<int> Inputs() const { return Indices(true); }
  std::vector<int> Outputs() const { return Indices(false); }

  py::dict TensorDetails(size_t i) const {
    const Tensor* t = Get(i);
    py::dict d;
    d["index"] = t->index;
    d["name"] = std::string(t->name);
    d["shape"] = std::vector<int>(t->shape.dims, t->shape.dims + t->shape.rank);
    d["type"] = static_cast<int>(t->type);
    d["scale"] = t->scale;
    d["zero_point"] = t->zero_point;
    d["bytes"] = t->bytes;
    d["is_const"] = t->is_const;
    // Activations: where byte 0 lives in the ring pool (-1: no bytes in the pool).
    d["ring_offset"] = t->is_const || t->data == nullptr ? -1 : static_cast<long long>(t->offset);
    d["offset"] =
        t->is_const || t->data == nullptr
            ? -1
            : static_cast<long long>(t->data - reinterpret_cast<const uint8_t*>(memory_.data()) -
                                     static_cast<long long>(kGuardBytes));
    return d;
  }

  // Tensor bytes go through the ring: an intermediate the plan wraps around the pool end
  // is copied in two parts, never past the pool.
  py::bytes GetBytes(size_t i) const {
    const Tensor* t = Get(i);
    std::string out(t->bytes, '\0');
    if (interp_->ReadTensor(i, out.data(), out.size()) != Status::kOk)
      throw py::value_error(interp_->error_message());
    return py::bytes(out);
  }

  void SetBytes(size_t i, py::buffer data) {
    const py::buffer_info info = data.request();
    const size_t n = static_cast<size_t>(info.size * info.itemsize);
    if (interp_->WriteTensor(i, info.ptr, n) != Status::kOk)
      throw py::value_error(interp_->error_message());
  }

  // True while every byte outside the caller's block still holds the guard pattern.
  bool GuardsIntact() const {
    const uint8_t* all = reinterpret_cast<const uint8_t*>(memory_.data());
    const size_t total = memory_.size() * 8;
    for (size_t i = 0; i < total; ++i) {
      if (i >= kGuardBytes && i < kGuardBytes + memory_size_) continue;
      if (all[i] != kGuardByte) return false;
    }
    return true;
  }

  size_t PoolBytes() const { return interp_->pool_bytes(); }
  size_t StateBytes() const { return interp_->state_bytes(); }
  size_t Arm32StateBytes() const { return interp_->arm32_state_bytes(); }
  size_t NumTensors() const { return interp_->tensors_size(); }
  std::vector<int> OpCodes() const {
    std::vector<int> codes;
    for (size_t i = 0; i < interp_->operators_size(); ++i) codes.push_back(interp_->op_code(i));
    return codes;
  }

 private:
  const Tensor* Get(size_t i) const {
    const Tensor* t = interp_->tensor(i);
    if (t == nullptr) throw py::index_error("tensor index out of range or not allocated");
    return t;
  }
  std::vector<int> Indices(bool inputs) const {
    std::vector<int> out;
    const size_t n = inputs ? interp_->inputs_size() : interp_->outputs_size();
    for (size_t i = 0; i < n; ++i) {
      Tensor* t = inputs ? interp_->input(i) : interp_->output(i);
      out.push_back(t != nullptr ? t->index : -1);
    }
    return out;
  }

  static constexpr size_t kGuardBytes = 64;
  static constexpr uint8_t kGuardByte = 0xA5;

  uint8_t* Block() { return reinterpret_cast<uint8_t*>(memory_.data()) + kGuardBytes; }

  std::vector<uint64_t> model_;
  size_t model_size_ = 0;
  std::vector<uint64_t> memory_;
  size_t memory_size_ = 0;
  std::unique_ptr<Interpreter> interp_;
  tflm_vmcu::HazardState hazard_;
  std::vector<int32_t> tags_tensor_;
  std::vector<int32_t> tags_element_;
  std::vector<uint32_t> pins_;
};

// "" when the runtime accepts the model (everything AllocateTensors checks but the pool
// size), else its one-line error. Runs in a scratch block large enough for any model's
// runtime state.
std::string CheckModel(py::bytes model) {
  const std::string bytes = model;
  std::vector<uint64_t> aligned(bytes.size() / 8 + 1);
  std::memcpy(aligned.data(), bytes.data(), bytes.size());
  constexpr size_t kStateBytes = size_t{16} << 20;
  std::vector<uint64_t> memory(kStateBytes / 8);
  Interpreter interp(reinterpret_cast<const uint8_t*>(aligned.data()), bytes.size(),
                     reinterpret_cast<uint8_t*>(memory.data()), kStateBytes);
  return interp.CheckModel() == Status::kOk ? std::string() : interp.error_message();
}

// The digest a plan for this model records (PlanDigest in cpp/src/plan_verifier.h).
uint32_t PlanDigest(py::bytes model) {
  const std::string bytes = model;
  std::vector<uint64_t> aligned(bytes.size() / 8 + 1);
  std::memcpy(aligned.data(), bytes.data(), bytes.size());
  tflm_vmcu::Model m;
  char error[256];
  if (m.Init(reinterpret_cast<const uint8_t*>(aligned.data()), bytes.size(), error,
             sizeof(error)) != Status::kOk)
    throw py::value_error(error);
  return tflm_vmcu::PlanDigest(m);
}

// The access-order models (cpp/src/access_order.h) for the compiler's planner: one op given
// as its builtin code, options and operands. An operand is None (omitted) or
// (shape, tflite type code, constant data or None).
int64_t MinDisplacement(int32_t code, const py::dict& options, const py::list& inputs,
                        const py::tuple& output, int32_t pos, bool tflm_reference) {
  auto opt = [&](const char* key, int32_t def) {
    return options.contains(key) ? options[key].cast<int32_t>() : def;
  };
  tflm_vmcu::OpOptions o;
  o.stride_h = opt("stride_h", 0);
  o.stride_w = opt("stride_w", 0);
  o.dilation_h = opt("dilation_h_factor", 1);
  o.dilation_w = opt("dilation_w_factor", 1);
  o.depth_multiplier = opt("depth_multiplier", 1);
  o.filter_h = opt("filter_height", 0);
  o.filter_w = opt("filter_width", 0);
  o.axis = opt("axis", 0);
  std::vector<Tensor> tensors(inputs.size() + 1);
  std::vector<std::string> data(inputs.size());
  std::vector<const Tensor*> ptrs(inputs.size(), nullptr);
  auto fill = [](Tensor* t, const py::handle& spec, std::string* bytes) {
    const py::tuple s = spec.cast<py::tuple>();
    const std::vector<int64_t> shape = s[0].cast<std::vector<int64_t>>();
    if (shape.size() > static_cast<size_t>(tflm_vmcu::kMaxRank))
      throw py::value_error("rank above 6");
    t->shape.rank = static_cast<int32_t>(shape.size());
    for (size_t i = 0; i < shape.size(); ++i) {
      if (shape[i] < 0 || shape[i] > INT32_MAX) throw py::value_error("bad dimension");
      t->shape.dims[i] = static_cast<int32_t>(shape[i]);
    }
    const uint8_t type = s[1].cast<uint8_t>();
    t->type = static_cast<tflm_vmcu::DType>(type);
    t->bytes = static_cast<size_t>(t->shape.FlatSize()) * tflm_vmcu::DTypeSize(type);
    if (s.size() > 2 && !s[2].is_none()) {
      *bytes = s[2].cast<std::string>();
      t->is_const = true;
      t->data = reinterpret_cast<uint8_t*>(bytes->data());
      t->bytes = bytes->size();
    }
  };
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].is_none()) continue;
    fill(&tensors[i], inputs[i], &data[i]);
    ptrs[i] = &tensors[i];
  }
  std::string unused;
  fill(&tensors.back(), output, &unused);
  tflm_vmcu::AccessOp op;
  op.builtin_code = code;
  op.options = &o;
  op.inputs = ptrs.data();
  op.num_inputs = static_cast<int32_t>(ptrs.size());
  op.output = &tensors.back();
  py::gil_scoped_release release;
  return tflm_vmcu::MinDisplacement(op, pos,
                                    tflm_reference ? tflm_vmcu::KernelLibrary::kTflmReference
                                                   : tflm_vmcu::KernelLibrary::kRuntime);
}

// A chain's stages (tflm_vmcu.access.block_geometry dicts) as the kernel's geometry.
int32_t Geometries(const py::list& stages, tflm_vmcu::BlockGeometry* out) {
  const int32_t n = static_cast<int32_t>(stages.size());
  if (n < 1 || n > tflm_vmcu::kMaxChainStages) return 0;
  for (int32_t s = 0; s < n; ++s) {
    const py::dict g = stages[static_cast<size_t>(s)].cast<py::dict>();
    auto get = [&](const char* key) { return g[key].cast<int32_t>(); };
    tflm_vmcu::BlockGeometry& b = out[s];
    b.in_h = get("in_h");
    b.in_w = get("in_w");
    b.in_c = get("in_c");
    b.mid_h = get("mid_h");
    b.mid_w = get("mid_w");
    b.mid_c = get("mid_c");
    b.kernel_h = get("kernel_h");
    b.kernel_w = get("kernel_w");
    b.stride_h = get("stride_h");
    b.stride_w = get("stride_w");
    b.pad_h = get("pad_h");
    b.pad_w = get("pad_w");
    b.expand_kernel_h = get("expand_kernel_h");
    b.expand_kernel_w = get("expand_kernel_w");
    b.expand_stride_h = get("expand_stride_h");
    b.expand_stride_w = get("expand_stride_w");
    b.expand_pad_h = get("expand_pad_h");
    b.expand_pad_w = get("expand_pad_w");
    b.out_h = get("out_h");
    b.out_w = get("out_w");
    b.out_c = get("out_c");
    b.residual = g["residual"].cast<bool>();
    b.window = g["window"].cast<bool>();
  }
  return n;
}

int64_t BlockMinDisplacement(const py::list& stages) {
  tflm_vmcu::BlockGeometry g[tflm_vmcu::kMaxChainStages];
  const int32_t n = Geometries(stages, g);
  return n == 0 ? tflm_vmcu::kNoOverlap : tflm_vmcu::BlockMinDisplacement(g, n);
}

// Workspace bytes of the chain; -1 for a malformed one.
int64_t ChainWorkspaceBytes(const py::list& stages) {
  tflm_vmcu::BlockGeometry g[tflm_vmcu::kMaxChainStages];
  const int32_t n = Geometries(stages, g);
  const uint32_t bytes = n == 0 ? 0xffffffffu : tflm_vmcu::ChainWorkspaceBytes(g, n);
  return bytes == 0xffffffffu ? -1 : int64_t{bytes};
}

}  // namespace

PYBIND11_MODULE(_runtime, m) {
  m.doc() = "tflm-vmcu C++ runtime";
  py::class_<Runtime>(m, "Runtime")
      .def(py::init<py::bytes, size_t, bool>(), py::arg("model"), py::arg("memory_bytes"),
           py::arg("verify_plan") = true)
      .def("allocate", &Runtime::Allocate)
      .def("invoke", &Runtime::Invoke, py::call_guard<py::gil_scoped_release>())
      .def("error", &Runtime::Error)
      .def("inputs", &Runtime::Inputs)
      .def("outputs", &Runtime::Outputs)
      .def("tensor_details", &Runtime::TensorDetails)
      .def("get_bytes", &Runtime::GetBytes)
      .def("set_bytes", &Runtime::SetBytes)
      .def("pool_bytes", &Runtime::PoolBytes)
      .def("state_bytes", &Runtime::StateBytes)
      .def("arm32_state_bytes", &Runtime::Arm32StateBytes)
      .def("num_tensors", &Runtime::NumTensors)
      .def("op_codes", &Runtime::OpCodes)
      .def("guards_intact", &Runtime::GuardsIntact)
      .def("enable_hazard_check", &Runtime::EnableHazardCheck)
      .def("hazard_count", &Runtime::HazardCount)
      .def("hazard_message", &Runtime::HazardMessage)
      .def("has_plan", &Runtime::HasPlan)
      .def("fused_blocks", &Runtime::FusedBlocks);
  m.def("min_displacement", &MinDisplacement, py::arg("code"), py::arg("options"),
        py::arg("inputs"), py::arg("output"), py::arg("pos"), py::arg("tflm_reference") = false);
  m.def("block_min_displacement", &BlockMinDisplacement, py::arg("stages"));
  m.def("chain_workspace_bytes", &ChainWorkspaceBytes, py::arg("stages"));
  m.def("plan_digest", &PlanDigest, py::arg("model"));
  m.def("check_model", &CheckModel, py::arg("model"));
  m.def("is_op_supported", &tflm_vmcu::IsOpSupported, py::arg("builtin_code"));
}

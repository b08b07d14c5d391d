#include "tflm_vmcu/model.h"

#include "flatbuffer.h"
#include "fnv.h"
#include "format.h"

namespace tflm_vmcu {
namespace {

// Field ids of the tflite schema (schema.fbs), in declaration order.
namespace model_f {
enum { kVersion = 0, kOperatorCodes = 1, kSubgraphs = 2, kBuffers = 4, kMetadata = 6 };
}
namespace opcode_f {
enum { kDeprecatedBuiltinCode = 0, kCustomCode = 1, kBuiltinCode = 3 };
}
namespace subgraph_f {
enum { kTensors = 0, kInputs = 1, kOutputs = 2, kOperators = 3 };
}
namespace tensor_f {
enum {
  kShape = 0,
  kType = 1,
  kBuffer = 2,
  kName = 3,
  kQuantization = 4,
  kIsVariable = 5,
  kSparsity = 6
};
}
namespace quant_f {
enum { kScale = 2, kZeroPoint = 3, kQuantizedDimension = 6 };
}
namespace op_f {
enum {
  kOpcodeIndex = 0,
  kInputs = 1,
  kOutputs = 2,
  kBuiltinOptionsType = 3,
  kBuiltinOptions = 4,
  kCustomOptions = 5
};
}
namespace buffer_f {
enum { kData = 0, kOffset = 1, kSize = 2 };
}
namespace metadata_f {
enum { kName = 0, kBuffer = 1 };
}

constexpr int32_t kMaxDim = 1 << 24;

bool StrEq(const char* a, const char* b) {
  while (*a != '\0' && *a == *b) {
    ++a;
    ++b;
  }
  return *a == *b;
}

// Position of element i of a vector of tables.
fb::Table TableAt(const fb::Buffer& buf, size_t first, uint32_t i) {
  fb::Vector v;
  v.buf = buf;
  v.pos = first;
  v.length = i + 1;
  fb::Table t;
  fb::Table::Element(v, i, &t);
  return t;
}

// Data of buffer `index`: inline vector or (offset, size) into the file.
bool BufferData(const fb::Buffer& buf, const fb::Table& b, const uint8_t** data, size_t* bytes) {
  bool ok = true;
  fb::Vector v;
  if (!b.GetVector(buffer_f::kData, 1, &v)) return false;
  *data = nullptr;
  *bytes = 0;
  if (v.present && v.length > 0) {
    *data = v.Bytes();
    *bytes = v.length;
    return true;
  }
  const uint64_t offset = b.Scalar<uint64_t>(buffer_f::kOffset, 0, &ok);
  const uint64_t size = b.Scalar<uint64_t>(buffer_f::kSize, 0, &ok);
  if (!ok) return false;
  if (offset > 1) {
    if (offset > buf.size || size > buf.size - offset) return false;
    *data = buf.data + offset;
    *bytes = static_cast<size_t>(size);
  }
  return true;
}

// Validates operator table `i` of `operators` (`what`: "operator" or "nested operator")
// against the model's operator code and tensor counts.
bool CheckOperator(const fb::Vector& operators, uint32_t i, const char* what, uint32_t num_opcodes,
                   uint32_t num_tensors, char* error, size_t error_size) {
  fb::Table t, options;
  fb::Vector in, out, custom;
  bool ok = true;
  if (!fb::Table::Element(operators, i, &t) || !t.GetVector(op_f::kInputs, 4, &in) ||
      !t.GetVector(op_f::kOutputs, 4, &out) || !t.SubTable(op_f::kBuiltinOptions, &options) ||
      !t.GetVector(op_f::kCustomOptions, 1, &custom)) {
    Format(error, error_size, "corrupt model: %s %u is out of bounds", what, i);
    return false;
  }
  const uint32_t opcode = t.Scalar<uint32_t>(op_f::kOpcodeIndex, 0, &ok);
  t.Scalar<uint8_t>(op_f::kBuiltinOptionsType, 0, &ok);
  if (!ok || opcode >= num_opcodes) {
    Format(error, error_size, "corrupt model: %s %u names operator code %u of %u", what, i, opcode,
           num_opcodes);
    return false;
  }
  const fb::Vector* op_io[2] = {&in, &out};
  for (const fb::Vector* io : op_io) {
    for (uint32_t k = 0; k < io->length; ++k) {
      const int32_t idx = io->Int32(k);
      if (idx < -1 || idx >= static_cast<int32_t>(num_tensors) || (idx == -1 && io == &out)) {
        Format(error, error_size, "corrupt model: %s %u %s %u names tensor %d of %u", what, i,
               io == &in ? "input" : "output", k, idx, num_tensors);
        return false;
      }
    }
  }
  return true;
}

// The operator of table `t`; operator codes from the model's vector at `opcodes_pos`.
OperatorInfo ReadOperator(const fb::Buffer& buf, size_t opcodes_pos, const fb::Table& t) {
  bool ok = true;
  OperatorInfo info;
  const uint32_t opcode = t.Scalar<uint32_t>(op_f::kOpcodeIndex, 0, &ok);
  const fb::Table code = TableAt(buf, opcodes_pos, opcode);
  const int32_t deprecated = code.Scalar<int8_t>(opcode_f::kDeprecatedBuiltinCode, 0, &ok);
  const int32_t builtin = code.Scalar<int32_t>(opcode_f::kBuiltinCode, 0, &ok);
  // Schema rule: the real code is the larger of the two fields.
  info.builtin_code = builtin > deprecated ? builtin : deprecated;
  uint32_t len;
  code.String(opcode_f::kCustomCode, &info.custom_code, &len);
  if (info.builtin_code == 32 /* CUSTOM */) info.builtin_code = -1;
  fb::Vector in, out, custom;
  t.GetVector(op_f::kInputs, 4, &in);
  t.GetVector(op_f::kOutputs, 4, &out);
  t.GetVector(op_f::kCustomOptions, 1, &custom);
  info.num_inputs = in.length;
  info.num_outputs = out.length;
  info.inputs = in.Bytes();
  info.outputs = out.Bytes();
  if (custom.present) {
    info.custom_options = custom.Bytes();
    info.custom_options_size = custom.length;
  }
  info.options_type = t.Scalar<uint8_t>(op_f::kBuiltinOptionsType, 0, &ok);
  size_t options = 0;
  t.Follow(op_f::kBuiltinOptions, &options);
  info.options_pos = options;
  return info;
}

}  // namespace

bool IsFusedBlockOperator(const OperatorInfo& op) {
  return op.builtin_code < 0 && StrEq(op.custom_code, kFusedBlockCustomCode);
}

int32_t OperatorInfo::Input(uint32_t i) const {
  return static_cast<int32_t>(fb::LoadU32(inputs + 4 * static_cast<size_t>(i)));
}
int32_t OperatorInfo::Output(uint32_t i) const {
  return static_cast<int32_t>(fb::LoadU32(outputs + 4 * static_cast<size_t>(i)));
}

Status Model::Init(const uint8_t* bytes, size_t size, char* error, size_t error_size) {
  *this = Model();
#define TFLM_VMCU_BAD(...)                  \
  do {                                      \
    Format(error, error_size, __VA_ARGS__); \
    return Status::kInvalidModel;           \
  } while (0)

  if (bytes == nullptr || size < 16)
    TFLM_VMCU_BAD("model is %u bytes: too small to be a .tflite", static_cast<unsigned>(size));
  if (size > 0x7fffffff) TFLM_VMCU_BAD("model larger than 2 GiB");
  if (!(bytes[4] == 'T' && bytes[5] == 'F' && bytes[6] == 'L' && bytes[7] == '3'))
    TFLM_VMCU_BAD("not a .tflite model (file identifier is not 'TFL3')");
  const fb::Buffer buf{bytes, size};
  fb::Table root;
  if (!fb::Table::Root(buf, &root)) TFLM_VMCU_BAD("corrupt model: bad root table");
  bool ok = true;
  const uint32_t version = root.Scalar<uint32_t>(model_f::kVersion, 0, &ok);
  if (!ok) TFLM_VMCU_BAD("corrupt model: bad version field");
  if (version != 3) TFLM_VMCU_BAD("unsupported schema version %u (expected 3)", version);

  fb::Vector opcodes, subgraphs, buffers, metadata;
  if (!root.GetVector(model_f::kOperatorCodes, 4, &opcodes) ||
      !root.GetVector(model_f::kSubgraphs, 4, &subgraphs) ||
      !root.GetVector(model_f::kBuffers, 4, &buffers) ||
      !root.GetVector(model_f::kMetadata, 4, &metadata))
    TFLM_VMCU_BAD("corrupt model: a top-level vector is out of bounds");
  if (subgraphs.length == 0) TFLM_VMCU_BAD("model has no subgraph");
  for (uint32_t i = 0; i < opcodes.length; ++i) {
    fb::Table t;
    const char* s;
    uint32_t n;
    if (!fb::Table::Element(opcodes, i, &t) || !t.String(opcode_f::kCustomCode, &s, &n))
      TFLM_VMCU_BAD("corrupt model: operator code %u", i);
    t.Scalar<int8_t>(opcode_f::kDeprecatedBuiltinCode, 0, &ok);
    t.Scalar<int32_t>(opcode_f::kBuiltinCode, 0, &ok);
    if (!ok) TFLM_VMCU_BAD("corrupt model: operator code %u", i);
  }
  for (uint32_t i = 0; i < buffers.length; ++i) {
    fb::Table t;
    const uint8_t* d;
    size_t n;
    if (!fb::Table::Element(buffers, i, &t) || !BufferData(buf, t, &d, &n))
      TFLM_VMCU_BAD("corrupt model: buffer %u is out of bounds", i);
  }
  for (uint32_t i = 0; i < metadata.length; ++i) {
    fb::Table t;
    const char* s;
    uint32_t n;
    if (!fb::Table::Element(metadata, i, &t) || !t.String(metadata_f::kName, &s, &n))
      TFLM_VMCU_BAD("corrupt model: metadata entry %u", i);
    if (t.Scalar<uint32_t>(metadata_f::kBuffer, 0, &ok) >= buffers.length || !ok)
      TFLM_VMCU_BAD("corrupt model: metadata '%s' names a missing buffer", s);
  }

  fb::Table sg;
  fb::Vector tensors, inputs, outputs, operators;
  if (!fb::Table::Element(subgraphs, 0, &sg) || !sg.GetVector(subgraph_f::kTensors, 4, &tensors) ||
      !sg.GetVector(subgraph_f::kInputs, 4, &inputs) ||
      !sg.GetVector(subgraph_f::kOutputs, 4, &outputs) ||
      !sg.GetVector(subgraph_f::kOperators, 4, &operators))
    TFLM_VMCU_BAD("corrupt model: subgraph 0 is out of bounds");

  for (uint32_t i = 0; i < tensors.length; ++i) {
    fb::Table t, q;
    fb::Vector shape, scale, zp;
    const char* name;
    uint32_t name_len;
    if (!fb::Table::Element(tensors, i, &t) || !t.GetVector(tensor_f::kShape, 4, &shape) ||
        !t.String(tensor_f::kName, &name, &name_len) || !t.SubTable(tensor_f::kQuantization, &q))
      TFLM_VMCU_BAD("corrupt model: tensor %u is out of bounds", i);
    const uint32_t buffer = t.Scalar<uint32_t>(tensor_f::kBuffer, 0, &ok);
    t.Scalar<int8_t>(tensor_f::kType, 0, &ok);
    t.Scalar<uint8_t>(tensor_f::kIsVariable, 0, &ok);
    if (!ok) TFLM_VMCU_BAD("corrupt model: tensor %u has a malformed field", i);
    if (buffer >= buffers.length && !(buffer == 0 && buffers.length == 0))
      TFLM_VMCU_BAD("corrupt model: tensor '%s' names buffer %u of %u", name, buffer,
                    buffers.length);
    if (buffer < buffers.length) {
      fb::Table b;
      fb::Table::Element(buffers, buffer, &b);  // validated with the buffers above
      // Schema: offset > 1 places the data in the file after the flatbuffer (models over
      // 2 GiB); the reader does not follow it for tensors.
      if (b.Scalar<uint64_t>(buffer_f::kOffset, 0, &ok) > 1)
        TFLM_VMCU_BAD(
            "tensor '%s' stores its data outside the flatbuffer (buffer offset/size): "
            "unsupported",
            name);
    }
    if (shape.length > static_cast<uint32_t>(kMaxRank))
      TFLM_VMCU_BAD("tensor '%s' has rank %u; at most %d is supported", name, shape.length,
                    kMaxRank);
    // Kernels multiply runs of dimensions in int32. An empty tensor's other dimensions must
    // multiply within 2 GiB too (bytes, zero dimensions left out), as a nonempty one's do.
    const size_t elem = DTypeSize(static_cast<uint8_t>(t.Scalar<int8_t>(tensor_f::kType, 0, &ok)));
    int64_t nonzero_bytes = elem == 0 ? 1 : static_cast<int64_t>(elem);
    for (uint32_t d = 0; d < shape.length; ++d) {
      const int32_t dim = shape.Int32(d);
      if (dim < 0 || dim > kMaxDim)
        TFLM_VMCU_BAD("tensor '%s' has dimension %d = %d (dynamic or out of range)", name, d, dim);
      if (dim > 0) nonzero_bytes *= dim;  // at most 2^31 * 2^24 before the test below
      if (nonzero_bytes > 0x7fffffff) TFLM_VMCU_BAD("tensor '%s' is larger than 2 GiB", name);
    }
    fb::Table sparsity;
    if (!t.SubTable(tensor_f::kSparsity, &sparsity))
      TFLM_VMCU_BAD("corrupt model: tensor '%s' sparsity", name);
    if (sparsity.valid()) TFLM_VMCU_BAD("tensor '%s' is sparse: unsupported", name);
    if (q.valid()) {
      if (!q.GetVector(quant_f::kScale, 4, &scale) || !q.GetVector(quant_f::kZeroPoint, 8, &zp))
        TFLM_VMCU_BAD("corrupt model: tensor '%s' quantization is out of bounds", name);
      q.Scalar<int32_t>(quant_f::kQuantizedDimension, 0, &ok);
      if (!ok || (zp.length != 0 && zp.length != scale.length))
        TFLM_VMCU_BAD("corrupt model: tensor '%s' has %u scales but %u zero points", name,
                      scale.length, zp.length);
      // Per-channel counts are checked against the op's channel count by each kernel;
      // converters write an arbitrary quantized_dimension on 1-D bias tensors.
    }
  }

  const fb::Vector* subgraph_io[2] = {&inputs, &outputs};
  for (const fb::Vector* io : subgraph_io) {
    for (uint32_t i = 0; i < io->length; ++i) {
      const int32_t t = io->Int32(i);
      if (t < 0 || static_cast<uint32_t>(t) >= tensors.length)
        TFLM_VMCU_BAD("corrupt model: subgraph %s %u names tensor %d of %u",
                      io == &inputs ? "input" : "output", i, t, tensors.length);
    }
  }

  for (uint32_t i = 0; i < operators.length; ++i) {
    if (!CheckOperator(operators, i, "operator", opcodes.length, tensors.length, error, error_size))
      return Status::kInvalidModel;
  }
#undef TFLM_VMCU_BAD

  bytes_ = bytes;
  size_ = size;
  num_tensors_ = tensors.length;
  num_operators_ = operators.length;
  num_inputs_ = inputs.length;
  num_outputs_ = outputs.length;
  tensors_pos_ = tensors.pos;
  operators_pos_ = operators.pos;
  inputs_pos_ = inputs.pos;
  outputs_pos_ = outputs.pos;
  opcodes_pos_ = opcodes.pos;
  num_opcodes_ = opcodes.length;
  buffers_pos_ = buffers.pos;
  num_buffers_ = buffers.length;
  metadata_pos_ = metadata.pos;
  num_metadata_ = metadata.length;
  return Status::kOk;
}

int32_t Model::input_tensor(uint32_t i) const {
  return static_cast<int32_t>(fb::LoadU32(bytes_ + inputs_pos_ + 4 * static_cast<size_t>(i)));
}
int32_t Model::output_tensor(uint32_t i) const {
  return static_cast<int32_t>(fb::LoadU32(bytes_ + outputs_pos_ + 4 * static_cast<size_t>(i)));
}

TensorInfo Model::tensor(uint32_t i) const {
  const fb::Buffer buf{bytes_, size_};
  bool ok = true;
  TensorInfo info;
  const fb::Table t = TableAt(buf, tensors_pos_, i);
  fb::Vector shape;
  t.GetVector(tensor_f::kShape, 4, &shape);
  info.shape.rank = static_cast<int32_t>(shape.length);
  for (uint32_t d = 0; d < shape.length; ++d) info.shape.dims[d] = shape.Int32(d);
  info.type = static_cast<uint8_t>(t.Scalar<int8_t>(tensor_f::kType, 0, &ok));
  info.is_variable = t.Scalar<uint8_t>(tensor_f::kIsVariable, 0, &ok) != 0;
  uint32_t name_len;
  t.String(tensor_f::kName, &info.name, &name_len);
  const uint32_t buffer = t.Scalar<uint32_t>(tensor_f::kBuffer, 0, &ok);
  if (buffer < num_buffers_) {
    const fb::Table b = TableAt(buf, buffers_pos_, buffer);
    BufferData(buf, b, &info.data, &info.data_bytes);
  }
  fb::Table q;
  t.SubTable(tensor_f::kQuantization, &q);
  if (q.valid()) {
    fb::Vector scale, zp;
    q.GetVector(quant_f::kScale, 4, &scale);
    q.GetVector(quant_f::kZeroPoint, 8, &zp);
    if (scale.length > 0) {
      float s;
      memcpy(&s, scale.Bytes(), 4);
      info.scale = s;
    }
    if (zp.length > 0) {
      int64_t z;
      memcpy(&z, zp.Bytes(), 8);
      info.zero_point = static_cast<int32_t>(z);
    }
    if (scale.length > 1) {
      info.channels.scales = scale.Bytes();
      info.channels.zero_points = zp.length > 0 ? zp.Bytes() : nullptr;
      info.channels.count = static_cast<int32_t>(scale.length);
      info.channels.quantized_dimension = q.Scalar<int32_t>(quant_f::kQuantizedDimension, 0, &ok);
    }
  }
  return info;
}

OperatorInfo Model::op(uint32_t i) const {
  const fb::Buffer buf{bytes_, size_};
  return ReadOperator(buf, opcodes_pos_, TableAt(buf, operators_pos_, i));
}

Status Model::ReadNested(const OperatorInfo& op, NestedOperators* out, char* error,
                         size_t error_size) const {
  *out = NestedOperators();
  const fb::Buffer buf{bytes_, size_};
  fb::Table root;
  fb::Vector operators;
  // The nested root table lies inside the options (64-bit sums: size_t is 32-bit on MCUs).
  const uint64_t at = op.custom_options != nullptr ? op.custom_options - bytes_ : 0;
  const uint64_t root_pos =
      op.custom_options_size >= 8 ? at + fb::LoadU32(op.custom_options) : uint64_t{0};
  if (root_pos < at + 4 || root_pos + 4 > at + op.custom_options_size ||
      !fb::Table::At(buf, static_cast<size_t>(root_pos), &root) ||
      !root.GetVector(subgraph_f::kOperators, 4, &operators)) {
    Format(error, error_size, "custom operator '%s' has no readable nested operators",
           op.custom_code);
    return Status::kInvalidModel;
  }
  for (uint32_t i = 0; i < operators.length; ++i) {
    if (!CheckOperator(operators, i, "nested operator", num_opcodes_, num_tensors_, error,
                       error_size))
      return Status::kInvalidModel;
  }
  out->pos = operators.pos;
  out->count = operators.length;
  return Status::kOk;
}

OperatorInfo Model::nested_op(const NestedOperators& nested, uint32_t i) const {
  const fb::Buffer buf{bytes_, size_};
  return ReadOperator(buf, opcodes_pos_, TableAt(buf, nested.pos, i));
}

uint32_t Model::Digest() const {
  Fnv f;
  f.Add(num_tensors_);
  f.Add(num_operators_);
  for (uint32_t i = 0; i < num_tensors_; ++i) {
    const TensorInfo t = tensor(i);
    f.Add(t.type);
    f.Add(static_cast<uint32_t>(t.shape.rank));
    for (int d = 0; d < t.shape.rank; ++d) f.Add(static_cast<uint32_t>(t.shape.dims[d]));
  }
  for (uint32_t i = 0; i < num_operators_; ++i) {
    const OperatorInfo op = this->op(i);
    f.Add(static_cast<uint32_t>(op.builtin_code < 0 ? 32 : op.builtin_code));
    f.Add(op.num_inputs);
    for (uint32_t k = 0; k < op.num_inputs; ++k) f.Add(static_cast<uint32_t>(op.Input(k)));
    f.Add(op.num_outputs);
    for (uint32_t k = 0; k < op.num_outputs; ++k) f.Add(static_cast<uint32_t>(op.Output(k)));
  }
  return f.h;
}

const uint8_t* Model::metadata(const char* name, size_t* bytes) const {
  const fb::Buffer buf{bytes_, size_};
  bool ok = true;
  for (uint32_t i = 0; i < num_metadata_; ++i) {
    const fb::Table m = TableAt(buf, metadata_pos_, i);
    const char* s;
    uint32_t n;
    m.String(metadata_f::kName, &s, &n);
    if (!StrEq(s, name)) continue;
    const uint32_t index = m.Scalar<uint32_t>(metadata_f::kBuffer, 0, &ok);
    const uint8_t* data;
    BufferData(buf, TableAt(buf, buffers_pos_, index), &data, bytes);
    return data;
  }
  *bytes = 0;
  return nullptr;
}

}  // namespace tflm_vmcu

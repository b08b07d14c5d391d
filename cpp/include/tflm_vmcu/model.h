// Zero-copy reader of a .tflite model. Nothing is copied out of the model bytes:
// weights stay where they are (flash on a device). Init() validates every offset
// and length that the runtime will later follow, so the accessors need no checks.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "tflm_vmcu/status.h"
#include "tflm_vmcu/tensor.h"

namespace tflm_vmcu {

namespace fb {
struct Buffer;
}

// Decoded facts of one tensor of subgraph 0.
struct TensorInfo {
  Shape shape;
  uint8_t type = 0;               // tflite TensorType code
  const uint8_t* data = nullptr;  // constant data in the model, nullptr if none
  size_t data_bytes = 0;
  bool is_variable = false;
  const char* name = "";
  float scale = 0.0f;
  int32_t zero_point = 0;
  ChannelQuant channels;
};

// One operator of subgraph 0 with its tensor indices (-1 = omitted input).
struct OperatorInfo {
  int32_t builtin_code = -1;  // -1 for a custom op
  const char* custom_code = "";
  uint32_t num_inputs = 0;
  uint32_t num_outputs = 0;
  const uint8_t* inputs = nullptr;          // little-endian int32[num_inputs] inside the model
  const uint8_t* outputs = nullptr;         // little-endian int32[num_outputs]
  uint8_t options_type = 0;                 // BuiltinOptions union tag
  size_t options_pos = 0;                   // table position in the model, 0 if absent
  const uint8_t* custom_options = nullptr;  // a custom operator's options, inside the model
  uint32_t custom_options_size = 0;

  int32_t Input(uint32_t i) const;
  int32_t Output(uint32_t i) const;
};

// The custom operator a fused inverted-bottleneck block becomes in a model compiled for the
// TFLM plug-in (`tflm-vmcu compile --target tflm-plugin`; cpp/tflm_plugin runs it).
constexpr const char kFusedBlockCustomCode[] = "TFLM_VMCU_BOTTLENECK";
bool IsFusedBlockOperator(const OperatorInfo& op);

// Operators nested in a custom operator's options: a flatbuffer SubGraph table whose
// operators use the model's own operator codes and tensors (how the TFLM plug-in's fused
// blocks keep the operators they stand for).
struct NestedOperators {
  size_t pos = 0;  // the vector of operator tables, a position in the model
  uint32_t count = 0;
};

class Model {
 public:
  // Validates the model structure. `bytes` must stay valid while the Model is used.
  Status Init(const uint8_t* bytes, size_t size, char* error, size_t error_size);

  uint32_t num_tensors() const { return num_tensors_; }
  uint32_t num_operators() const { return num_operators_; }
  uint32_t num_inputs() const { return num_inputs_; }
  uint32_t num_outputs() const { return num_outputs_; }
  int32_t input_tensor(uint32_t i) const;
  int32_t output_tensor(uint32_t i) const;

  // Decodes tensor `i` (< num_tensors, validated by Init).
  TensorInfo tensor(uint32_t i) const;
  OperatorInfo op(uint32_t i) const;

  // Reads the operators nested in `op`'s custom options, validated as Init validates the
  // model's own; on failure writes one line to `error`.
  Status ReadNested(const OperatorInfo& op, NestedOperators* out, char* error,
                    size_t error_size) const;
  OperatorInfo nested_op(const NestedOperators& nested, uint32_t i) const;

  const uint8_t* bytes() const { return bytes_; }
  size_t size() const { return size_; }

  // FNV-1a over tensor types/shapes and op codes/operands (matches graph_digest in
  // tflm_vmcu/plan_format.py): ties a memory plan to the model it was made for.
  uint32_t Digest() const;

  // Raw metadata entry by name (e.g. "OfflineMemoryAllocation"); nullptr if absent.
  const uint8_t* metadata(const char* name, size_t* bytes) const;

 private:
  const uint8_t* bytes_ = nullptr;
  size_t size_ = 0;
  uint32_t num_tensors_ = 0;
  uint32_t num_operators_ = 0;
  uint32_t num_inputs_ = 0;
  uint32_t num_outputs_ = 0;
  size_t tensors_pos_ = 0;    // vector of tensor tables (first element position)
  size_t operators_pos_ = 0;  // vector of operator tables
  size_t inputs_pos_ = 0;     // int32 vectors
  size_t outputs_pos_ = 0;
  size_t opcodes_pos_ = 0;
  uint32_t num_opcodes_ = 0;
  size_t buffers_pos_ = 0;
  uint32_t num_buffers_ = 0;
  size_t metadata_pos_ = 0;
  uint32_t num_metadata_ = 0;
};

}  // namespace tflm_vmcu

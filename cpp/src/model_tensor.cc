#include "model_tensor.h"

#include <stdarg.h>

#include "format.h"

namespace tflm_vmcu {
namespace {

Status Refuse(char* why, size_t why_size, Status status, const char* format, ...) {
  va_list args;
  va_start(args, format);
  FormatV(why, why_size, format, args);
  va_end(args);
  return status;
}

}  // namespace

Status TensorFromModel(const TensorInfo& info, int32_t index, Tensor* out, char* why,
                       size_t why_size) {
  Tensor& t = *out;
  t = Tensor();
  t.index = index;
  t.name = info.name;
  t.shape = info.shape;
  t.type = static_cast<DType>(info.type);
  t.scale = info.scale;
  t.zero_point = info.zero_point;
  t.channels = info.channels;
  if (info.is_variable)
    return Refuse(why, why_size, Status::kUnsupportedType,
                  "tensor '%s' is a variable (stateful) tensor: unsupported", info.name);
  const size_t elem = DTypeSize(info.type);
  const int64_t count = info.shape.FlatSize();
  // A type code the schema does not define is a corrupt model (TFLM refuses it too).
  if (!DTypeKnown(info.type))
    return Refuse(why, why_size, Status::kInvalidModel, "tensor '%s' has unknown type code %u",
                  info.name, static_cast<unsigned>(info.type));
  if (elem == 0) {
    if (info.data == nullptr)
      return Refuse(why, why_size, Status::kUnsupportedType, "tensor '%s' has type %s: unsupported",
                    info.name, DTypeName(info.type));
    t.bytes = info.data_bytes;  // opaque constant; kernels reject it if they read it
  } else {
    if (count > 0x7fffffff / static_cast<int64_t>(elem))
      return Refuse(why, why_size, Status::kInvalidModel, "tensor '%s' is larger than 2 GiB",
                    info.name);
    t.bytes = static_cast<size_t>(count) * elem;
  }
  if (info.data != nullptr) {
    if (elem != 0 && info.data_bytes != t.bytes)
      return Refuse(why, why_size, Status::kInvalidModel,
                    "tensor '%s' holds %u bytes of data but its shape and type need %u", info.name,
                    static_cast<unsigned>(info.data_bytes), static_cast<unsigned>(t.bytes));
    const size_t align = elem > 4 ? 4 : (elem == 0 ? 1 : elem);
    if ((reinterpret_cast<uintptr_t>(info.data) % align) != 0)
      return Refuse(why, why_size, Status::kInvalidModel,
                    "constant tensor '%s' is not %u-byte aligned in the model", info.name,
                    static_cast<unsigned>(align));
    t.is_const = true;
    t.data = const_cast<uint8_t*>(info.data);  // read-only: kernels never write inputs
  }
  return Status::kOk;
}

}  // namespace tflm_vmcu

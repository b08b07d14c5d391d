#include "tflm_vmcu/status.h"

#include "tflm_vmcu/tensor.h"

namespace tflm_vmcu {

const char* StatusName(Status status) {
  switch (status) {
    case Status::kOk:
      return "ok";
    case Status::kInvalidModel:
      return "invalid model";
    case Status::kUnsupportedOp:
      return "unsupported op";
    case Status::kUnsupportedType:
      return "unsupported type";
    case Status::kInvalidShape:
      return "invalid shape";
    case Status::kOutOfMemory:
      return "out of memory";
    case Status::kInvalidState:
      return "invalid state";
    case Status::kInvalidArgument:
      return "invalid argument";
  }
  return "unknown status";
}

size_t DTypeSize(uint8_t tflite_type) {
  switch (tflite_type) {
    case 0:
      return 4;  // FLOAT32
    case 2:
      return 4;  // INT32
    case 3:
      return 1;  // UINT8
    case 4:
      return 8;  // INT64
    case 6:
      return 1;  // BOOL
    case 7:
      return 2;  // INT16
    case 9:
      return 1;  // INT8
    case 10:
      return 8;  // FLOAT64
    case 15:
      return 4;  // UINT32
    case 16:
      return 2;  // UINT16
    default:
      return 0;
  }
}

namespace {
const char* const kTypeNames[] = {"FLOAT32", "FLOAT16",    "INT32",  "UINT8",     "INT64",
                                  "STRING",  "BOOL",       "INT16",  "COMPLEX64", "INT8",
                                  "FLOAT64", "COMPLEX128", "UINT64", "RESOURCE",  "VARIANT",
                                  "UINT32",  "UINT16",     "INT4",   "BFLOAT16"};
}  // namespace

bool DTypeKnown(uint8_t tflite_type) {
  return tflite_type < sizeof(kTypeNames) / sizeof(kTypeNames[0]);
}

const char* DTypeName(uint8_t tflite_type) {
  return DTypeKnown(tflite_type) ? kTypeNames[tflite_type] : "UNKNOWN";
}

}  // namespace tflm_vmcu

// Status codes returned by every runtime call (the runtime never throws).
#pragma once

#include <stdint.h>

namespace tflm_vmcu {

enum class Status : int32_t {
  kOk = 0,
  kInvalidModel = 1,     // not a .tflite, truncated, or an offset/length out of range
  kUnsupportedOp = 2,    // an operator the runtime has no kernel for
  kUnsupportedType = 3,  // a tensor type or quantisation the kernel cannot run
  kInvalidShape = 4,     // shapes or parameters that break an op's constraints
  kOutOfMemory = 5,      // the caller's memory block is too small
  kInvalidState = 6,     // API misuse, e.g. Invoke() before AllocateTensors()
  kInvalidArgument = 7,  // bad index or argument passed by the caller
};

// Short stable name of a status, e.g. "invalid model".
const char* StatusName(Status status);

}  // namespace tflm_vmcu

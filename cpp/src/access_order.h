// Access-order models of the runtime's kernels: the one description of where an op's
// output may overlap its inputs. The compiler's planner (through the Python binding),
// the runtime's plan verifier and the tests all ask MinDisplacement.
//
// Every kernel works in units (ring.h): a unit first reads input bytes, then writes
// output bytes. For one (input, output) pair a model walks the units in execution order
// and gives, per unit, the lowest input byte it reads and one past the highest output byte
// it writes. With the output placed d bytes before the input (out_base = in_base - d),
// unit j's writes must stay below every input byte that unit j or a later unit still reads:
//
//     d >= write_hi[j] - min(read_lo[k] for k >= j)     for every unit j
//
// so the smallest safe displacement is the maximum of the right-hand side, computed in one
// pass with O(1) memory (a unit's writes only grow the running maximum of write_hi). A
// unit that reads nothing cannot be told apart from the end of the unit before it (the
// hazard checker sees only reads and writes), so it inherits that unit's read_lo.
#pragma once

#include <stdint.h>

#include "kernels/block_schedule.h"
#include "kernels/kernel.h"

namespace tflm_vmcu {

struct Bottleneck;

// Returned when the output must never overlap the input (e.g. an operand re-read by
// every unit, a constant, or an op without a model).
constexpr int64_t kNoOverlap = -1;

// Whose kernels run the op: this runtime's, or TFLM's reference kernels, which run finer
// units for DEPTHWISE_CONV_2D and pooling (one channel of one pixel), for offline plans.
enum class KernelLibrary : uint8_t { kRuntime = 0, kTflmReference = 1 };

// What an op's access order depends on: shapes, element sizes, options, constant operands
// (PAD's paddings, TRANSPOSE's permutation, MEAN's axes). Tensors need shape, type, bytes,
// is_const and, for constants, data.
struct AccessOp {
  int32_t builtin_code = -1;
  const OpOptions* options = nullptr;
  const Tensor* const* inputs = nullptr;  // nullptr entries: omitted optional inputs
  int32_t num_inputs = 0;
  const Tensor* output = nullptr;
};

// Smallest d = in_base - out_base (bytes) that keeps every unit's writes off bytes of
// input `pos` still to be read; kNoOverlap when the output must not overlap that input.
int64_t MinDisplacement(const AccessOp& op, int32_t pos,
                        KernelLibrary library = KernelLibrary::kRuntime);

// The same for a fused chain of inverted bottlenecks (kernels/block_schedule.h), its input
// and output (the workspace never overlaps anything); kNoOverlap for a malformed chain.
int64_t BlockMinDisplacement(const BlockGeometry* g, int32_t n);
int64_t BlockMinDisplacement(const Bottleneck& b);

}  // namespace tflm_vmcu

// The fused inverted bottleneck (MobileNetV2/MCUNet block):
//
//   A [-> PAD] -> [CONV_2D expand] -> B [-> PAD] -> DEPTHWISE_CONV_2D KxK -> C
//     -> CONV_2D 1x1 project -> D [-> ADD(A, D) -> E]
//
// run as one kernel that never materialises B, C or D. The expansion is usually 1x1; a
// KxK one (a network's stem convolution, with the PAD before it) makes the block stream
// the stem's output too: each B pixel is computed from its KxK patch of A. A small workspace holds
// a ring of K rows of B, one pixel of C and one of D; the block output is written pixel by pixel
// into pool bytes of A that no later step reads. Every value is computed with the arithmetic of the
// unfused kernels (TFLM's reference order and requantisation), so the result is bit-exact with
// running the ops one by one.
//
// Two modes (the access-order model in cpp/src/access_order.cc mirrors both):
// - rows: for each output row, first the B rows it newly needs (each B row computed once:
//   read its A pixels, write its B pixels into a ring of K rows); then for each output
//   pixel: the depthwise window from the ring -> C pixel -> D pixel -> (read the A pixel,
//   add) -> write the pixel. As fast as the unfused ops.
// - window: for each output pixel, its K x K window of B computed afresh from A (B pixels
//   are recomputed by every window that covers them), then as above. The workspace holds
//   one window instead of K rows: less memory, more work.
//
// Chains: consecutive blocks, each one's output the next one's input, fuse into one chain
// (kernels/block_schedule.h) whose inner tensors never exist either: each block produces its
// output rows on demand into a ring of rows that the next block reads.
//
// Workspace layout: per block, [B: K rows (K * mid_w * mid_c) or one window (K * K * mid_c)]
// [C pixel: mid_c][D pixel: out_c][staging of a wrapped A pixel: in_c]
// [with a KxK expansion, two input patches: 2 * expand_kernel_h * expand_kernel_w * in_c];
// then the rings of rows of the chain's inner tensors (ChainRingRows).
#pragma once

#include <stdint.h>

#include "kernels/add_common.h"
#include "kernels/block_schedule.h"
#include "kernels/conv_common.h"
#include "kernels/kernel.h"

namespace tflm_vmcu {

// Largest depthwise kernel side the fused kernel runs (its window rows are kept on the stack).
constexpr int32_t kMaxBlockKernel = 16;
// Operators in one block: PAD, expand, PAD, depthwise, project, ADD; in a chain.
constexpr int32_t kMaxStageOps = 6;
constexpr int32_t kMaxBlockOps = kMaxStageOps * kMaxChainStages;
// Largest input patch of a KxK expansion (kernel_h * kernel_w * in_c bytes).
constexpr int32_t kMaxExpandPatch = 1024;

// One convolution of the block: its prepared op data and constant operands.
struct BottleneckConv {
  const ConvData* data = nullptr;
  const int8_t* filter = nullptr;
  const int32_t* bias = nullptr;  // nullptr: no bias
};

// One operator of a candidate block, as the interpreter sees it.
struct BlockOp {
  int32_t builtin_code;
  const OpOptions* options;
  Tensor* const* inputs;
  int32_t num_inputs;
  const Tensor* output;
  const void* op_data;
};

// One inverted bottleneck of a chain.
struct BlockStage {
  const Tensor* input = nullptr;   // A [1, in_h, in_w, in_c] (inside a chain: never exists)
  const Tensor* output = nullptr;  // E (D without the residual add)
  bool has_expand = false;
  BottleneckConv expand, depthwise, project;
  const AddParams* add = nullptr;  // nullptr: no residual add
  bool input_is_add_input1 = false;
  int32_t in_h = 0, in_w = 0, in_c = 0;
  int32_t expand_stride_h = 1, expand_stride_w = 1;
  int32_t expand_kernel_h = 1, expand_kernel_w = 1;  // 1x1: the B pixel of one A pixel
  int32_t expand_pad_h = 0, expand_pad_w = 0;        // top/left padding (its own + the PAD's)
  int32_t mid_h = 0, mid_w = 0, mid_c = 0;           // B (and C's channels)
  int32_t kernel_h = 0, kernel_w = 0, stride_h = 1, stride_w = 1;
  int32_t pad_h = 0, pad_w = 0;  // top/left padding of the depthwise conv (its own + PAD's)
  int32_t out_h = 0, out_w = 0, out_c = 0;  // C's rows and columns; D's channels
};
TFLM_VMCU_ARM32_LAYOUT(BlockStage, 140, 4);

// A fused chain of one or more blocks: what the plan fuses, run as one kernel.
struct Bottleneck {
  BlockStage* stages = nullptr;  // `count` stages, owned by the caller
  int32_t count = 0;
  const Tensor* input = nullptr;   // the first stage's input
  const Tensor* output = nullptr;  // the last stage's output
  Tensor workspace;                // the workspace as a pseudo-tensor (hazard tags)
  bool window = false;             // every stage in window mode (else rows mode)
  uint32_t workspace_offset = 0;
  uint32_t first_op = 0;  // the chain's operators in the model
  uint32_t last_op = 0;
};
TFLM_VMCU_ARM32_LAYOUT(Bottleneck, 108, 4);

// The geometry of stage s of `b` (in b's mode).
BlockGeometry GeometryOf(const Bottleneck& b, int32_t s);

// Workspace bytes the kernel needs for a chain of this geometry.
uint32_t BottleneckWorkspaceBytes(const Bottleneck& b);

// The consecutive operators of a candidate chain, read one block at a time (so that a
// front end never holds a whole chain's operators and options at once).
class BlockOpReader {
 public:
  // Operator k of the chain, its options decoded into *options (op->options points there).
  virtual void Read(int32_t k, BlockOp* op, OpOptions* options) const = 0;

 protected:
  ~BlockOpReader() = default;
};

// Checks that the `count` operators form a chain of inverted bottlenecks this kernel runs,
// its input at most `pool_bytes` (the chain's rows are walked once here), and fills `out`
// (everything but the mode and workspace) and `stages` (room for kMaxChainStages). On
// failure writes the reason to `why`.
bool MakeBottleneck(const BlockOpReader& ops, int32_t count, uint32_t pool_bytes,
                    BlockStage* stages, Bottleneck* out, char* why, uint32_t why_size);

// Gives `b` the workspace the plan places at `offset` (`index`: its pseudo-tensor index for
// the hazard checker). False when it is smaller than the block needs or not inside the pool,
// with `why` continuing "the memory plan gives the block ...".
bool PlaceWorkspace(Bottleneck* b, uint32_t offset, uint32_t bytes, uint32_t pool, int32_t index,
                    char* why, uint32_t why_size);

void EvalBottleneck(const Bottleneck& b, uint8_t* pool, uint32_t pool_size, HazardState* hazard);

}  // namespace tflm_vmcu

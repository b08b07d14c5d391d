"""Planning time of the ring planner on a synthetic 160-op MobileNetV2-style graph.

The graph is built directly in the IR (no TensorFlow needed): 40 inverted-bottleneck
blocks (1x1 expand, 3x3 depthwise, 1x1 project, residual ADD) = 160 ops at 48x48.

    python benchmarks/planning_time.py [--blocks 40] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from tflm_vmcu.ir import Graph, Operator, Quantization, Tensor
from tflm_vmcu.planner.ring import plan_ring

INT8, INT32 = 9, 2


def synthetic_graph(blocks: int, hw: int = 48, c: int = 16, expand: int = 6) -> Graph:
    tensors: list[Tensor] = []
    ops: list[Operator] = []
    q = Quantization((0.02,), (0,))

    def tensor(shape: tuple[int, ...], const: bool = False, type_code: int = INT8) -> int:
        nbytes = int(np.prod(shape)) * (4 if type_code == INT32 else 1)
        data = bytes(nbytes) if const else None
        tensors.append(Tensor(len(tensors), f"t{len(tensors)}", shape, type_code, q, data))
        return len(tensors) - 1

    def op(name: str, inputs: list[int], out: int, **options: int) -> None:
        ops.append(Operator(len(ops), name, 0, tuple(inputs), (out,), dict(options)))

    conv = {"padding": 0, "stride_w": 1, "stride_h": 1}
    x = tensor((1, hw, hw, c))
    first = x
    for _ in range(blocks):
        mid = c * expand
        e = tensor((1, hw, hw, mid))
        op("CONV_2D", [x, tensor((mid, 1, 1, c), True), tensor((mid,), True, INT32)], e, **conv)
        d = tensor((1, hw, hw, mid))
        dw = {**conv, "depth_multiplier": 1}
        op(
            "DEPTHWISE_CONV_2D",
            [e, tensor((1, 3, 3, mid), True), tensor((mid,), True, INT32)],
            d,
            **dw,
        )
        p = tensor((1, hw, hw, c))
        op("CONV_2D", [d, tensor((c, 1, 1, mid), True), tensor((c,), True, INT32)], p, **conv)
        y = tensor((1, hw, hw, c))
        op("ADD", [x, p], y)
        x = y
    return Graph(tensors, ops, (first,), (x,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    graph = synthetic_graph(args.blocks)
    times, plan = [], None
    for _ in range(args.repeat):
        start = time.perf_counter()
        plan = plan_ring(graph)
        times.append(time.perf_counter() - start)
    assert plan is not None
    print(f"ops: {len(graph.operators)}, tensors: {len(graph.tensors)}")
    print(f"pool: {plan.pool_bytes:,} bytes ({plan.method} plan, segment {plan.segment_bytes})")
    print(f"segment-level bound: {plan.notes['segment_bound_bytes']:,} bytes")
    print(
        f"planning time: median {statistics.median(times):.3f} s, max {max(times):.3f} s "
        f"over {args.repeat} runs"
    )


if __name__ == "__main__":
    main()

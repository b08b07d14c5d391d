"""Compile time of deep and wide graphs: a chain of N ops, and one input fanning out to N
branches that are summed back together. The graphs come from the project's generator
(tflm_vmcu/synth.py); each is compiled as `tflm-vmcu compile` does (fusion "rows").

    python benchmarks/compile_scaling.py [--chain 250 500 1000 2000] [--fanout 25 50 100 1000]

Prints op count, branches, compile seconds and pool bytes per graph.
"""

from __future__ import annotations

import argparse
import time

from tflm_vmcu.compiler import compile_bytes
from tflm_vmcu.synth import ModelBuilder


def chain_model(ops: int, shape: tuple[int, ...] = (1, 8, 8, 4)) -> bytes:
    """`ops` element-wise ops in a chain (RELU and RELU6 alternating)."""
    b = ModelBuilder(seed=0, description="chain")
    x = b.input(list(shape))
    for k in range(ops):
        x = b.unary("RELU" if k % 2 == 0 else "RELU6", x)
    return b.build([x])


def fanout_model(branches: int, shape: tuple[int, ...] = (1, 4, 4, 4), conv: bool = False) -> bytes:
    """One input read by `branches` RELUs (or 1x1 CONV_2Ds), whose outputs a chain of ADDs
    sums: 2N - 1 ops, with every branch output live until the ADD that takes it."""
    b = ModelBuilder(seed=0, description="fanout")
    x = b.input(list(shape))
    outs = [
        b.conv2d(x, shape[-1], kernel=(1, 1)) if conv else b.unary("RELU", x)
        for _ in range(branches)
    ]
    acc = outs[0]
    for y in outs[1:]:
        acc = b.elementwise("ADD", acc, y, out_scale=0.05)
    return b.build([acc])


def build(kind: str, n: int) -> bytes:
    """kind: "chain", "fan-out" (RELU branches) or "conv-fan" (CONV_2D branches)."""
    return chain_model(n) if kind == "chain" else fanout_model(n, conv=kind == "conv-fan")


def measure(kind: str, n: int) -> tuple[int, int, float, int]:
    """(op count, branches, compile seconds, pool bytes) of one graph."""
    data = build(kind, n)
    start = time.perf_counter()
    result = compile_bytes(data)
    seconds = time.perf_counter() - start
    ops = n if kind == "chain" else 2 * n - 1
    return ops, (1 if kind == "chain" else n), seconds, result.plan.pool_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chain", type=int, nargs="*", default=[250, 500, 1000, 2000])
    parser.add_argument("--fanout", type=int, nargs="*", default=[25, 50, 100, 250, 1000])
    parser.add_argument("--conv-fanout", type=int, nargs="*", default=[25, 100, 1000])
    args = parser.parse_args()
    print(f"| {'graph':8} | {'ops':>6} | {'branches':>8} | {'compile s':>9} | {'pool bytes':>10} |")
    print(f"|{'-' * 10}|{'-' * 7}:|{'-' * 9}:|{'-' * 10}:|{'-' * 11}:|")
    kinds = (("chain", args.chain), ("fan-out", args.fanout), ("conv-fan", args.conv_fanout))
    for kind, sizes in kinds:
        for n in sizes:
            ops, branches, seconds, pool = measure(kind, n)
            print(f"| {kind:8} | {ops:>6} | {branches:>8} | {seconds:>9.2f} | {pool:>10,} |")


if __name__ == "__main__":
    main()

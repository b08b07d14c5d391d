"""What a model needs on a Cortex-M core, predicted on the host, without a toolchain:

- pool: the plan's (the same bytes on every core);
- state: the runtime's own figure for a 32-bit Arm core (cpp/src/arm32_layout.h), equal
  to what the core allocates;
- stack: the deepest kernel the model runs, as measured for that kernel on that core
  under QEMU (device_figures.json, written by benchmarks/device_figures.py): the
  high-water mark of the firmware harness running it, AllocateTensors and Invoke included;
- flash: the runtime's code on that core + the compiled model (without the firmware
  harness's test input and expected output).

`tflm-vmcu fit` answers with these; `fit --measure` runs the model on the emulated core
instead. The firmware tests compare both on every model they run."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import TflmVmcuError
from .fusion import MAX_CHAIN
from .ir import Graph, Operator
from .plan_format import kernel_spans
from .reader import load_bytes, read_model

FUSED_BLOCK = "FUSED_BLOCK"  # the stack key of a fused block
# A chain of N blocks: each stage pulls its rows from the one before, one call deeper.
FUSED_CHAINS = tuple(f"FUSED_CHAIN_{n}" for n in range(2, MAX_CHAIN + 1))
# FULLY_CONNECTED over two or more rows: on a DSP core its kernel may take rows in pairs
# (cpp/src/kernels/dsp_pairs.h), a path about 100 bytes deeper than one row at a time.
FC_ROWS = "FULLY_CONNECTED_ROWS"


@dataclass(frozen=True)
class DeviceNeeds:
    pool_bytes: int
    state_bytes: int
    stack_bytes: int
    flash_bytes: int

    @property
    def ram_bytes(self) -> int:
        return self.pool_bytes + self.state_bytes + self.stack_bytes


@cache
def figures() -> dict[str, Any]:
    text = resources.files("tflm_vmcu").joinpath("device_figures.json").read_text()
    cores: dict[str, Any] = json.loads(text)["cores"]
    return cores


def _key(graph: Graph, op: Operator) -> str:
    if op.opcode == "FULLY_CONNECTED":
        x, w = (graph.tensors[t] for t in op.inputs[:2])
        rows = math.prod(x.shape) // max(w.shape[-1], 1)
        return FC_ROWS if rows > 1 else op.opcode
    return op.opcode


def stack_keys(graph: Graph) -> set[str]:
    """The kernels Invoke() runs, by stack figure: each unfused operator's name (FC_ROWS
    for a FULLY_CONNECTED over several rows), FUSED_BLOCK for a fused block and
    FUSED_CHAIN_N for a chain of N (each block has one depthwise convolution)."""
    keys: set[str] = set()
    for first, last in kernel_spans(graph):
        if first == last:
            keys.add(_key(graph, graph.operators[first]))
            continue
        ops = graph.operators[first : last + 1]
        stages = sum(op.opcode == "DEPTHWISE_CONV_2D" for op in ops)
        keys.add(FUSED_BLOCK if stages == 1 else f"FUSED_CHAIN_{stages}")
    return keys


def memory_block_bytes(pool_bytes: int, arm32_state_bytes: int) -> int:
    """The memory block a 32-bit Arm core gives the runtime: the pool + the state, rounded
    up to 16. Declared 16-byte aligned, it ends on a 16-byte boundary, below which the state
    takes exactly the runtime's 32-bit figure (the firmware runs every model in it)."""
    return -(-(pool_bytes + arm32_state_bytes) // 16) * 16


def io_bytes(inputs: Sequence[bytes], outputs: Sequence[bytes]) -> int:
    """The firmware harness's test data: its input and expected output arrays (each at
    least one byte, firmware/host.py)."""
    return sum(max(len(b), 1) for b in [*inputs, *outputs])


def predict(model: bytes | str | Path, cpu: str, plan: str = "ring") -> DeviceNeeds:
    """The RAM and flash the model needs on `cpu`, compiled with `plan` (the firmware's
    plans: "ring", "ring-window", or "model" for the plan the model carries)."""
    from .firmware.host import compile_for_plan

    return needs(compile_for_plan(load_bytes(model), plan), cpu)


def needs(compiled: bytes, cpu: str) -> DeviceNeeds:
    """The RAM and flash a model needs on `cpu`, as it is (compiled or not)."""
    from .interpreter import Interpreter

    cores = figures()
    if cpu not in cores:
        raise TflmVmcuError(f"no figures for '{cpu}' (choose from {', '.join(cores)})")
    core = cores[cpu]
    interp = Interpreter(compiled)
    stack = core["stack_bytes"]
    keys = stack_keys(read_model(compiled))
    if keys - set(stack):
        raise TflmVmcuError(f"no stack figure for {', '.join(sorted(keys - set(stack)))} on {cpu}")
    return DeviceNeeds(
        pool_bytes=interp.activation_bytes,
        state_bytes=interp.arm32_state_bytes,
        # The harness alone (no operator) needs no more than its smallest kernel figure.
        stack_bytes=max((stack[k] for k in keys), default=min(stack.values())),
        flash_bytes=core["code_bytes"] + len(compiled),
    )

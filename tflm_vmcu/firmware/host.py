"""Host side of the firmware: compile the model for a plan, run it in the host runtime
on the seeded input, and write the headers the firmware embeds (model_data.h: the model
and its memory block; model_io.h: the input and the expected output). check_fits() says
whether a host run fits a board before anything is built."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..device import memory_block_bytes
from ..errors import TflmVmcuError
from ..export import c_source
from ..ir import Graph
from ..lifetimes import lifetimes
from ..plan_format import read_plan, write_plan
from ..planner.plan import Placement, Plan
from ..planner.ring import flat_offsets
from ..quant import channel_params
from ..reader import load_bytes, read_model
from .boards import (
    BOARD_FLASH_BYTES,
    BOARD_RAM_BYTES,
    HANDLER_STACK_BYTES,
    STACK_BYTES,
    STATIC_RESERVE_BYTES,
)

# Memory plans the firmware can run: the ring plan of `tflm-vmcu compile`, or a flat,
# tensor-level plan (every live tensor in its own bytes: no overlaps, nothing wraps) for
# the same runtime and kernels.
PLANS = ("ring", "ring-window", "ring-unfused", "flat", "model")
FLAT_SEGMENT_BYTES = 16  # flat plan: tensors 16-byte aligned, as TFLM's planner


@dataclass
class HostRun:
    """The compiled model and what the host runtime computed on one seeded input."""

    name: str
    model: bytes
    inputs: list[bytes]
    outputs: list[bytes]
    pool_bytes: int
    state_bytes: int  # on the host (64-bit pointers)
    arm32_state_bytes: int  # the same state on a 32-bit Arm core, as the runtime computes it
    seed: int
    plan: str = "ring"  # "ring" or "flat" (PLANS)

    @property
    def memory_bytes(self) -> int:
        """The firmware's memory block: exactly what `tflm-vmcu export` declares."""
        return memory_block_bytes(self.pool_bytes, self.arm32_state_bytes)


def flat_plan(graph: Graph, segment_bytes: int = FLAT_SEGMENT_BYTES) -> Plan:
    """A tensor-level plan: every activation tensor in its own bytes while it is live (no
    overlaps, nothing wraps), placed first fit, largest first. Tensors whose lifetimes
    do not meet share bytes, as in TFLM's planner. It carries the same precomputed
    per-channel parameters as the ring plan, so both plans run the same kernel code."""
    lts = {lt.tensor: lt for lt in lifetimes(graph)}
    pool, offsets = flat_offsets(lts, segment_bytes)
    placements = {
        t: Placement(t, graph.tensors[t].name, offsets[t], lt.nbytes, lt.first, lt.last)
        for t, lt in lts.items()
    }
    plan = Plan(pool, segment_bytes, placements, "tensor")
    for op in graph.operators:
        words = channel_params(graph, op)
        if words is not None:
            plan.op_words[op.index] = words
    return plan


def compile_for_plan(data: bytes, plan: str = "ring") -> bytes:
    """The model with its `plan` ("ring": `tflm-vmcu compile`; "ring-window" and
    "ring-unfused": the same with `--fusion window` and `--fusion off`; "flat":
    flat_plan(); "model": the plan the model carries, as it is)."""
    if plan not in PLANS:
        raise TflmVmcuError(f"unknown plan '{plan}' (choose from {', '.join(PLANS)})")
    if plan == "model":
        if read_plan(read_model(data)) is None:
            raise TflmVmcuError("--plan model: the model carries no memory plan (compile it)")
        return data
    if plan == "flat":
        return write_plan(data, flat_plan(read_model(data)))
    from ..compiler import compile_bytes

    fusion = {"ring": "rows", "ring-window": "window", "ring-unfused": "off"}[plan]
    return compile_bytes(data, fusion).model


def host_run(
    model: str | Path | bytes, seed: int = 0, name: str | None = None, plan: str = "ring"
) -> HostRun:
    """Compiles `model` with `plan` ("ring" or "flat") and runs it in the host runtime on
    the seeded input of `tflm-vmcu validate --runs 1 --seed SEED`."""
    from ..interpreter import Interpreter
    from ..validate import make_inputs

    data = load_bytes(model)
    compiled = compile_for_plan(data, plan)
    arrays = make_inputs(read_model(compiled), 1, seed)[0]
    if not arrays:
        raise TflmVmcuError("the model has no inputs")
    interp = Interpreter(compiled)
    for d, a in zip(interp.get_input_details(), arrays, strict=True):
        interp.set_tensor(d["index"], a)
    interp.invoke()
    outputs = [interp.get_tensor(d["index"]) for d in interp.get_output_details()]
    if name is None:
        name = Path(model).name if isinstance(model, (str, Path)) else "model"
    return HostRun(
        name=name,
        model=compiled,
        inputs=[np.ascontiguousarray(a).tobytes() for a in arrays],
        outputs=[np.ascontiguousarray(o).tobytes() for o in outputs],
        pool_bytes=interp.activation_bytes,
        state_bytes=interp.state_bytes,
        arm32_state_bytes=interp.arm32_state_bytes,
        seed=seed,
        plan=plan,
    )


def _c_bytes(name: str, data: bytes) -> str:
    rows = (", ".join(f"0x{b:02x}" for b in data[i : i + 16]) for i in range(0, len(data), 16))
    body = ",\n".join(f"    {row}" for row in rows)
    # An empty array is not C: a placeholder byte (its size table says 0).
    return f"static const unsigned char {name}[{max(len(data), 1)}] = {{\n{body}\n}};\n"


def io_header(run: HostRun, corrupt_expected: bool = False) -> str:
    """model_io.h: the input and the expected output bytes for firmware/main.cc. With
    `corrupt_expected`, one expected byte is flipped (to check the verdict is real)."""
    expected = [bytearray(o) for o in run.outputs]
    if corrupt_expected:
        expected[0][0] ^= 0x01
    label = re.sub(r"[^A-Za-z0-9_.+-]", "_", run.name)
    parts = [
        f"/* Generated by `tflm-vmcu firmware`: input and expected output of {label}\n"
        f" * (seed {run.seed}, computed by the host runtime), for firmware/main.cc. */\n",
        "#ifndef TFLM_VMCU_FIRMWARE_MODEL_IO_H_\n#define TFLM_VMCU_FIRMWARE_MODEL_IO_H_\n\n",
        f'#define FW_MODEL_NAME "{label}"\n',
        f"#define FW_NUM_INPUTS {len(run.inputs)}\n",
        f"#define FW_NUM_OUTPUTS {len(expected)}\n",
        f"#define FW_HOST_POOL_BYTES {run.pool_bytes}\n",
        f"#define FW_HOST_STATE_BYTES {run.state_bytes}\n",
        f"#define FW_EXPECTED_CORRUPTED {int(corrupt_expected)}\n\n",
    ]
    parts += io_tables([bytes(b) for b in run.inputs], [bytes(b) for b in expected])
    parts.append("\n#endif /* TFLM_VMCU_FIRMWARE_MODEL_IO_H_ */\n")
    return "".join(parts)


def io_tables(inputs: Sequence[bytes], expected: Sequence[bytes]) -> list[str]:
    """The arrays of model_io.h (both firmwares): fw_input_K and fw_expected_K, and the
    tables fw_inputs/fw_input_bytes and fw_expected/fw_expected_bytes over them."""
    parts = [_c_bytes(f"fw_input_{i}", b) for i, b in enumerate(inputs)]
    parts += [_c_bytes(f"fw_expected_{i}", b) for i, b in enumerate(expected)]
    for kind, items in (("inputs", inputs), ("expected", expected)):
        prefix = "fw_input" if kind == "inputs" else "fw_expected"
        ptrs = ", ".join(f"{prefix}_{i}" for i in range(len(items)))
        sizes = ", ".join(str(len(b)) for b in items)
        count = "FW_NUM_INPUTS" if kind == "inputs" else "FW_NUM_OUTPUTS"
        size_name = "fw_input_bytes" if kind == "inputs" else "fw_expected_bytes"
        parts.append(f"\nstatic const unsigned char* const fw_{kind}[{count}] = {{{ptrs}}};\n")
        parts.append(f"static const unsigned int {size_name}[{count}] = {{{sizes}}};\n")
    return parts


def write_headers(run: HostRun, directory: Path, corrupt_expected: bool = False) -> list[Path]:
    """Writes model_data.h and model_io.h into `directory`. A file whose content is
    unchanged is not rewritten, so an incremental build skips it."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "model_data.h": c_source(run.model, "g_model", run.memory_bytes, "tflm-vmcu"),
        "model_io.h": io_header(run, corrupt_expected),
    }
    return write_if_changed(directory, files)


def write_if_changed(directory: Path, files: dict[str, str]) -> list[Path]:
    """Writes each file whose content differs (an incremental build skips the others)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in files.items():
        path = directory / name
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
        paths.append(path)
    return paths


def check_fits(run: HostRun, stack_bytes: int = STACK_BYTES) -> int:
    """The static RAM the firmware needs; TflmVmcuError when the board lacks it."""
    ram = run.memory_bytes + stack_bytes + HANDLER_STACK_BYTES + STATIC_RESERVE_BYTES
    if ram > BOARD_RAM_BYTES:
        raise TflmVmcuError(
            f"model needs {ram:,} bytes of RAM (memory block {run.memory_bytes:,} + stack "
            f"{stack_bytes + HANDLER_STACK_BYTES:,}), board has {BOARD_RAM_BYTES:,}"
        )
    flash = len(run.model) + sum(map(len, run.inputs)) + sum(map(len, run.outputs))
    if flash > BOARD_FLASH_BYTES:
        raise TflmVmcuError(
            f"model needs over {flash:,} bytes of flash (model, input and expected "
            f"output), board has {BOARD_FLASH_BYTES:,}"
        )
    return ram

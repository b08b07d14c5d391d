"""What one firmware run gives (FirmwareResult) and the step every firmware kind shares
once its ELF is built: run_and_report() runs the ELF on its board under QEMU (under the
instruction-count plugin when there is one, else alone), decodes the exit code and the
`report:` line into the result, and attributes the exact counts to Invoke() and to each
kernel call.

The `report:` fields read here are pool_bytes, state_bytes and stack_bytes (RAM),
mismatches (0 when bit-exact), invoke_ticks, calibration_ticks and
calibration_instructions (the SysTick estimate under -icount), and, when present,
allocate_ticks and allocate_trusted_ticks (AllocateTensors() with the plan verifier and
trusting the plan). run_and_report() returns every field, so a kind reads its own
(e.g. arena sizes) from the same line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import progress
from ..ir import Graph
from ..reader import read_model
from .counting import (
    InstructionCounts,
    InvokeSites,
    KernelCall,
    OpCount,
    PluginError,
    attribute,
    count_instructions,
    invoke_sites,
    kernel_calls,
    op_type_totals,
)
from .qemu import describe_exit, parse_report, run_qemu

ICOUNT_METHOD = "qemu -icount shift=0, SysTick around Invoke()"
PLUGIN_METHOD = (
    "qemu TCG plugin (tools/qemu_insn_plugin), exact: Interpreter::Invoke() from its "
    "first instruction to its return"
)


@dataclass
class FirmwareResult:
    model: str
    cpu: str
    board: str
    elf: str
    flash_bytes: int
    host_pool_bytes: int
    host_state_bytes: int
    memory_block_bytes: int
    plan: str = "ring"
    dsp: bool = True  # the kernels' DSP loops are compiled in (a DSP core, not --no-dsp)
    ran: bool = False
    bit_exact: bool | None = None
    exit_code: int | None = None
    verdict: str = "built"
    pool_bytes: int | None = None
    state_bytes: int | None = None
    stack_bytes: int | None = None
    ram_bytes: int | None = None
    instructions: int | None = None  # per Invoke(): exact (plugin), else the estimate
    instructions_icount: int | None = None  # SysTick estimate under -icount
    instructions_method: str = ""
    interpreter_instructions: int | None = None  # Invoke() minus its kernels
    # AllocateTensors() (SysTick estimate under -icount), and the share of the plan verifier
    # (AllocateTensors minus the same call trusting the plan).
    allocate_instructions: int | None = None
    verifier_instructions: int | None = None
    ops: list[OpCount] = field(default_factory=list)  # per operator, when counted
    seconds: dict[str, float] = field(default_factory=dict)
    console: str = ""

    @property
    def op_types(self) -> dict[str, dict[str, Any]]:
        return op_type_totals(self.ops)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["ops"] = [
            {**asdict(op), "instructions_per_mac": op.instructions_per_mac} for op in self.ops
        ]
        d["op_types"] = self.op_types
        return d


def run_and_report(
    result: FirmwareResult,
    model: bytes,
    timeout: float,
    plugin_lib: Path | None = None,
    no_count: str = "",
    *,
    find_sites: Callable[[Path], InvokeSites] = invoke_sites,
    calls: Callable[[Graph], list[KernelCall]] = kernel_calls,
) -> dict[str, int]:
    """Runs `result.elf` on `result.board` under QEMU and fills in `result`: the verdict,
    RAM, instructions (and per operator, when counted); returns the `report:` fields.

    `model` is the model the firmware embeds. With `plugin_lib`, QEMU counts
    instructions at the marks `find_sites` finds in the ELF, and `calls` (of the model's
    graph) are the kernel calls expected in Invoke(); `no_count` says why there is no
    exact count otherwise (it falls back to the SysTick estimate)."""
    elf, board = Path(result.elf), result.board
    progress.step(f"running it under QEMU ({board})")
    t0 = time.perf_counter()
    counts: InstructionCounts | None = None
    sites: InvokeSites | None = None
    if plugin_lib is not None:
        try:
            sites = find_sites(elf)
            code, console, counts = count_instructions(
                elf, board, plugin_lib, sites.marks, None, timeout
            )
        except PluginError as exc:
            no_count = str(exc)
    if counts is None:
        code, console = run_qemu(elf, board, timeout)
    result.seconds["qemu"] = time.perf_counter() - t0
    report = parse_report(console)
    result.ran = True
    result.exit_code = code
    result.verdict = describe_exit(code)
    result.bit_exact = code == 0 and report.get("mismatches") == 0
    result.console = console
    if report:
        result.pool_bytes = report["pool_bytes"]
        result.state_bytes = report["state_bytes"]
        result.stack_bytes = report["stack_bytes"]
        result.ram_bytes = result.pool_bytes + result.state_bytes + result.stack_bytes
        calibration = report.get("calibration_ticks", 0)
        if calibration > 0:
            result.instructions_icount = round(
                report["invoke_ticks"] * report["calibration_instructions"] / calibration
            )
            result.instructions = result.instructions_icount
            result.instructions_method = ICOUNT_METHOD
            per_tick = report["calibration_instructions"] / calibration
            if "allocate_ticks" in report:
                result.allocate_instructions = round(report["allocate_ticks"] * per_tick)
                result.verifier_instructions = round(
                    (report["allocate_ticks"] - report["allocate_trusted_ticks"]) * per_tick
                )
            if no_count and no_count != "not asked for":
                result.instructions_method += f" (no exact count: {no_count})"
    if counts is not None and sites is not None and result.bit_exact:
        graph = read_model(model)
        invoke, ops = attribute(counts, sites, graph, calls(graph))
        result.instructions = invoke
        result.instructions_method = PLUGIN_METHOD
        result.ops = ops
        result.interpreter_instructions = invoke - sum(op.instructions for op in ops)
    return report

"""Firmware of TFLM with the tflm-vmcu plug-in (cpp/tflm_plugin), beside stock TFLM, on a
Cortex-M core under QEMU:

    tflm-vmcu firmware OUT --runtime tflm-plugin --tflm-source DIR --cpu cortex-m4 --run [--json]

OUT is a model compiled for the plug-in (`tflm-vmcu compile --target tflm-plugin`). Two
ELFs are built from firmware/tflm_plugin/main.cc against the TFLM tree DIR (its cmsis_nn
tree: TFLM with its CMSIS-NN kernels) with arm-none-eabi-gcc, on the board the native
firmware uses:

    stock    stock TFLM on the model without its plan (plugin_target.stock_model()): TFLM's
             planner, TFLM's kernels for every op (CMSIS-NN's where the tree has them)
    plug-in  TFLM + the plug-in on OUT: the plan places every buffer, the ring kernels run
             every op this runtime has, TFLM's kernels the rest

Both register exactly the model's ops (firmware/tflm_plugin/model_ops.h, generated). The
stock firmware runs first and prints its outputs; they are the plug-in firmware's expected
outputs, compared on the core bit for bit (exit 0 only on a match). Both run the same seeded
input (`tflm-vmcu validate --runs 1 --seed SEED`).

TFLM is built by tflm_vmcu.tflm_build for the core (cortex_m_toolchain(): the library's and
the application's flags match, TF_LITE_STATIC_MEMORY and CMSIS_NN included): only the
tree's sources a firmware links are compiled, each once per tree, core and flags, in the
cache of the host TFLM builds ($TFLM_VMCU_CACHE). The plug-in and the runtime's kernels are
compiled with -O3, as the native firmware's Release build.

Instructions are counted exactly, as for the native firmware, from the first instruction of
tflite::MicroInterpreter::Invoke() to its return, and per operator from the call of its
registration's invoke() in MicroInterpreterGraph::InvokeSubgraph() to its return.
`arena_bytes` and `stock_arena_bytes` are MicroInterpreter::arena_used_bytes() on the core.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import ops as ring_ops
from ..errors import TflmVmcuError
from ..ir import Graph
from ..plan_format import PLAN_METADATA, read_plan
from ..plugin_target import op_counts, stock_model
from ..reader import load_bytes, read_model
from ..tflm_build import (
    Toolchain,
    build_program,
    cache_root,
    cortex_m_cpus,
    cortex_m_toolchain,
    has_cmsis_nn,
)
from . import counting
from .boards import BOARD_RAM_BYTES, DSP_CPUS, HANDLER_STACK_BYTES, STACK_BYTES, board_for
from .build import _TOOL_HINTS, check_load_segments, flash_bytes, section_sizes, source_dir
from .counting import InvokeSites, KernelCall, OpCount, PluginError, op_macs, op_type_totals
from .host import io_tables, write_if_changed
from .native import _folder
from .qemu import DEFAULT_TIMEOUT_S
from .result import PLUGIN_METHOD, FirmwareResult, run_and_report

# TFLM's Invoke() (main() calls it once) and the function whose loop calls each
# registration's invoke().
TFLM_INVOKE_SYMBOL = "_ZN6tflite16MicroInterpreter6InvokeEv"
TFLM_LOOP_SYMBOL = "_ZN6tflite21MicroInterpreterGraph14InvokeSubgraphEi"
# The arena handed to TFLM: what is left of the board's RAM after the stacks, the
# firmware's other data and a margin (TFLM reports how much of it it used).
ARENA_BYTES = BOARD_RAM_BYTES - STACK_BYTES - HANDLER_STACK_BYTES - (512 << 10)
APP_OPT = "-O3"
# The custom op of a fused inverted-bottleneck block (TflmPlugin::kBlockOpName).
BLOCK_OP = "TFLM_VMCU_BOTTLENECK"
TFLM_METHOD = (
    "qemu TCG plugin (tools/qemu_insn_plugin), exact: tflite::MicroInterpreter::Invoke() "
    "from its first instruction to its return"
)
_OUTPUT_LINE = re.compile(r"^output (\d+): ([0-9a-f]*)$", re.MULTILINE)
_TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-g++", "arm-none-eabi-size")


@dataclass
class PluginFirmwareResult(FirmwareResult):
    """A TFLM + plug-in firmware run beside stock TFLM on the same core and input. The
    shared fields describe the plug-in firmware (instructions, flash_bytes, ram_bytes:
    arena used + stack); the stock_* fields the stock firmware."""

    runtime: str = "tflm-plugin"
    tflm_source: str = ""
    kernels: str = ""  # "cmsis_nn" (the tree has CMSIS-NN) or "reference"
    arena_bytes: int | None = None  # TFLM + plug-in: arena_used_bytes() on the core
    stock_arena_bytes: int | None = None  # stock TFLM on the model without the plan
    stock_instructions: int | None = None
    stock_flash_bytes: int | None = None
    stock_stack_bytes: int | None = None
    stock_ram_bytes: int | None = None
    stock_elf: str = ""
    stock_verdict: str = ""
    stock_ops: list[OpCount] = field(default_factory=list)
    ring_ops: int = 0  # operators the ring kernels run in the plug-in firmware
    tflm_ops: int = 0  # operators TFLM's kernels run there
    fused_blocks: int = 0  # fused inverted-bottleneck blocks (one custom op each)
    # For each operator of the plug-in firmware, the stock operators it stands for (one,
    # or a fused block's operators), so that ops[k] compares with those stock_ops.
    stock_ops_of: list[list[int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = super().to_json()
        d["stock_ops"] = [
            {**asdict(op), "instructions_per_mac": op.instructions_per_mac} for op in self.stock_ops
        ]
        d["stock_op_types"] = op_type_totals(self.stock_ops)
        return d


def check_tools(run: bool = True) -> None:
    """TflmVmcuError naming the first missing program (no CMake needed here)."""
    names = [*_TOOLS, "qemu-system-arm"] if run else list(_TOOLS)
    for name in names:
        if shutil.which(name) is None:
            hint = _TOOL_HINTS.get(name, _TOOL_HINTS["arm-none-eabi-gcc"])
            raise TflmVmcuError(f"{name} not found: {hint}")


def op_adders(tree: Path) -> dict[str, str]:
    """BuiltinOperator name -> the MicroMutableOpResolver member that adds it, read from the
    tree's micro_mutable_op_resolver.h."""
    header = tree / "tensorflow" / "lite" / "micro" / "micro_mutable_op_resolver.h"
    text = header.read_text(errors="replace")
    adders: dict[str, str] = {}
    for chunk in re.split(r"\bTfLiteStatus (?=Add\w+\()", text)[1:]:
        name = re.match(r"(Add\w+)\(", chunk)
        builtin = re.search(r"\bBuiltinOperator_(\w+)", chunk.split("TfLiteStatus", 1)[0])
        if name and builtin:
            adders.setdefault(builtin.group(1), name.group(1))
    return adders


def ops_header(graph: Graph, adders: dict[str, str]) -> str:
    """model_ops.h: FW_MODEL_OPS(RING, TFLM) lists each builtin op of the model once, RING
    for the ops the plug-in's ring kernels run (with 1: and TFLM's kernel for the operators
    of it the plan leaves to TFLM), TFLM for the others;
    FW_MODEL_BLOCK_OPS(BLOCK) the plug-in's fused-block custom op, if the model has it."""
    plan = read_plan(graph)
    left = plan.tflm_kernel_ops if plan is not None else ()
    fallbacks = {graph.operators[k].opcode for k in left}
    lines, blocks, seen = [], [], set()
    for op in graph.operators:
        if op.opcode in seen:
            continue
        seen.add(op.opcode)
        if op.opcode.startswith("CUSTOM:"):
            if op.opcode != f"CUSTOM:{BLOCK_OP}":
                raise TflmVmcuError(
                    f"operator {op.index} ({op.opcode}): the firmware registers builtin ops "
                    f"and the plug-in's fused blocks ({BLOCK_OP}) only"
                )
            blocks.append(f'  BLOCK("{BLOCK_OP}")')
            continue
        if op.opcode not in adders:
            raise TflmVmcuError(
                f"operator {op.index} ({op.opcode}): the TFLM tree's MicroMutableOpResolver "
                "has no Add function for it (the firmware registers builtin ops only)"
            )
        if ring_ops.is_supported(op.opcode):
            # TFLM's kernel too, for the operators of this builtin the plan leaves to it.
            fallback = int(op.opcode in fallbacks)
            lines.append(f"  RING({op.opcode}, {adders[op.opcode]}, {fallback})")
        else:
            lines.append(f"  TFLM({op.opcode}, {adders[op.opcode]}, 0)")
    body = " \\\n".join(lines)
    block_body = " \\\n".join(blocks)
    return (
        "/* Generated by `tflm-vmcu firmware --runtime tflm-plugin`: the model's ops. */\n"
        "#ifndef TFLM_VMCU_FIRMWARE_MODEL_OPS_H_\n#define TFLM_VMCU_FIRMWARE_MODEL_OPS_H_\n"
        f"#define FW_MODEL_OPS(RING, TFLM) \\\n{body}\n"
        f"#define FW_MODEL_BLOCK_OPS(BLOCK) \\\n{block_body}\n#endif\n"
    )


def io_header(
    name: str, seed: int, inputs: list[bytes], expected: list[bytes] | None, num_outputs: int
) -> str:
    """model_io.h for firmware/tflm_plugin/main.cc: the input bytes and (unless None) the
    expected output bytes."""
    label = re.sub(r"[^A-Za-z0-9_.+-]", "_", name)
    outs = expected if expected is not None else [b""] * num_outputs
    parts = [
        f"/* Generated by `tflm-vmcu firmware --runtime tflm-plugin`: input (seed {seed}) "
        f"and expected output of {label}. */\n",
        "#ifndef TFLM_VMCU_FIRMWARE_MODEL_IO_H_\n#define TFLM_VMCU_FIRMWARE_MODEL_IO_H_\n\n",
        f'#define FW_MODEL_NAME "{label}"\n',
        f"#define FW_NUM_INPUTS {len(inputs)}\n",
        f"#define FW_NUM_OUTPUTS {num_outputs}\n",
        f"#define FW_HAS_EXPECTED {int(expected is not None)}\n\n",
    ]
    parts += io_tables(inputs, outs)
    parts.append("\n#endif /* TFLM_VMCU_FIRMWARE_MODEL_IO_H_ */\n")
    return "".join(parts)


def model_header(model: bytes, arena_bytes: int) -> str:
    """model_data.h: g_model (16-byte aligned, in flash), g_model_len and
    G_MODEL_ARENA_BYTES (the arena handed to TFLM)."""
    rows = (", ".join(f"0x{b:02x}" for b in model[i : i + 16]) for i in range(0, len(model), 16))
    body = ",\n".join(f"    {row}" for row in rows)
    return (
        "/* Generated by `tflm-vmcu firmware --runtime tflm-plugin`: the model and the arena\n"
        " * handed to TFLM (more than it needs: the firmware reports arena_used_bytes()). */\n"
        "#ifndef TFLM_VMCU_FIRMWARE_MODEL_DATA_H_\n#define TFLM_VMCU_FIRMWARE_MODEL_DATA_H_\n"
        f"#define G_MODEL_ARENA_BYTES {arena_bytes}\n"
        f"alignas(16) static const unsigned char g_model[{len(model)}] = {{\n{body}\n}};\n"
        f"static const unsigned int g_model_len = {len(model)};\n#endif\n"
    )


def align_operators(graph: Graph, stock: Graph) -> list[list[int]]:
    """For each operator of `graph` (a model compiled for the plug-in), the operators of
    `stock` (stock_model() of it) that compute the same: the one at the same place, or a
    fused block's operators. A fused block writes the tensor its last operator writes in
    the stock model (un-fusing keeps the tensor table); empty lists when they disagree."""
    writer = {t: op.index for op in stock.operators for t in op.outputs}
    out, first = [], 0
    for op in graph.operators:
        last = writer.get(op.outputs[0], -1) if op.outputs else -1
        if last < first:
            return [[] for _ in graph.operators]
        out.append(list(range(first, last + 1)))
        first = last + 1
    return out if first == len(stock.operators) else [[] for _ in graph.operators]


def operator_calls(graph: Graph) -> list[KernelCall]:
    """The kernel calls TFLM's Invoke() makes: one per operator, in order."""
    return [(op.index, op.opcode, op_macs(graph, op)) for op in graph.operators]


def tflm_invoke_sites(elf: Path) -> InvokeSites:
    """The marks of a TFLM firmware: MicroInterpreter::Invoke(), main()'s call to it, and
    the call of each registration's invoke() in InvokeSubgraph()'s loop (the loop's other
    indirect call, MicroAllocator::ResetTempAllocations(), is left out)."""
    sites = counting.invoke_sites(
        elf, invoke_symbol=TFLM_INVOKE_SYMBOL, loop_symbol=TFLM_LOOP_SYMBOL, kernel_symbols=()
    )
    calls = _registration_calls(elf, sites.eval_calls)
    return InvokeSites(sites.invoke_entry, sites.invoke_return, calls)


def _registration_calls(
    elf: Path, calls: tuple[tuple[int, int], ...]
) -> tuple[tuple[int, int], ...]:
    """Of InvokeSubgraph()'s indirect calls, the registration's invoke(): a call through a
    pointer loaded from an object (TFLMRegistration::invoke), not a virtual call (through
    a pointer loaded from a vtable: `ldr rX, [rY, #0]` then `ldr rZ, [rX, #slot]`), such as
    MicroAllocator::ResetTempAllocations() or the profiler's."""
    body = counting._disassemble(elf, TFLM_LOOP_SYMBOL)
    index = {addr: i for i, (addr, _, _) in enumerate(body)}

    def loaded(reg: str, before: int, window: int) -> tuple[int, str] | None:
        """The last `ldr reg, [...]` in the `window` instructions before `before`."""
        for k in range(before - 1, max(-1, before - 1 - window), -1):
            _, mnemonic, operands = body[k]
            if mnemonic.startswith("ldr") and operands.split(",")[0].strip() == reg:
                return k, operands
        return None

    keep = []
    for call, ret in calls:
        i = index[call]
        load = loaded(body[i][2].strip(), i, 12)
        if load is None:
            continue
        base = re.search(r"\[(\w+)", load[1])
        table = loaded(base.group(1), load[0], 4) if base else None
        if table is None or re.search(r"\[\w+(, #0)?\]$", table[1].strip()) is None:
            keep.append((call, ret))
    if len(keep) != 1:
        raise PluginError(
            f"{elf.name}: expected one call of a registration's invoke() in "
            f"InvokeSubgraph(), found {len(keep)} of {len(calls)} indirect calls"
        )
    return tuple(keep)


def _outputs(console: str, sizes: list[int]) -> list[bytes]:
    chunks: dict[int, list[str]] = {}
    for k, hexa in _OUTPUT_LINE.findall(console):
        chunks.setdefault(int(k), []).append(hexa)
    outs = [bytes.fromhex("".join(chunks.get(k, []))) for k in range(len(sizes))]
    if [len(o) for o in outs] != sizes:
        raise TflmVmcuError("the firmware printed outputs of the wrong size")
    return outs


def _sources(root: Path, plugin: bool) -> tuple[list[Path], list[Path]]:
    fw = root / "firmware"
    sources = [fw / "tflm_plugin" / "main.cc", fw / "startup.c", fw / "semihost.c"]
    includes = [fw]
    if plugin:
        sources += [root / "cpp" / "tflm_plugin" / "tflm_plugin.cc"]
        sources += sorted((root / "cpp" / "src").rglob("*.cc"))
        includes += [root / "cpp" / "include", root / "cpp" / "src"]
        includes.append(root / "cpp" / "tflm_plugin" / "include")
    return sources, includes


def _build(
    tree: Path,
    toolchain: Toolchain,
    cpu: str,
    generated: Path,
    elf: Path,
    plugin: bool,
    stack_bytes: int,
    cache_dir: Path | None,
) -> Path:
    root = source_dir()
    sources, includes = _sources(root, plugin)
    ld = root / "firmware" / "mps2.ld"
    defines = [f'FW_CPU="{cpu}"', f'FW_BOARD="{board_for(cpu)}"']
    if plugin:
        defines.append("TFLM_VMCU_PLUGIN")
    link = [
        "-nostartfiles",
        f"-T{ld}",
        f"-Wl,--defsym=__stack_size={stack_bytes}",
        "--specs=nano.specs",
        "--specs=nosys.specs",
    ]
    return build_program(
        tree,
        sources,
        elf,
        include_dirs=includes,
        source_flags={sources[0]: [f"-I{generated.resolve()}"]},  # main.cc alone reads them
        defines=defines,
        cache_dir=cache_dir,
        toolchain=toolchain,
        opt=APP_OPT,
        link_flags=link,
        link_deps=[ld],
    )


def _result(model: str, cpu: str, elf: Path, pool: int, **kw: Any) -> PluginFirmwareResult:
    check_load_segments(elf)
    return PluginFirmwareResult(
        model=model,
        cpu=cpu,
        board=board_for(cpu),
        elf=str(elf),
        flash_bytes=flash_bytes(section_sizes(elf)),
        host_pool_bytes=pool,
        host_state_bytes=0,
        memory_block_bytes=ARENA_BYTES,
        plan="tflm-plugin",
        dsp=cpu in DSP_CPUS,
        **kw,
    )


def firmware_plugin(
    model: str | Path | bytes,
    tree: str | Path,
    cpu: str = "cortex-m4",
    *,
    run: bool = True,
    out_dir: str | Path | None = None,
    seed: int = 0,
    timeout: float = DEFAULT_TIMEOUT_S,
    stack_bytes: int = STACK_BYTES,
    count: bool = True,
    corrupt_expected: bool = False,
    cache_dir: Path | None = None,
    name: str | None = None,
) -> PluginFirmwareResult:
    """Builds the stock and the plug-in firmware of `model` (compiled for the plug-in)
    against the TFLM tree `tree` for `cpu` and, with `run`, runs both under QEMU: the
    plug-in's outputs are compared with stock TFLM's on the core. `out_dir` receives the
    headers and the ELFs (a temporary folder when None). With `count`, instructions are
    counted exactly (QEMU plugin) for both. `corrupt_expected` flips one expected byte
    (to check that the verdict is real). `name` labels the model (default: its file name)."""
    from ..validate import make_inputs

    board_for(cpu)  # an unknown core fails before anything is built
    if cpu not in cortex_m_cpus():
        raise TflmVmcuError(
            f"--runtime tflm-plugin builds TFLM for {', '.join(cortex_m_cpus())}, not {cpu}"
        )
    tree = Path(tree)
    if not tree.is_dir():
        raise TflmVmcuError(f"TFLM source tree {tree} does not exist or is not a folder")
    check_tools(run)
    t0 = time.perf_counter()
    data = load_bytes(model)
    graph = read_model(data)
    if PLAN_METADATA not in graph.metadata:
        raise TflmVmcuError(
            "the model carries no plan for the plug-in: compile it with "
            "`tflm-vmcu compile MODEL -o OUT --target tflm-plugin`"
        )
    plan = read_plan(graph)
    stock = stock_model(data)
    stock_graph = read_model(stock)
    arrays = make_inputs(graph, 1, seed)[0]
    if not arrays:
        raise TflmVmcuError("the model has no inputs")
    inputs = [np.ascontiguousarray(a).tobytes() for a in arrays]
    sizes = [graph.tensors[t].nbytes for t in graph.outputs]
    if name is None:
        name = Path(model).name if isinstance(model, (str, Path)) else "model"
    adders = op_adders(tree)
    toolchain = cortex_m_toolchain(cpu, has_cmsis_nn(tree))
    host_seconds = time.perf_counter() - t0
    with _folder(out_dir) as out:
        stem = Path(name).stem
        plugin_lib: Path | None = None
        no_count = "" if count else "not asked for"
        if run and count:
            try:
                plugin_lib = counting.build_plugin(cache_root(cache_dir) / "qemu-plugin")
            except TflmVmcuError as exc:
                no_count = str(exc).splitlines()[0]
        seconds: dict[str, float] = {"host": host_seconds}

        def step(
            kind: str, model_bytes: bytes, g: Graph, expected: list[bytes] | None
        ) -> tuple[PluginFirmwareResult, dict[str, int]]:
            t = time.perf_counter()
            headers = {
                "model_data.h": model_header(model_bytes, ARENA_BYTES),
                "model_io.h": io_header(name, seed, inputs, expected, len(sizes)),
                "model_ops.h": ops_header(g, adders),
            }
            write_if_changed(out / f"generated-{kind}", headers)  # for the user
            # Built from a folder named after the headers' contents, so that the same
            # headers (from any output folder) find main.cc's object in the cache.
            digest = hashlib.sha256("\0".join(headers.values()).encode()).hexdigest()[:20]
            gen = cache_root(cache_dir) / "firmware-generated" / f"{kind}-{digest}"
            write_if_changed(gen, headers)
            elf = out / f"{stem}-{cpu}-{kind}.elf"
            _build(tree, toolchain, cpu, gen, elf, kind == "plugin", stack_bytes, cache_dir)
            seconds[f"build_{kind}"] = time.perf_counter() - t
            res = _result(name, cpu, elf, plan.pool_bytes if plan else 0)
            if not run:
                return res, {}
            t = time.perf_counter()
            report = run_and_report(
                res,
                model_bytes,
                timeout,
                plugin_lib,
                no_count,
                find_sites=tflm_invoke_sites,
                calls=operator_calls,
            )
            seconds[f"qemu_{kind}"] = time.perf_counter() - t
            if res.instructions_method == PLUGIN_METHOD:
                res.instructions_method = TFLM_METHOD
            return res, report

        stock_res, stock_report = step("stock", stock, stock_graph, None)
        expected: list[bytes] | None = None
        if run:
            if not stock_res.bit_exact:
                last = _last_line(stock_res.console)
                detail = "" if stock_res.verdict in last else f": {last}"
                raise TflmVmcuError(f"stock TFLM failed on {cpu}: {stock_res.verdict}{detail}")
            expected = _outputs(stock_res.console, sizes)
            if corrupt_expected:
                expected[0] = bytes([expected[0][0] ^ 1]) + expected[0][1:]
        result, report = step("plugin", data, graph, expected)
        result.seconds = seconds
        result.tflm_source = str(tree)
        result.kernels = "cmsis_nn" if has_cmsis_nn(tree) else "reference"
        counts = op_counts(graph)
        result.ring_ops, result.tflm_ops = counts["ring"], counts["tflm"]
        result.fused_blocks = counts["fused_blocks"]
        result.stock_ops_of = align_operators(graph, stock_graph)
        result.stock_elf = stock_res.elf
        result.stock_flash_bytes = stock_res.flash_bytes
        if run:
            result.arena_bytes = report.get("arena_bytes")
            result.stock_arena_bytes = stock_report.get("arena_bytes")
            result.stock_instructions = stock_res.instructions
            result.stock_stack_bytes = stock_res.stack_bytes
            result.stock_ram_bytes = stock_res.ram_bytes
            result.stock_verdict = "ran" if stock_res.exit_code == 0 else stock_res.verdict
            result.stock_ops = stock_res.ops
            if result.bit_exact and not corrupt_expected:
                # The core compared; the printed outputs must agree with it.
                result.bit_exact = _outputs(result.console, sizes) == expected
        if out_dir is None:
            result.elf = result.stock_elf = ""
    return result


def _last_line(console: str) -> str:
    lines = [ln.strip() for ln in console.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"

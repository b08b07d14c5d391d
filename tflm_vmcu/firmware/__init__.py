"""Bare-metal firmware for one model: compile it with the ring plan (or a flat,
tensor-level plan), compute the expected output with the host runtime, build firmware/
for a Cortex-M core with arm-none-eabi-gcc (cmake/arm-none-eabi.cmake) and run it under
QEMU on an MPS2 board. The firmware compares its output with the host's bit for bit and
exits 0 only on a match.

    tflm-vmcu firmware MODEL --cpu cortex-m4 --run [--json] [--out DIR] [--plan ring|flat]
                             [--no-dsp]

A build folder holds the runtime library and the startup code compiled once for one core;
each further model only recompiles main.cc and relinks (pass the same --build-dir).

On cores with the Armv7E-M DSP extension (Cortex-M4, M7), CONV_2D, DEPTHWISE_CONV_2D and
FULLY_CONNECTED use their DSP loops (cpp/src/kernels/dsp.h). --no-dsp builds the runtime
with -DTFLM_VMCU_NO_DSP (through TFLM_VMCU_EXTRA_FLAGS), so the same core runs the portable
loops, e.g. to compare the two. The setting is fixed when a build folder is configured: the
default folder is named after it (build-CPU or build-CPU-nodsp), and a --build-dir
configured for the other setting is refused.

Instruction counts are exact: QEMU runs with a TCG plugin (tools/qemu_insn_plugin) that
adds one to a counter before every executed instruction and logs the counter whenever
execution reaches a marked address. The marks are the first instruction of
Interpreter::Invoke(), the instruction after its call in main(), and the kernel call in
Invoke()'s loop with the instruction after it (found in the ELF with arm-none-eabi-nm and
-objdump). Invoke() costs the count between the first two; each operator costs the count
between its kernel call and the return, so a kernel's count includes everything it
calls (helpers, memcpy). When the plugin cannot be built (no host C compiler) or
loaded, the count falls back to the SysTick estimate under -icount, and the result says
why.

Modules, by responsibility (every public name is importable from this package):

    boards    cores, their QEMU boards, RAM/flash and stack reserves
    host      host side: compile for a plan, host_run(), the headers, check_fits()
    build     toolchain checks, source_dir(), CMake configure/build of a firmware
              project, flash bytes of an ELF
    qemu      running an ELF on a board, exit codes, the `report:` line
    counting  the QEMU plugin, the marks in an ELF, the counts and their attribution
    result    FirmwareResult and run_and_report(): run a built ELF, fill in the result
    native    firmware(): the runtime's own firmware (firmware/)
    tflm_plugin  firmware_plugin(): TFLM + the plug-in beside stock TFLM, built from a
              TFLM tree (firmware/tflm_plugin/, `--runtime tflm-plugin`)
    command   `tflm-vmcu firmware` (add_firmware_parser, cmd_firmware)

Another kind of firmware is a module beside native.py that reuses every step and adds
only its own; tflm_plugin.py (TFLM + the plug-in, beside stock TFLM, from a TFLM tree the
user gives) is one:

1. Host side: its own expected output and headers (tflm_plugin: the model for the
   plug-in and stock_model() of it for stock TFLM, and the model's op list), and its own
   check against boards.BOARD_RAM_BYTES (tflm_plugin: a fixed arena in what the board
   has left).
2. Build: either build.configure(build_dir, cpu, build_type, stack_bytes, dsp,
   project=ITS_CMAKE_FOLDER, defines={...}) with build.build_targets()/build_elf() (its
   own CMake project with the same toolchain file, core, board and stack), or, for a
   program against a TFLM tree, tflm_build.build_program() with
   tflm_build.cortex_m_toolchain(cpu) (the same core flags as cmake/arm-none-eabi.cmake;
   only the TFLM sources the ELF links are compiled, and cached) and the board code of
   firmware/ (startup.c, semihost.c, mps2.ld). build.section_sizes() and
   build.flash_bytes() size the ELF.
3. Run and count: counting.build_plugin() once per build folder; run_and_report(result,
   model, timeout, plugin_lib, no_count, find_sites=..., calls=...) runs the ELF on its
   board (qemu.run_qemu(), or counting.count_instructions() with the marks that
   find_sites returns: counting.invoke_sites() with its own invoke_symbol (TFLM's
   MicroInterpreter::Invoke()) and loop_symbol (the function whose loop calls each
   registration's invoke)), and `calls` gives the kernel calls expected per graph (for
   TFLM, one per operator).
4. Report: the firmware prints the same `report:` line (pool_bytes, state_bytes,
   stack_bytes, mismatches, invoke_ticks, calibration_*) plus its own fields (e.g.
   arena_bytes); run_and_report() fills the shared fields of the result and returns
   every field. Its result is a dataclass that extends FirmwareResult with those fields
   (PluginFirmwareResult), so to_json() carries them with the native keys.
5. CLI: command.add_firmware_parser() has the options that choose the kind (--runtime,
   --tflm-source), and cmd_firmware() dispatches on them.
"""

from .boards import (
    BOARD_FLASH_BYTES,
    BOARD_RAM_BYTES,
    BOARDS,
    DSP_CPUS,
    HANDLER_STACK_BYTES,
    STACK_BYTES,
    STATIC_RESERVE_BYTES,
    board_for,
)
from .build import (
    NO_DSP_FLAG,
    build_elf,
    build_library,
    build_targets,
    check_tools,
    configure,
    copy_if_changed,
    default_build_dir,
    flash_bytes,
    missing_tools,
    run_tool,
    section_sizes,
    source_dir,
)
from .command import add_firmware_parser, cmd_firmware
from .counting import (
    FUSED_SYMBOL,
    INVOKE_SYMBOL,
    PLUGIN_SOURCE,
    InstructionCounts,
    InvokeSites,
    KernelCall,
    OpCount,
    PluginError,
    attribute,
    build_plugin,
    count_instructions,
    host_compiler,
    invoke_sites,
    kernel_calls,
    op_macs,
    op_type_totals,
    plugin_arguments,
    read_counts,
)
from .host import (
    FLAT_SEGMENT_BYTES,
    PLANS,
    HostRun,
    check_fits,
    compile_for_plan,
    flat_plan,
    host_run,
    io_header,
    write_headers,
)
from .native import firmware
from .qemu import (
    DEFAULT_TIMEOUT_S,
    EXCEPTIONS,
    EXIT_CODES,
    FAULT_BASE,
    describe_exit,
    parse_report,
    qemu_command,
    run_qemu,
)
from .result import ICOUNT_METHOD, PLUGIN_METHOD, FirmwareResult, run_and_report
from .tflm_plugin import PluginFirmwareResult, firmware_plugin

__all__ = [
    "BOARDS",
    "BOARD_FLASH_BYTES",
    "BOARD_RAM_BYTES",
    "DEFAULT_TIMEOUT_S",
    "DSP_CPUS",
    "EXCEPTIONS",
    "EXIT_CODES",
    "FAULT_BASE",
    "FLAT_SEGMENT_BYTES",
    "FUSED_SYMBOL",
    "HANDLER_STACK_BYTES",
    "ICOUNT_METHOD",
    "INVOKE_SYMBOL",
    "NO_DSP_FLAG",
    "PLANS",
    "PLUGIN_METHOD",
    "PLUGIN_SOURCE",
    "STACK_BYTES",
    "STATIC_RESERVE_BYTES",
    "FirmwareResult",
    "HostRun",
    "InstructionCounts",
    "InvokeSites",
    "KernelCall",
    "OpCount",
    "PluginError",
    "PluginFirmwareResult",
    "add_firmware_parser",
    "attribute",
    "board_for",
    "build_elf",
    "build_library",
    "build_plugin",
    "build_targets",
    "check_fits",
    "check_tools",
    "cmd_firmware",
    "compile_for_plan",
    "configure",
    "copy_if_changed",
    "count_instructions",
    "default_build_dir",
    "describe_exit",
    "firmware",
    "firmware_plugin",
    "flash_bytes",
    "flat_plan",
    "host_compiler",
    "host_run",
    "invoke_sites",
    "io_header",
    "kernel_calls",
    "missing_tools",
    "op_macs",
    "op_type_totals",
    "parse_report",
    "plugin_arguments",
    "qemu_command",
    "read_counts",
    "run_and_report",
    "run_qemu",
    "run_tool",
    "section_sizes",
    "source_dir",
    "write_headers",
]

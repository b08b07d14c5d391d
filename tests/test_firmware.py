"""Bare-metal firmware under QEMU: every model runs bit-exact on Cortex-M4 and Cortex-M7,
with its ring plan and with a flat plan, and with the portable kernels (--no-dsp); the
instruction-count plugin is exact and repeatable.

The QEMU tests need arm-none-eabi-gcc (with newlib), CMake and qemu-system-arm, and are
skipped with a message when one is missing. The runtime library is built once per core;
each model then only compiles main.cc and links.
"""

from __future__ import annotations

import argparse
import json
import stat
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from conftest import UNSUPPORTED_SHARED, committed_models, model_params, shared_models

from tflm_vmcu.device import io_bytes, needs, stack_keys
from tflm_vmcu.errors import TflmVmcuError
from tflm_vmcu.firmware import (
    BOARD_RAM_BYTES,
    BOARDS,
    FAULT_BASE,
    NO_DSP_FLAG,
    PLUGIN_METHOD,
    HostRun,
    InstructionCounts,
    InvokeSites,
    add_firmware_parser,
    attribute,
    build_library,
    build_plugin,
    check_fits,
    check_tools,
    compile_for_plan,
    configure,
    count_instructions,
    default_build_dir,
    firmware,
    flat_plan,
    host_compiler,
    host_run,
    invoke_sites,
    io_header,
    kernel_calls,
    missing_tools,
    op_macs,
    plugin_arguments,
)
from tflm_vmcu.plan_format import read_plan
from tflm_vmcu.reader import read_model
from tflm_vmcu.synth import ModelBuilder

CPUS = ["cortex-m4", "cortex-m7"]
MODELS = committed_models() + [p for p in shared_models() if p.name not in UNSUPPORTED_SHARED]
_MISSING = missing_tools(run=True)
requires_tools = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"{', '.join(_MISSING)} not found: the firmware tests need the GNU Arm "
    "toolchain (gcc-arm-none-eabi, libnewlib-arm-none-eabi), CMake and qemu-system-arm",
)


requires_plugin = pytest.mark.skipif(
    host_compiler() is None, reason="no host C compiler to build the QEMU plugin"
)


@cache
def _host(path: Path, plan: str = "ring") -> HostRun:
    return host_run(path, seed=0, plan=plan)


def _model(name: str) -> Path:
    return next(p for p in committed_models() if p.name == name)


@pytest.fixture(scope="session")
def build_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One CMake build folder per core, with the runtime library built once."""
    dirs = {}
    for cpu in CPUS:
        d = tmp_path_factory.mktemp(f"firmware-{cpu}")
        build_library(d, cpu)
        dirs[cpu] = d
    return dirs


@pytest.fixture(scope="session")
def nodsp_build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Cortex-M4 build folder with the portable kernels (--no-dsp), library built."""
    d = tmp_path_factory.mktemp("firmware-cortex-m4-nodsp")
    build_library(d, "cortex-m4", dsp=False)
    return d


@pytest.mark.qemu
@requires_tools
@pytest.mark.parametrize("cpu", CPUS)
@pytest.mark.parametrize("model", model_params(MODELS))
def test_model_bit_exact_under_qemu(
    model: Path,
    cpu: str,
    build_dirs: dict[str, Path],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    host = _host(model)
    try:
        check_fits(host)
    except TflmVmcuError as exc:
        pytest.skip(f"{model.name} does not fit {BOARDS[cpu]}: {exc}")
    r = firmware(model, cpu, build_dir=build_dirs[cpu], out_dir=tmp_path, host=host)
    assert r.bit_exact, f"{r.verdict}\n{r.console}"
    assert r.exit_code == 0
    # The plan is the host's: same pool. The core's state is the one the host runtime
    # computed for a 32-bit Arm core (arm32_layout.h), to the byte.
    assert r.pool_bytes == host.pool_bytes
    assert r.state_bytes is not None
    assert r.state_bytes == host.arm32_state_bytes
    assert 0 < r.state_bytes < host.state_bytes
    # What `tflm-vmcu fit` predicts without the toolchain (tflm_vmcu/device.py): the same
    # pool and state, the total RAM and the flash (less the harness's test data) within 2%,
    # the stack within 128 bytes (so that a stale figure shows on large models too).
    need = needs(host.model, cpu)
    assert (need.pool_bytes, need.state_bytes) == (r.pool_bytes, r.state_bytes)
    assert abs(need.stack_bytes - r.stack_bytes) <= 128, (need, r.stack_bytes)
    assert r.ram_bytes is not None
    assert abs(need.ram_bytes - r.ram_bytes) <= 0.02 * r.ram_bytes, (need, r.stack_bytes)
    program = r.flash_bytes - io_bytes(host.inputs, host.outputs)
    assert abs(need.flash_bytes - program) <= 0.02 * program, (need, program)
    assert r.stack_bytes is not None
    assert 0 < r.stack_bytes < 64 * 1024
    assert r.ram_bytes == r.pool_bytes + r.state_bytes + r.stack_bytes
    # The memory block is exactly the core's pool + state, rounded up to 16, as `export`
    # declares it: no margin.
    assert r.memory_block_bytes == -(-(r.pool_bytes + r.state_bytes) // 16) * 16
    assert r.flash_bytes > len(host.model)
    assert r.instructions is not None
    assert r.instructions > 0
    if host_compiler() is not None:
        # Exact count (plugin): one entry per operator, and the SysTick estimate agrees
        # up to its fixed overhead (the calls around Invoke()) and one tick.
        assert r.instructions_method == PLUGIN_METHOD
        assert len(r.ops) == len(kernel_calls(read_model(host.model)))
        assert r.interpreter_instructions is not None
        assert r.interpreter_instructions > 0
        assert r.instructions == r.interpreter_instructions + sum(o.instructions for o in r.ops)
        assert r.instructions_icount is not None
        assert abs(r.instructions_icount - r.instructions) <= max(0.01 * r.instructions, 200)
    for key in ("flash_bytes", "ram_bytes", "pool_bytes", "state_bytes", "stack_bytes"):
        record_property(key, getattr(r, key))
    record_property("instructions", r.instructions)


@pytest.mark.qemu
@requires_tools
@pytest.mark.parametrize("cpu", CPUS)
def test_wrong_expected_output_fails(cpu: str, build_dirs: dict[str, Path]) -> None:
    """The verdict is real: one flipped expected bit makes the firmware exit non-zero."""
    model = committed_models()[0]
    r = firmware(model, cpu, build_dir=build_dirs[cpu], host=_host(model), corrupt_expected=True)
    assert r.exit_code == 1, r.console
    assert r.bit_exact is False
    assert "OUTPUT DIFFERS" in r.console
    assert r.verdict == "output differs from the host's"


@pytest.mark.qemu
@requires_tools
def test_stack_overflow_ends_in_a_fault_exit(build_dirs: dict[str, Path]) -> None:
    """A thread stack far too small faults (or is seen used up): a non-zero exit code,
    not a hang."""
    model = committed_models()[0]
    r = firmware(
        model, "cortex-m4", build_dir=build_dirs["cortex-m4"], host=_host(model), stack_bytes=256
    )
    assert r.exit_code is not None
    assert r.exit_code == 5 or r.exit_code >= FAULT_BASE, r.console
    assert not r.bit_exact


@pytest.mark.qemu
@requires_tools
def test_cli_json(
    build_dirs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    add_firmware_parser(parser.add_subparsers(dest="command", required=True))
    model = committed_models()[0]
    cmd = ["firmware", str(model), "--cpu", "cortex-m7", "--run", "--json"]
    cmd += ["--out", str(tmp_path), "--build-dir", str(build_dirs["cortex-m7"])]
    args = parser.parse_args(cmd)
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["schema_version"], out["command"]) == (1, "firmware")  # docs/JSON.md
    assert out["bit_exact"] is True
    assert out["cpu"] == "cortex-m7"
    assert out["board"] == "mps2-an500"
    for key in ("instructions", "flash_bytes", "ram_bytes", "pool_bytes", "state_bytes"):
        assert isinstance(out[key], int), key
        assert out[key] > 0, key
    assert out["ram_bytes"] == out["pool_bytes"] + out["state_bytes"] + out["stack_bytes"]
    assert Path(out["elf"]).is_file()
    assert (tmp_path / "model_data.h").is_file()
    assert (tmp_path / "model_io.h").is_file()


@pytest.mark.qemu
@requires_tools
@pytest.mark.parametrize("cpu", CPUS)
def test_rows_mode_block_with_strided_expansion_bit_exact_under_qemu(
    cpu: str, build_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """A rows-mode block whose 1x1 expansion has stride 2 and an odd output width: the DSP
    build expands two B pixels at a time, the last of each row alone."""
    b = ModelBuilder(seed=9)
    x = b.conv2d(b.input([1, 22, 18, 3]), 8, (3, 3), activation="RELU")
    e = b.conv2d(x, 96, (1, 1), stride=(2, 2), activation="RELU6")  # 11x9
    y = b.conv2d(b.depthwise_conv2d(e, 1, (3, 3), activation="RELU6"), 8, (1, 1))
    model = tmp_path / "strided_block.tflite"
    model.write_bytes(b.build([y]))
    host = host_run(model, seed=0)
    plan = read_plan(read_model(host.model))
    assert plan is not None
    assert [(block.first, block.last, block.window) for block in plan.blocks] == [(1, 3, False)]
    r = firmware(model, cpu, build_dir=build_dirs[cpu], out_dir=tmp_path, host=host)
    assert r.bit_exact, f"{r.verdict}\n{r.console}"


@pytest.mark.qemu
@requires_tools
@pytest.mark.parametrize("cpu", CPUS)
def test_window_mode_blocks_bit_exact_under_qemu(
    cpu: str, build_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """A block in window mode (--fusion window: a 5x5 block whose output outgrows its
    input, as the paper's B5) runs bit-exact on the core, in a smaller pool."""
    b = ModelBuilder(seed=8)
    x = b.conv2d(b.input([1, 14, 14, 3]), 8, (3, 3), activation="RELU")
    y = b.conv2d(b.depthwise_conv2d(b.conv2d(x, 32, (1, 1)), 1, (5, 5)), 12, (1, 1))
    model = tmp_path / "block.tflite"
    model.write_bytes(b.build([y]))
    host = host_run(model, seed=0, plan="ring-window")
    plan = read_plan(read_model(host.model))
    assert plan is not None
    assert any(block.window for block in plan.blocks)
    r = firmware(model, cpu, build_dir=build_dirs[cpu], out_dir=tmp_path, host=host)
    assert r.bit_exact, f"{r.verdict}\n{r.console}"
    assert r.pool_bytes == host.pool_bytes < host_run(model, seed=0).pool_bytes


@pytest.mark.qemu
@requires_tools
@pytest.mark.parametrize("cpu", CPUS)
@pytest.mark.parametrize("plan", ["ring", "ring-window"])
def test_chain_with_stem_bit_exact_under_qemu(
    cpu: str, plan: str, build_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """A fused chain (a 3x3 stem expansion, then a block whose 1x1 expansion reads the rows
    of the stem block's output), 11 pixels wide: the DSP build expands two B pixels at a
    time from patches and from the ring of rows, the last of each row alone."""
    b = ModelBuilder(seed=12)
    x = b.conv2d(b.input([1, 21, 21, 3]), 16, (3, 3), (2, 2), activation="RELU")
    x = b.conv2d(b.depthwise_conv2d(x, 1, activation="RELU"), 32, (1, 1))
    x = b.conv2d(x, 64, (1, 1), activation="RELU")
    x = b.conv2d(b.depthwise_conv2d(x, 1, (3, 3), (2, 2), activation="RELU"), 8, (1, 1))
    model = tmp_path / "chain.tflite"
    model.write_bytes(b.build([b.conv2d(x, 8, (1, 1))]))
    host = host_run(model, seed=0, plan=plan)
    compiled = read_plan(read_model(host.model))
    assert compiled is not None
    assert [(block.first, block.last) for block in compiled.blocks] == [(0, 5)]
    r = firmware(model, cpu, build_dir=build_dirs[cpu], out_dir=tmp_path, host=host)
    assert r.bit_exact, f"{r.verdict}\n{r.console}"
    # A chain's stages call one another: `fit` predicts its stack from FUSED_CHAIN_2.
    assert stack_keys(read_model(host.model)) == {"FUSED_CHAIN_2", "CONV_2D"}
    need = needs(host.model, cpu)
    assert r.stack_bytes is not None
    assert abs(need.stack_bytes - r.stack_bytes) <= 128, (need, r.stack_bytes)


def dsp_paths_model() -> bytes:
    """CONV_2D layers that take every branch of the DSP conv loops (kernels/dsp_pairs.h and
    the single-pixel loops): an odd number of pixels (the last one alone), an odd number of
    output channels, receptive fields that are not a multiple of four values, dilation, a
    receptive field too large for the pair loops (n > 256), and single pixels with few
    output channels. Every layer's output is a model output, so the firmware compares each."""
    b = ModelBuilder(seed=11)
    x = b.input([1, 5, 7, 7])  # 35 pixels, n = 7 for a 1x1 filter
    outputs = [b.conv2d(x, 5, (1, 1), activation="RELU")]
    layers: list[dict[str, Any]] = [
        dict(filters=3, kernel=(3, 3), stride=(2, 2)),  # 3x4 pixels, n = 45
        dict(filters=12, kernel=(3, 3), dilation=(2, 2)),  # n = 27
        dict(filters=150, kernel=(1, 1)),  # a pair writes 300 bytes
        dict(filters=40, kernel=(1, 1), activation="RELU6"),  # n = 150
        dict(filters=8, kernel=(3, 3)),  # n = 360: one pixel at a time, extended
        dict(filters=3, kernel=(3, 4), padding="VALID"),  # one pixel, 3 channels: not extended
        dict(filters=2, kernel=(1, 1)),
    ]
    for layer in layers:
        outputs.append(b.conv2d(outputs[-1], **layer))
    return b.build(outputs)


def dsp_fc_model() -> bytes:
    """FULLY_CONNECTED layers through the DSP loops: batch rows two at a time with the last
    one alone (35 rows), receptive fields not a multiple of four, per-tensor and per-channel
    scales, more output bytes per pair than the staging buffer, and few output channels."""
    b = ModelBuilder(seed=13)
    outputs = [b.fully_connected(b.input([1, 5, 7, 7]), 5, activation="RELU")]
    outputs.append(b.fully_connected(outputs[-1], 150, per_channel=True))
    outputs.append(b.fully_connected(outputs[-1], 3))
    return b.build(outputs)


def dsp_wrap_model() -> bytes:
    """A 1x1 CONV_2D whose 150-channel output wraps the pool end in the ring plan: the pair
    of pixels holding the wrap writes more bytes than the staging buffer takes, so it is
    written one pixel at a time."""
    b = ModelBuilder(seed=12)
    x = b.conv2d(b.input([1, 3, 5, 40]), 150, (1, 1))
    return b.build([b.conv2d(x, 40, (1, 1))])


@pytest.mark.qemu
@requires_tools
@pytest.mark.parametrize("cpu", CPUS)
@pytest.mark.parametrize("case", ["paths", "fc", "wrap"])
def test_dsp_kernel_paths_bit_exact_under_qemu(
    case: str, cpu: str, build_dirs: dict[str, Path], tmp_path: Path
) -> None:
    model = tmp_path / f"dsp_{case}.tflite"
    build = {"paths": dsp_paths_model, "fc": dsp_fc_model, "wrap": dsp_wrap_model}[case]
    model.write_bytes(build())
    host = host_run(model, seed=3)
    if case == "wrap":
        plan = read_plan(read_model(host.model))
        assert plan is not None
        wide = 3 * 5 * 150  # bytes of the 150-channel tensor
        assert any(
            p.nbytes == wide and p.offset + wide > host.pool_bytes for p in plan.placements.values()
        )
    r = firmware(model, cpu, build_dir=build_dirs[cpu], out_dir=tmp_path, host=host)
    assert r.bit_exact, f"{r.verdict}\n{r.console}"


@pytest.mark.qemu
@requires_tools
@pytest.mark.parametrize("model", model_params(MODELS))
def test_flat_plan_bit_exact_under_qemu(
    model: Path, build_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """The same firmware runs the flat plan bit-exact, with the flat plan's pool."""
    host = _host(model, "flat")
    try:
        check_fits(host)
    except TflmVmcuError as exc:
        pytest.skip(f"{model.name} does not fit: {exc}")
    r = firmware(model, "cortex-m4", build_dir=build_dirs["cortex-m4"], out_dir=tmp_path, host=host)
    assert r.bit_exact, f"{r.verdict}\n{r.console}"
    assert r.plan == "flat"
    assert r.pool_bytes == host.pool_bytes
    assert r.pool_bytes is not None
    assert r.pool_bytes >= _host(model).pool_bytes  # never smaller than the ring plan
    assert Path(r.elf).name.endswith("-cortex-m4-flat.elf")


@pytest.mark.qemu
@requires_tools
@requires_plugin
@pytest.mark.parametrize("cpu", CPUS)
@pytest.mark.parametrize("name", ["op_pad.tflite", "op_conv_2d.tflite", "dscnn_kws.tflite"])
def test_plugin_count_is_repeatable_and_matches_icount(
    name: str, cpu: str, build_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """The plugin counts the same instructions twice, within 1% of the -icount estimate;
    a range count over Invoke() itself is its own instructions only."""
    model = _model(name)
    r = firmware(model, cpu, build_dir=build_dirs[cpu], out_dir=tmp_path, host=_host(model))
    assert r.bit_exact, r.console
    assert r.instructions is not None
    assert r.instructions_icount is not None
    assert r.instructions_method == PLUGIN_METHOD
    assert abs(r.instructions - r.instructions_icount) <= 0.01 * r.instructions
    elf = Path(r.elf)
    sites = invoke_sites(elf)
    lib = build_plugin(build_dirs[cpu])
    size = next(
        int(line.split()[1], 16)
        for line in _nm_sizes(elf)
        if line.endswith(" _ZN9tflm_vmcu11Interpreter6InvokeEv")
    )
    ranges = {"invoke_self": (sites.invoke_entry, sites.invoke_entry + size)}
    runs = [count_instructions(elf, BOARDS[cpu], lib, sites.marks, ranges) for _ in range(2)]
    (code_a, _, a), (code_b, _, b) = runs
    assert code_a == code_b == 0
    assert a == b  # totals, every mark and the range: identical
    graph = read_model(_host(model).model)
    invoke, ops = attribute(a, sites, graph)
    assert invoke == r.instructions
    assert [o.instructions for o in ops] == [o.instructions for o in r.ops]
    # Invoke()'s own instructions: more than the loop's few per op, less than the total.
    assert 5 * len(ops) < a.ranges["invoke_self"] < invoke
    assert a.total > invoke


def _nm_sizes(elf: Path) -> list[str]:
    out = subprocess.run(
        ["arm-none-eabi-nm", "-S", str(elf)], capture_output=True, text=True, check=True
    )
    return out.stdout.splitlines()


@pytest.mark.qemu
@requires_tools
@requires_plugin
def test_ops_carry_macs_and_per_mac_counts(build_dirs: dict[str, Path]) -> None:
    model = _model("op_conv_2d.tflite")
    r = firmware(model, "cortex-m4", build_dir=build_dirs["cortex-m4"], host=_host(model))
    assert r.bit_exact, r.console
    assert [o.opcode for o in r.ops] == ["CONV_2D"] * 7
    for o in r.ops:
        assert o.macs is not None
        assert o.macs > 0
        per_mac = o.instructions_per_mac
        assert per_mac is not None
        assert 0.1 < per_mac < 100
    totals = r.op_types["CONV_2D"]
    assert totals["ops"] == 7
    assert totals["instructions"] == sum(o.instructions for o in r.ops)
    assert totals["macs"] == sum(o.macs or 0 for o in r.ops)


@pytest.mark.qemu
@requires_tools
def test_cli_flat_plan_json(
    build_dirs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    add_firmware_parser(parser.add_subparsers(dest="command", required=True))
    model = _model("op_conv_2d.tflite")
    cmd = ["firmware", str(model), "--cpu", "cortex-m4", "--run", "--json", "--plan", "flat"]
    cmd += ["--out", str(tmp_path), "--build-dir", str(build_dirs["cortex-m4"])]
    args = parser.parse_args(cmd)
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bit_exact"] is True
    assert out["plan"] == "flat"
    assert out["pool_bytes"] == _host(model, "flat").pool_bytes
    if host_compiler() is not None:
        assert out["instructions_method"] == PLUGIN_METHOD
        assert out["op_types"]["CONV_2D"]["ops"] == 7
        assert len(out["ops"]) == 7
        assert out["ops"][0]["instructions_per_mac"] > 0


def _mnemonics(elf: Path) -> set[str]:
    out = subprocess.run(
        ["arm-none-eabi-objdump", "-d", "--no-show-raw-insn", str(elf)],
        capture_output=True,
        text=True,
        check=True,
    )
    return {parts[1] for line in out.stdout.splitlines() if len(parts := line.split()) > 1}


@pytest.mark.qemu
@requires_tools
def test_no_dsp_runs_the_portable_kernels_bit_exact(
    build_dirs: dict[str, Path],
    nodsp_build_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--no-dsp` on Cortex-M4: the runtime is built without the DSP loops (no SMLAD in
    the ELF), runs bit-exact, and takes more instructions than the DSP build."""
    model = _model("op_conv_2d.tflite")
    parser = argparse.ArgumentParser()
    add_firmware_parser(parser.add_subparsers(dest="command", required=True))
    cmd = ["firmware", str(model), "--cpu", "cortex-m4", "--run", "--json", "--no-dsp"]
    cmd += ["--out", str(tmp_path), "--build-dir", str(nodsp_build_dir)]
    args = parser.parse_args(cmd)
    assert args.func(args) == 0
    portable = json.loads(capsys.readouterr().out)
    assert portable["bit_exact"] is True
    assert portable["dsp"] is False
    assert Path(portable["elf"]).name == "op_conv_2d-cortex-m4-nodsp.elf"

    dsp = firmware(
        model, "cortex-m4", build_dir=build_dirs["cortex-m4"], out_dir=tmp_path, host=_host(model)
    )
    assert dsp.bit_exact, dsp.console
    assert dsp.dsp is True
    assert Path(dsp.elf).name == "op_conv_2d-cortex-m4.elf"
    assert dsp.instructions is not None
    assert portable["instructions"] > dsp.instructions
    assert "smlad" in _mnemonics(Path(dsp.elf))
    assert "smlad" not in _mnemonics(Path(portable["elf"]))
    if host_compiler() is not None:  # exact per-op counts: every conv layer is slower
        assert len(portable["ops"]) == len(dsp.ops) == 7
        for p, d in zip(portable["ops"], dsp.ops, strict=True):
            assert p["opcode"] == d.opcode == "CONV_2D"
            assert p["instructions"] > d.instructions, p["index"]


@pytest.mark.qemu
@requires_tools
def test_without_the_plugin_the_count_falls_back_to_icount(
    build_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No host compiler, or a QEMU that cannot load the plugin: the firmware still runs,
    and the instructions are the SysTick estimate, saying why."""
    from tflm_vmcu.firmware import counting as fw

    model = _model("op_pad.tflite")

    def no_compiler() -> None:
        return None

    monkeypatch.setattr(fw, "host_compiler", no_compiler)
    r = firmware(model, "cortex-m4", build_dir=build_dirs["cortex-m4"], host=_host(model))
    assert r.bit_exact, r.console
    assert r.instructions == r.instructions_icount
    assert "no exact count: no host C compiler" in r.instructions_method
    assert r.ops == []
    monkeypatch.undo()

    def broken_plugin(directory: Path) -> Path:
        return tmp_path / "missing.so"

    monkeypatch.setattr(fw, "build_plugin", broken_plugin)
    r = firmware(model, "cortex-m4", build_dir=build_dirs["cortex-m4"], host=_host(model))
    assert r.bit_exact, r.console
    assert r.instructions == r.instructions_icount
    assert "the QEMU plugin wrote no counts" in r.instructions_method
    r = firmware(
        model, "cortex-m4", build_dir=build_dirs["cortex-m4"], host=_host(model), count=False
    )
    assert r.instructions_method == "qemu -icount shift=0, SysTick around Invoke()"


# --- without the toolchain -------------------------------------------------------------


def _fake_tools(folder: Path, names: list[str]) -> None:
    folder.mkdir()
    for name in names:
        path = folder / name
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_missing_toolchain_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TflmVmcuError, match=r"^arm-none-eabi-gcc not found: install") as info:
        firmware(committed_models()[0], "cortex-m4")
    assert "\n" not in str(info.value)


def test_missing_qemu_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    names = ["arm-none-eabi-gcc", "arm-none-eabi-g++", "arm-none-eabi-size", "cmake"]
    _fake_tools(bin_dir, names)
    monkeypatch.setenv("PATH", str(bin_dir))
    check_tools(run=False)
    with pytest.raises(TflmVmcuError, match=r"^qemu-system-arm not found: install"):
        check_tools(run=True)


def test_build_folder_is_not_shared_between_dsp_and_portable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel setting is fixed when a folder is configured: the default folders differ,
    and a folder configured for one setting is refused for the other (before cmake runs)."""
    assert default_build_dir(tmp_path, "cortex-m4") == tmp_path / "build-cortex-m4"
    assert default_build_dir(tmp_path, "cortex-m4", False) == tmp_path / "build-cortex-m4-nodsp"
    bin_dir = tmp_path / "bin"
    _fake_tools(bin_dir, ["arm-none-eabi-gcc", "arm-none-eabi-g++", "arm-none-eabi-size", "cmake"])
    monkeypatch.setenv("PATH", str(bin_dir))
    flags = "-mthumb -mcpu=cortex-m4 -mfloat-abi=hard -mfpu=fpv4-sp-d16 -ffunction-sections"
    for dsp, extra in ((True, ""), (False, NO_DSP_FLAG)):
        build = tmp_path / f"build-{dsp}"
        build.mkdir()
        (build / "CMakeCache.txt").write_text(
            f"TFLM_VMCU_CPU:STRING=cortex-m4\nTFLM_VMCU_EXTRA_FLAGS:STRING={extra}\n"
            f"CMAKE_CXX_FLAGS:STRING={flags} {extra}\n"
        )
        other = "DSP kernels" if dsp else "portable kernels"
        with pytest.raises(TflmVmcuError, match=f"configured for the {other}"):
            configure(build, "cortex-m4", dsp=not dsp)
        with pytest.raises(TflmVmcuError, match="configured for cortex-m4, not cortex-m7"):
            configure(build, "cortex-m7", dsp=dsp)


def test_cli_no_dsp_flag() -> None:
    parser = argparse.ArgumentParser()
    add_firmware_parser(parser.add_subparsers(dest="command", required=True))
    assert parser.parse_args(["firmware", "m.tflite"]).dsp is True
    assert parser.parse_args(["firmware", "m.tflite", "--no-dsp"]).dsp is False


def test_unknown_cpu() -> None:
    with pytest.raises(TflmVmcuError, match="no QEMU board for 'cortex-m0'"):
        firmware(committed_models()[0], "cortex-m0")


def _fake_run(pool_bytes: int) -> HostRun:
    return HostRun("big.tflite", b"TFL3", [b"\x01\x02"], [b"\x03\x04"], pool_bytes, 1000, 700, 0)


def test_model_larger_than_board_ram() -> None:
    check_fits(_fake_run(64 * 1024))
    with pytest.raises(
        TflmVmcuError, match=rf"^model needs [0-9,]+ bytes of RAM .*board has {BOARD_RAM_BYTES:,}"
    ):
        check_fits(_fake_run(BOARD_RAM_BYTES))


def test_io_header_corrupts_exactly_one_byte() -> None:
    run = _fake_run(16)
    good, bad = io_header(run), io_header(run, corrupt_expected=True)
    assert "fw_expected_0[2] = {\n    0x03, 0x04\n}" in good
    assert "fw_expected_0[2] = {\n    0x02, 0x04\n}" in bad
    assert "fw_input_0[2] = {\n    0x01, 0x02\n}" in bad
    assert "#define FW_EXPECTED_CORRUPTED 1" in bad


# --- flat plan and counting, without QEMU ---------------------------------------------


@pytest.mark.parametrize("model", model_params(committed_models()))
def test_flat_plan_has_no_overlap_and_no_wrap(model: Path) -> None:
    graph = read_model(model.read_bytes())
    plan = flat_plan(graph)
    assert plan.method == "tensor"
    placed = list(plan.placements.values())
    for p in placed:
        assert p.offset % 16 == 0
        assert p.offset + p.nbytes <= plan.pool_bytes
    for i, p in enumerate(placed):
        for q in placed[i + 1 :]:
            if p.last < q.first or q.last < p.first or not p.nbytes or not q.nbytes:
                continue
            assert p.offset + p.nbytes <= q.offset or q.offset + q.nbytes <= p.offset
    ring, flat = _host(model), _host(model, "flat")
    assert flat.outputs == ring.outputs  # same kernels: the same bytes on the host
    assert flat.pool_bytes >= ring.pool_bytes


def test_unknown_plan() -> None:
    with pytest.raises(TflmVmcuError, match="unknown plan 'tiled'"):
        firmware(committed_models()[0], "cortex-m4", plan="tiled")


def test_model_plan_keeps_the_plan_the_model_carries() -> None:
    """--plan model runs a model compiled with any options as it is; a model without a
    plan is refused (there is nothing to keep)."""
    raw = _model("mobilenetv2_small.tflite").read_bytes()
    window = compile_for_plan(raw, "ring-window")
    assert compile_for_plan(window, "model") == window
    assert compile_for_plan(window, "ring") != window
    with pytest.raises(TflmVmcuError, match="carries no memory plan"):
        compile_for_plan(raw, "model")


def test_op_macs() -> None:
    graph = read_model(_model("op_conv_2d.tflite").read_bytes())
    # 3x3 conv, 15x12x8 -> 15x12x16: one MAC per output element and filter tap.
    assert op_macs(graph, graph.operators[1]) == 15 * 12 * 16 * 3 * 3 * 8
    graph = read_model(_model("op_depthwise_conv_2d.tflite").read_bytes())
    op = graph.operators[0]
    out = graph.tensors[op.outputs[0]].shape
    assert op_macs(graph, op) == out[1] * out[2] * out[3] * 3 * 3
    graph = read_model(_model("op_pad.tflite").read_bytes())
    assert op_macs(graph, graph.operators[0]) is None


def test_attribute_splits_invoke_into_ops() -> None:
    graph = read_model(_model("op_hard_swish.tflite").read_bytes())
    n = len(graph.operators)
    sites = InvokeSites(0x100, 0x20, ((0x150, 0x152),))
    events = [(0x100, 1000)]
    for k in range(n):
        events += [(0x150, 1010 + 100 * k), (0x152, 1060 + 100 * k)]
    events.append((0x20, 1000 + 100 * n))
    counts = InstructionCounts(total=10**6, events=events, ranges={})
    invoke, ops = attribute(counts, sites, graph)
    assert invoke == 100 * n
    assert [o.instructions for o in ops] == [49] * n  # the blx itself is not the kernel's
    assert [o.opcode for o in ops] == [op.opcode for op in graph.operators]
    with pytest.raises(TflmVmcuError, match="made 0 of"):
        attribute(InstructionCounts(0, [(0x100, 0), (0x20, 5)], {}), sites, graph)
    with pytest.raises(TflmVmcuError, match="never reached"):
        attribute(InstructionCounts(0, [], {}), sites, graph)


def test_kernel_calls_count_a_fused_block_once() -> None:
    from tflm_vmcu.compiler import compile_bytes

    compiled = compile_bytes(_model("mobilenetv2_small.tflite").read_bytes())
    graph = read_model(compiled.model)
    calls = kernel_calls(graph)
    blocks = compiled.plan.blocks
    assert blocks
    assert len(calls) == len(graph.operators) - sum(b.last - b.first for b in blocks)
    fused = [c for c in calls if c[1].startswith("FUSED ")]
    assert [c[0] for c in fused] == [b.first for b in blocks]
    b = blocks[0]
    parts = [op_macs(graph, op) or 0 for op in graph.operators[b.first : b.last + 1]]
    assert fused[0][2] == sum(parts) > 0


def test_plugin_arguments(tmp_path: Path) -> None:
    text = plugin_arguments(tmp_path / "c.json", [0x18D4, 0x52A], {"conv": (0x100, 0x180)})
    assert text == f"out={tmp_path / 'c.json'},mark=0x18d4,mark=0x52a,range=conv@0x100-0x180"
    with pytest.raises(TflmVmcuError, match="plain symbol name"):
        plugin_arguments(tmp_path / "c.json", [], {"a,b": (0, 1)})


@requires_plugin
def test_plugin_builds_once(tmp_path: Path) -> None:
    lib = build_plugin(tmp_path)
    assert lib.is_file()
    stamp = lib.stat().st_mtime_ns
    assert build_plugin(tmp_path) == lib
    assert lib.stat().st_mtime_ns == stamp

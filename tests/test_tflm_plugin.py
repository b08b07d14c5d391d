"""TFLM with the tflm-vmcu plug-in (cpp/tflm_plugin), built on the host from a TFLM source
tree: every committed and shared model runs bit-exact with stock TFLM built from the same
tree, in a smaller arena; a plan for another model, a too-small arena, a forgotten external
context and a model without a plan each give a clear error. Needs
../shared/third_party/tflite-micro/reference (skipped without it)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS, ROOT, committed_models, model_params, shared_models

import tflm_vmcu
import tflm_vmcu.compiler
from tflm_vmcu.errors import TflmVmcuError
from tflm_vmcu.plan_format import PLAN_METADATA, pack_model, read_plan, write_metadata, write_plan
from tflm_vmcu.planner.plan import Plan
from tflm_vmcu.plugin_blocks import BLOCK_CUSTOM_CODE, is_block_op, nested_operators, nested_options
from tflm_vmcu.plugin_target import compile_for_plugin, ring_ops, stock_model
from tflm_vmcu.plugin_validate import validate_plugin
from tflm_vmcu.synth import ModelBuilder
from tflm_vmcu.tflm_host import run_plugin, run_stock, smallest_arena
from tflm_vmcu.validate import make_inputs

TREE = ROOT.parent / "shared" / "third_party" / "tflite-micro" / "reference"
pytestmark = pytest.mark.skipif(
    not TREE.is_dir(),
    reason=f"{TREE} not present (TFLM source trees live in ../shared/third_party/tflite-micro)",
)


def _with_tanh() -> bytes:
    """conv -> TANH -> conv: TANH has no ring kernel, so TFLM's kernel runs it between two
    ring kernels (its tensors stay flat)."""
    b = ModelBuilder(seed=31)
    x = b.conv2d(b.input([1, 12, 12, 4]), 8, (3, 3))
    y = b._activation([1, 12, 12, 8], 1.0 / 128, 0)
    b._op("TANH", [x], [y])
    return b.build([b.conv2d(y, 4, (3, 3))])


# Models where TFLM + plug-in needs more than stock TFLM, by exactly this many bytes
# (measured on the host with the shared reference tree): no tensor can overlap another, so
# the head gains nothing, and the ring kernels' per-op state in the tail (16 bytes per op,
# and TRANSPOSE's op data) outweighs TFLM's.
ARENA_ABOVE_STOCK = {"op_transpose.tflite": 144, "mlperf_ad01_int8.tflite": 16}


@pytest.mark.parametrize("path", model_params(committed_models() + shared_models()))
def test_plugin_runs_bit_exact_in_a_smaller_arena(path: Path, tflm_cache: Path) -> None:
    compiled, _ = compile_for_plugin(path.read_bytes())
    report = validate_plugin(compiled, TREE, runs=2, cache_dir=tflm_cache, check_hazards=True)
    assert report.bit_exact, report.mismatches
    assert report.hazards == 0, report.first_hazard
    graph = tflm_vmcu.read_model(compiled)
    assert report.ops["ring"] == len(ring_ops(graph))
    assert report.ops["tflm_fallback"] == len(read_plan(graph).tflm_kernel_ops)  # type: ignore[union-attr]
    excess = report.smallest_arena_bytes - report.stock_smallest_arena_bytes
    if path.name in ARENA_ABOVE_STOCK:
        assert excess == ARENA_ABOVE_STOCK[path.name]
    else:
        assert excess < 0


def test_op_without_a_ring_kernel_runs_on_tflm(tflm_cache: Path) -> None:
    compiled, _ = compile_for_plugin(_with_tanh())
    graph = tflm_vmcu.read_model(compiled)
    assert [op.opcode for op in graph.operators if op.index not in ring_ops(graph)] == ["TANH"]
    report = validate_plugin(compiled, TREE, runs=3, cache_dir=tflm_cache, check_hazards=True)
    assert report.ops == {"ring": 2, "tflm": 1, "tflm_fallback": 0, "fused_blocks": 0}
    assert report.hazards == 0, report.first_hazard
    assert report.bit_exact, report.mismatches
    assert report.arena_bytes < report.stock_arena_bytes


def test_person_detect_arena(tflm_cache: Path) -> None:
    path = ROOT.parent / "shared" / "models" / "tflm_person_detect.tflite"
    if not path.exists():
        pytest.skip(f"{path} not present")
    compiled, _ = compile_for_plugin(path.read_bytes())
    report = validate_plugin(compiled, TREE, runs=1, cache_dir=tflm_cache)
    assert report.bit_exact
    assert report.arena_bytes <= 0.6 * report.stock_arena_bytes


def _inputs(model: bytes) -> list[np.ndarray]:
    return make_inputs(tflm_vmcu.read_model(model), 1, 0)[0]


def _with_int16_quantize() -> bytes:
    """conv -> QUANTIZE int8 to int16 -> QUANTIZE back to int8 -> conv: QUANTIZE has a ring
    kernel, but not for int16, so the plan leaves both to TFLM's kernel."""
    b = ModelBuilder(seed=32)
    x = b.conv2d(b.input([1, 10, 10, 4]), 8, (3, 3))
    wide = b._tensor(b.shapes[x], b.quant[x][0] / 64, 0, dtype=np.int16)
    b._op("QUANTIZE", [x], [wide])
    back = b._activation(b.shapes[x], b.quant[x][0] * 2, 3)
    b._op("QUANTIZE", [wide], [back])
    return b.build([b.conv2d(back, 4, (3, 3))])


def test_ring_builtin_on_other_types_runs_on_tflm_kernel(
    tflm_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An op of a builtin the plug-in registers, on types its ring kernel does not take, runs
    on TFLM's kernel (registered as fallback), bit-exact and hazard-free; without the
    fallback registered, the plug-in says how to register it."""
    compiled, plan = compile_for_plugin(_with_int16_quantize())
    assert plan.tflm_kernel_ops == {1, 2}
    assert read_plan(tflm_vmcu.read_model(compiled)).tflm_kernel_ops == {1, 2}  # type: ignore[union-attr]
    report = validate_plugin(compiled, TREE, runs=2, cache_dir=tflm_cache, check_hazards=True)
    assert report.ops == {"ring": 2, "tflm": 2, "tflm_fallback": 2, "fused_blocks": 0}
    assert report.bit_exact, report.mismatches
    assert report.hazards == 0, report.first_hazard
    monkeypatch.setenv("TFLM_VMCU_NO_FALLBACK", "1")
    with pytest.raises(TflmVmcuError, match=r"Fallback::kTflmKernels"):
        run_plugin(TREE, compiled, _inputs(compiled), 1 << 20, cache_dir=tflm_cache)
    with pytest.raises(tflm_vmcu.TflmVmcuError, match=r"leaves operator 1 \(QUANTIZE\) to TFLM"):
        tflm_vmcu.Interpreter(compiled)


def test_plan_for_another_model_is_refused(tflm_cache: Path) -> None:
    donor, _ = compile_for_plugin((MODELS / "op_relu.tflite").read_bytes())
    payload = tflm_vmcu.read_model(donor).metadata[PLAN_METADATA]
    target = write_metadata((MODELS / "op_relu6.tflite").read_bytes(), PLAN_METADATA, payload)
    with pytest.raises(TflmVmcuError, match="belongs to another model"):
        run_plugin(TREE, target, _inputs(target), arena_bytes=1 << 20, cache_dir=tflm_cache)


def test_model_without_a_plan_is_refused(tflm_cache: Path) -> None:
    data = (MODELS / "op_relu.tflite").read_bytes()
    with pytest.raises(TflmVmcuError, match="carries no tflm-vmcu plan"):
        run_plugin(TREE, data, _inputs(data), arena_bytes=1 << 20, cache_dir=tflm_cache)


def test_plan_with_fused_blocks_is_refused(tflm_cache: Path) -> None:
    """A plan for the tflm-vmcu runtime that fuses blocks cannot run inside TFLM."""
    compiled = tflm_vmcu.compiler.compile_bytes((MODELS / "mobilenetv2_small.tflite").read_bytes())
    assert compiled.plan.blocks
    with pytest.raises(TflmVmcuError, match="compile the model with `tflm-vmcu compile --target"):
        run_plugin(TREE, compiled.model, _inputs(compiled.model), 1 << 22, cache_dir=tflm_cache)


MOBILENET = MODELS / "mobilenetv2_small.tflite"


def test_fused_blocks_run_as_custom_operators(tflm_cache: Path) -> None:
    """Each fused block is one custom operator; its inner tensors stay in the tensor table,
    touched by no operator, and TFLM gives them no bytes: the arena is smaller than with the
    same blocks unfused, bit-exact."""
    compiled, plan = compile_for_plugin(MOBILENET.read_bytes())
    graph, original = tflm_vmcu.read_model(compiled), tflm_vmcu.read_model(MOBILENET.read_bytes())
    blocks = [op for op in graph.operators if op.opcode == f"CUSTOM:{BLOCK_CUSTOM_CODE}"]
    assert len(blocks) == len(plan.blocks) >= 2
    assert len(graph.tensors) == len(original.tensors)
    touched = {t for op in graph.operators for t in (*op.inputs, *op.outputs)}
    inner = [t.index for t in original.activation_tensors() if t.index not in touched]
    assert inner
    assert not any(t in plan.placements for t in inner)
    fused = validate_plugin(compiled, TREE, runs=2, cache_dir=tflm_cache)
    assert fused.bit_exact, fused.mismatches
    assert fused.ops["fused_blocks"] == len(blocks)
    unfused, _ = compile_for_plugin(MOBILENET.read_bytes(), fusion="off")
    assert tflm_vmcu.read_model(unfused).operators == original.operators
    plain = validate_plugin(unfused, TREE, runs=1, cache_dir=tflm_cache)
    assert plain.ops["fused_blocks"] == 0
    assert fused.arena_bytes < plain.arena_bytes < plain.stock_arena_bytes
    # The blocks' per-channel multipliers and shifts come from the plan (flash): without
    # them the kernels compute them into TFLM's persistent arena.
    starts = {b.first for b in plan.blocks}
    words = {k: w for k, w in plan.op_words.items() if k not in starts}
    bare = write_plan(compiled, dataclasses.replace(plan, op_words=words))
    _, used = smallest_arena(TREE, bare, _inputs(bare), tflm_cache, plugin=True)
    assert used > fused.arena_bytes


def test_stock_tflm_refuses_a_model_with_fused_blocks(tflm_cache: Path) -> None:
    """Stock TFLM has no kernel for the custom operator; stock_model gives back the
    original operators, which it runs."""
    compiled, _ = compile_for_plugin(MOBILENET.read_bytes())
    with pytest.raises(TflmVmcuError, match="CUSTOM"):
        run_stock(TREE, compiled, _inputs(compiled), 1 << 22, tflm_cache)
    back = tflm_vmcu.read_model(stock_model(compiled))
    assert back.operators == tflm_vmcu.read_model(MOBILENET.read_bytes()).operators
    assert PLAN_METADATA not in back.metadata


def _edit_first_block(compiled: bytes, plan: object, edit: object) -> bytes:
    """The compiled model with its first block operator's nested operators edited, and a
    plan whose digest matches again (so that the plug-in's own checks must catch it)."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    m = schema.ModelT.InitFromPackedBuf(bytearray(compiled), 0)
    op = next(op for op in m.subgraphs[0].operators if is_block_op(m, op))
    op.customOptions = edit(nested_operators(m, op))  # type: ignore[operator]
    return write_plan(pack_model(m, len(compiled)), plan)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda ops: nested_options(ops[::-1]), "cannot be part of a fused block|is not"),
        (lambda ops: nested_options(ops[:1]), "stands for 1 operators"),
        (lambda ops: nested_options(ops)[:6], "no readable nested operators"),
        (
            lambda ops: nested_options([*ops[:-1], _retarget(ops[-1], 10**6)]),
            "nested operator 2 output 0 names tensor 1000000",
        ),
    ],
    ids=["reordered", "one operator", "truncated", "tensor out of range"],
)
def test_corrupt_block_operator_is_refused(tflm_cache: Path, edit: object, message: str) -> None:
    compiled, plan = compile_for_plugin(MOBILENET.read_bytes())
    bad = _edit_first_block(compiled, plan, edit)
    with pytest.raises(TflmVmcuError, match=message):
        run_plugin(TREE, bad, _inputs(bad), arena_bytes=1 << 22, cache_dir=tflm_cache)


def _retarget(op: object, tensor: int) -> object:
    op.outputs = np.array([tensor], dtype=np.int32)  # type: ignore[attr-defined]
    return op


def _unsafe_overlap(graph: object, plan: Plan) -> Plan:
    """Tensor b moved onto tensor a, which b's producer does not read but a later operator
    does (a skip connection)."""
    ps = sorted(plan.placements.values(), key=lambda p: p.first)
    ops = graph.operators  # type: ignore[attr-defined]
    a, b = next(
        (a, b)
        for a in ps
        for b in ps
        if a.first < b.first < a.last and a.tensor not in ops[b.first].inputs
    )
    placements = {**plan.placements, b.tensor: dataclasses.replace(b, offset=a.offset)}
    return dataclasses.replace(plan, placements=placements)


def _too_close(graph: object, plan: Plan) -> Plan:
    """The output of the first DEPTHWISE_CONV_2D at its input's offset (its kernel needs a
    head start: a window reads rows ahead of the row it writes)."""
    op = next(op for op in graph.operators if op.opcode == "DEPTHWISE_CONV_2D")  # type: ignore[attr-defined]
    out, src = plan.placements[op.outputs[0]], plan.placements[op.inputs[0]]
    placements = {**plan.placements, out.tensor: dataclasses.replace(out, offset=src.offset)}
    return dataclasses.replace(plan, placements=placements)


def _workspace_on_input(graph: object, plan: Plan) -> Plan:
    block = plan.blocks[0]
    op = graph.operators[block.first]  # type: ignore[attr-defined]
    at = plan.placements[op.inputs[0]].offset
    return dataclasses.replace(
        plan, blocks=[dataclasses.replace(block, workspace_offset=at), *plan.blocks[1:]]
    )


@pytest.mark.parametrize(
    ("model", "unsafe", "message"),
    [
        ("resnet8.tflite", _unsafe_overlap, "unsafe memory plan: tensor .* overlaps tensor"),
        ("dscnn_kws.tflite", _too_close, r"DEPTHWISE_CONV_2D\): output tensor .* starts 0 bytes"),
        ("mobilenetv2_small.tflite", _workspace_on_input, "fused block.: its workspace"),
    ],
    ids=["live tensors overlap", "output too close", "workspace on a live tensor"],
)
def test_unsafe_plugin_plan_is_refused(
    tflm_cache: Path, model: str, unsafe: object, message: str
) -> None:
    """The plan verifier's rule, applied by the plug-in when TFLM prepares and plans."""
    compiled, plan = compile_for_plugin((MODELS / model).read_bytes())
    bad = write_plan(compiled, unsafe(tflm_vmcu.read_model(compiled), plan))  # type: ignore[operator]
    with pytest.raises(TflmVmcuError, match=message):
        run_plugin(TREE, bad, _inputs(bad), arena_bytes=1 << 22, cache_dir=tflm_cache)


def _tanh_in_place(graph: object, plan: Plan) -> Plan:
    """TANH (a TFLM kernel, whose access order the plan may not assume) in place."""
    op = next(op for op in graph.operators if op.opcode == "TANH")  # type: ignore[attr-defined]
    out, src = plan.placements[op.outputs[0]], plan.placements[op.inputs[0]]
    placements = {**plan.placements, out.tensor: dataclasses.replace(out, offset=src.offset)}
    return dataclasses.replace(plan, placements=placements)


@pytest.mark.parametrize(
    ("model", "unsafe", "message"),
    [
        ("dscnn_kws.tflite", _too_close, "operator 1 (read|wrote) byte"),
        ("tanh", _tanh_in_place, "operator 1 wrote byte .* that the same unit of work still reads"),
        ("mobilenetv2_small.tflite", _workspace_on_input, "operator 0 (read|wrote) byte"),
    ],
    ids=["ring kernel", "TFLM kernel", "fused block"],
)
def test_hazard_checker_catches_unsafe_plugin_plans(
    tflm_cache: Path, model: str, unsafe: object, message: str
) -> None:
    """With the plan verifier off, the hazard checker inside TFLM sees what the unsafe plan
    does to each kind of operator; the safe plan runs hazard-free."""
    from tflm_vmcu.tflm_host import plugin_hazards

    data = _with_tanh() if model == "tanh" else (MODELS / model).read_bytes()
    compiled, plan = compile_for_plugin(data)
    bad = write_plan(compiled, unsafe(tflm_vmcu.read_model(compiled), plan))  # type: ignore[operator]
    inputs = _inputs(bad)
    assert plugin_hazards(TREE, compiled, inputs, 1 << 22, tflm_cache) == (0, "")
    count, first = plugin_hazards(TREE, bad, inputs, 1 << 22, tflm_cache, verify_plan=False)
    assert count > 0
    assert re.search(message, first), first


def test_too_small_arena_is_refused(tflm_cache: Path) -> None:
    compiled, plan = compile_for_plugin((MODELS / "dscnn_kws.tflite").read_bytes())
    with pytest.raises(TflmVmcuError, match="AllocateTensors failed"):
        run_plugin(
            TREE, compiled, _inputs(compiled), arena_bytes=plan.pool_bytes, cache_dir=tflm_cache
        )


def test_forgotten_external_context_is_named(
    tflm_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled, _ = compile_for_plugin((MODELS / "op_relu.tflite").read_bytes())
    monkeypatch.setenv("TFLM_VMCU_NO_CONTEXT", "1")
    with pytest.raises(TflmVmcuError, match="SetMicroExternalContext"):
        run_plugin(TREE, compiled, _inputs(compiled), arena_bytes=1 << 20, cache_dir=tflm_cache)


def test_cli_compiles_and_validates_for_the_plugin(
    tflm_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from tflm_vmcu.cli import main

    monkeypatch.setenv("TFLM_VMCU_CACHE", str(tflm_cache))
    out = tmp_path / "dscnn.plugin.tflite"
    assert (
        main(
            ["compile", str(MODELS / "dscnn_kws.tflite"), "-o", str(out), "--target", "tflm-plugin"]
        )
        == 0
    )
    capsys.readouterr()
    args = ["validate", str(out), "--runtime", "tflm-plugin", "--tflm-source", str(TREE)]
    assert main([*args, "--json", "--runs", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bit_exact"] is True
    assert report["arena_bytes"] < report["stock_arena_bytes"]
    assert report["ops"] == {
        "ring": len(tflm_vmcu.read_model(out).operators),
        "tflm": 0,
        "tflm_fallback": 0,
        "fused_blocks": 0,
    }
    assert main(["validate", str(out), "--runtime", "tflm-plugin"]) == 1
    assert "needs --tflm-source DIR" in capsys.readouterr().err
    compile_args = ["compile", str(MODELS / "op_relu.tflite"), "-o", str(tmp_path / "x.tflite")]
    assert main([*compile_args, "--target", "tflm-plugin", "--kernels", "portable"]) == 1
    assert "--kernels applies to --target tflm" in capsys.readouterr().err


def test_add_kernels_registers_every_ring_op(tflm_cache: Path, tmp_path: Path) -> None:
    """TflmPlugin::AddKernels (what docs/MIGRATION.md shows) compiles against the tree and
    registers a ring kernel for each op the runtime has, and the fused blocks' custom
    operator, once."""
    from tflm_vmcu import ops
    from tflm_vmcu.tflm_build import build_program

    main = tmp_path / "add_kernels.cc"
    main.write_text(
        "#include <cstdio>\n"
        '#include "tflm_vmcu/tflm_plugin.h"\n'
        "int main() {\n"
        "  tflite::MicroMutableOpResolver<32> resolver;\n"
        "  const unsigned char none[8] = {};\n"
        "  tflm_vmcu::TflmPlugin plugin(none, sizeof(none));\n"
        "  const bool ok = plugin.AddKernels(resolver) == kTfLiteOk;\n"
        "  const bool twice = plugin.AddKernels(resolver) != kTfLiteOk;\n"
        '  std::printf("%d %d %u %u\\n", ok, twice, resolver.GetRegistrationLength(),\n'
        "              tflm_vmcu::TflmPlugin::kKernelCount);\n"
        "}\n"
    )
    runtime = sorted((ROOT / "cpp" / "src").rglob("*.cc"))
    program = build_program(
        TREE,
        [main, ROOT / "cpp" / "tflm_plugin" / "tflm_plugin.cc", *runtime],
        tmp_path / "add_kernels",
        include_dirs=[
            ROOT / "cpp" / "include",
            ROOT / "cpp" / "src",
            ROOT / "cpp" / "tflm_plugin" / "include",
        ],
        cache_dir=tflm_cache,
    )
    import subprocess

    out = subprocess.run([str(program)], capture_output=True, text=True, check=True).stdout
    count = str(len(ops.SUPPORTED_OPS) + 1)
    assert out.split() == ["1", "1", count, count]

"""TFLM with the tflm-vmcu plug-in (cpp/tflm_plugin), built on the host from a TFLM source
tree: every committed and shared model runs bit-exact with stock TFLM built from the same
tree, in a smaller arena; a plan for another model, a too-small arena, a forgotten external
context and a model without a plan each give a clear error. Needs
../shared/third_party/tflite-micro/reference (skipped without it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS, ROOT, committed_models, model_params, shared_models

import tflm_vmcu
import tflm_vmcu.compiler
from tflm_vmcu.errors import TflmVmcuError
from tflm_vmcu.plan_format import PLAN_METADATA, write_metadata
from tflm_vmcu.plugin_target import compile_for_plugin, ring_ops
from tflm_vmcu.plugin_validate import validate_plugin
from tflm_vmcu.synth import ModelBuilder
from tflm_vmcu.tflm_host import run_plugin
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


# Shared models the plug-in refuses at compile time (and why).
REFUSED = {"tflm_keyword_scrambled_8bit.tflite": r"operator 0 \(QUANTIZE\) has int16, int8"}
# Models where TFLM + plug-in needs more than stock TFLM, by exactly this many bytes
# (measured on the host with the shared reference tree): no tensor can overlap another, so
# the head gains nothing, and the ring kernels' per-op state in the tail (16 bytes per op,
# and TRANSPOSE's op data) outweighs TFLM's.
ARENA_ABOVE_STOCK = {"op_transpose.tflite": 144, "mlperf_ad01_int8.tflite": 16}


@pytest.mark.parametrize("path", model_params(committed_models() + shared_models()))
def test_plugin_runs_bit_exact_in_a_smaller_arena(path: Path, tflm_cache: Path) -> None:
    if path.name in REFUSED:
        with pytest.raises(TflmVmcuError, match=REFUSED[path.name]):
            compile_for_plugin(path.read_bytes())
        return
    compiled, _ = compile_for_plugin(path.read_bytes())
    report = validate_plugin(compiled, TREE, runs=2, cache_dir=tflm_cache)
    assert report.bit_exact, report.mismatches
    graph = tflm_vmcu.read_model(compiled)
    assert report.ops["ring"] == len(ring_ops(graph))
    excess = report.smallest_arena_bytes - report.stock_smallest_arena_bytes
    if path.name in ARENA_ABOVE_STOCK:
        assert excess == ARENA_ABOVE_STOCK[path.name]
    else:
        assert excess < 0


def test_op_without_a_ring_kernel_runs_on_tflm(tflm_cache: Path) -> None:
    compiled, _ = compile_for_plugin(_with_tanh())
    graph = tflm_vmcu.read_model(compiled)
    assert [op.opcode for op in graph.operators if op.index not in ring_ops(graph)] == ["TANH"]
    report = validate_plugin(compiled, TREE, runs=3, cache_dir=tflm_cache)
    assert report.ops == {"ring": 2, "tflm": 1, "fused_blocks": 0}
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
        "fused_blocks": 0,
    }
    assert main(["validate", str(out), "--runtime", "tflm-plugin"]) == 1
    assert "needs --tflm-source DIR" in capsys.readouterr().err


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
        '  std::printf("%d %d %u\\n", ok, twice, resolver.GetRegistrationLength());\n'
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
    assert out.split() == ["1", "1", str(len(ops.SUPPORTED_OPS) + 1)]

"""The offline plan for stock TFLM: honoured by the real tflite-micro runtime with
bit-identical outputs and an arena that never grows; an unsafe plan is caught."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import (
    UNSUPPORTED_SHARED,
    committed_models,
    model_params,
    require_shared,
    shared_models,
)

import tflm_vmcu
from tflm_vmcu.cli import main
from tflm_vmcu.compiler import compile_bytes
from tflm_vmcu.plan_format import PLAN_METADATA
from tflm_vmcu.tflm_check import compare_in_tflm
from tflm_vmcu.tflm_target import OFFLINE_METADATA, compile_for_tflm
from tflm_vmcu.validate import validate

MODELS = committed_models() + [p for p in shared_models() if p.name not in UNSUPPORTED_SHARED]


@pytest.mark.parametrize("kernels", ["reference", "portable"])
@pytest.mark.parametrize("path", model_params(MODELS))
def test_offline_plan_is_bit_identical_and_never_grows_the_arena(path: Path, kernels: str) -> None:
    data = path.read_bytes()
    result = compile_for_tflm(data, kernels)
    assert OFFLINE_METADATA in tflm_vmcu.read_model(result.model).metadata
    assert result.plan.pool_bytes <= result.greedy_head_bytes
    cmp = compare_in_tflm(data, result.model, runs=5, seed=3)
    assert cmp.bit_identical, cmp.message()
    assert cmp.planned_arena <= cmp.original_arena


def test_person_detect_arena_target() -> None:
    data = require_shared("tflm_person_detect.tflite").read_bytes()
    cmp = compare_in_tflm(data, compile_for_tflm(data, "reference").model, runs=5, seed=0)
    assert cmp.bit_identical
    assert cmp.original_arena == 85_264
    assert cmp.planned_arena <= 66_848


def test_unsafe_plan_is_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = committed_models()[0].parent / "mobilenetv2_small.tflite"
    out = tmp_path / "unsafe.tflite"
    assert (
        main(["compile", str(model), "-o", str(out), "--target", "tflm", "--unsafe-shift", "64"])
        == 0
    )
    capsys.readouterr()
    assert main(["validate", "--tflm", str(out), "--runs", "3"]) == 2
    message = capsys.readouterr().out
    assert "not safe" in message


def test_one_file_carries_both_plans(tmp_path: Path) -> None:
    model = committed_models()[0].parent / "dscnn_kws.tflite"
    both = compile_for_tflm(compile_bytes(model.read_bytes()).model, "reference").model
    graph = tflm_vmcu.read_model(both)
    assert {OFFLINE_METADATA, PLAN_METADATA} <= set(graph.metadata)
    interp = tflm_vmcu.Interpreter(both, check_hazards=True)
    assert interp.has_plan
    assert compare_in_tflm(model.read_bytes(), both, runs=2).bit_identical
    path = tmp_path / "both.tflite"
    path.write_bytes(both)
    report = validate(str(path), runs=2, check_hazards=True)
    assert report.bit_exact
    assert report.extra["hazards"] == 0

"""Every model runs bit-exact with the real TFLM runtime on seeded random inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import UNSUPPORTED_SHARED, committed_models, model_params, shared_models

from tflm_vmcu.validate import validate

RUNS = 5


def _check(path: Path) -> None:
    report = validate(str(path), runs=RUNS, seed=1234)
    bad = [
        f"output {o.index} '{o.name}': {o.mismatches} elements differ"
        for o in report.outputs
        if not o.bit_exact
    ]
    assert report.bit_exact, "; ".join(bad)
    assert report.runs == RUNS
    assert report.ours["pool_bytes"] > 0


def test_committed_models_exist() -> None:
    assert len(committed_models()) >= 10, "run scripts/generate_models.py"


@pytest.mark.parametrize("path", model_params(committed_models()))
def test_committed_model_bit_exact(path: Path) -> None:
    _check(path)


@pytest.mark.parametrize(
    "path",
    model_params([p for p in shared_models() if p.name not in UNSUPPORTED_SHARED])
    or [pytest.param(None, marks=pytest.mark.skip(reason="../shared/models not present"))],
)
def test_shared_model_bit_exact(path: Path) -> None:
    _check(path)

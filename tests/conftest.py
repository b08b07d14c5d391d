"""Model discovery shared by the tests: committed models, and ../shared/models when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
SHARED_MODELS = ROOT.parent / "shared" / "models"

# The firmware harness (firmware/, cmake/, cpp/) is not in the wheel: point the package
# at this checkout so the QEMU tests also run against a non-editable install.
os.environ.setdefault("TFLM_VMCU_SOURCE_DIR", str(ROOT))

# Shared models that the runtime is expected to refuse (and why).
UNSUPPORTED_SHARED = {
    "tflm_keyword_scrambled_8bit.tflite": "SVDF",
}


def committed_models() -> list[Path]:
    return sorted(MODELS.glob("*.tflite"))


def shared_models() -> list[Path]:
    return sorted(SHARED_MODELS.glob("*.tflite")) if SHARED_MODELS.is_dir() else []


def model_params(paths: list[Path]) -> list[object]:
    return [pytest.param(p, id=p.name) for p in paths]


def require_shared(name: str) -> Path:
    path = SHARED_MODELS / name
    if not path.exists():
        pytest.skip(f"{path} not present (real third-party models live in ../shared/models)")
    return path

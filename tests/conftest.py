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


# TFLM source tree for the host builds (tests/test_tflm_build.py, tests/test_tflm_plugin.py).
TFLM_TREE = ROOT.parent / "shared" / "third_party" / "tflite-micro" / "reference"


@pytest.fixture(scope="session")
def tflm_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where host TFLM builds are cached: $TFLM_VMCU_CACHE (CI sets it inside the clone),
    else pytest's cache folder (kept between sessions), else a session temporary folder."""
    env = os.environ.get("TFLM_VMCU_CACHE")
    if env:
        return Path(env)
    config_cache = getattr(request.config, "cache", None)
    if config_cache is not None:
        return Path(config_cache.mkdir("tflm-vmcu"))
    return tmp_path_factory.mktemp("tflm-vmcu")

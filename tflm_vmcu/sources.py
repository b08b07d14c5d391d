"""Where the C++ sources are: the runtime, the firmware harness, the toolchain files and the
host tools that `tflm-vmcu firmware` and the TFLM runners build, and the CMake package
(`tflm-vmcu --cmake-dir`). A source checkout holds them beside the package; a wheel
carries a copy in tflm_vmcu/sources; TFLM_VMCU_SOURCE_DIR overrides both."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import TflmVmcuError

_PACKAGE = Path(__file__).resolve().parent
_MARKER = Path("firmware") / "CMakeLists.txt"


def source_root() -> Path:
    env = os.environ.get("TFLM_VMCU_SOURCE_DIR")
    candidates = [Path(env)] if env else [_PACKAGE.parent, _PACKAGE / "sources"]
    for root in candidates:
        if (root / _MARKER).is_file() and (root / "cpp" / "src").is_dir():
            return root
    where = " or ".join(str(c) for c in candidates)
    raise TflmVmcuError(
        f"the tflm-vmcu C++ sources are not under {where}: reinstall the package "
        "(pip install tflm-vmcu carries them) or set TFLM_VMCU_SOURCE_DIR to a checkout"
    )


def cmake_dir() -> Path:
    """The folder of tflm_vmcuConfig.cmake for find_package(tflm_vmcu)."""
    return source_root() / "cmake" / "package"

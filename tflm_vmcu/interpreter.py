"""Python API of the tflm-vmcu runtime, shaped like tf.lite.Interpreter."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ._runtime import Runtime
from .errors import (
    ModelError,
    OutOfMemoryError,
    PlanHint,
    RuntimeStateError,
    TflmVmcuError,
    UnsupportedError,
)
from .ir import TENSOR_TYPES
from .reader import load_bytes

# C++ Status codes (cpp/include/tflm_vmcu/status.h) -> exception types.
_ERRORS: dict[int, type[TflmVmcuError]] = {
    1: ModelError,
    2: UnsupportedError,
    3: UnsupportedError,
    4: UnsupportedError,
    5: OutOfMemoryError,
    6: RuntimeStateError,
    7: TflmVmcuError,
}

_MAX_MEMORY = 1 << 30


class Interpreter:
    """Runs a .tflite model with the tflm-vmcu C++ runtime.

    `memory_bytes` is the size of the memory block the runtime may use (pool and
    runtime state). By default the smallest block that fits is found automatically.
    With `check_hazards`, every kernel runs under the hazard checker: each pool byte is
    tagged with the tensor byte it holds, and reading an overwritten byte is counted
    (see `hazards` and `first_hazard`). Every plan is proven safe when the model is loaded;
    `verify_plan=False` trusts it instead, for tests of the hazard checker only.
    """

    def __init__(
        self,
        model: str | Path | bytes | bytearray,
        memory_bytes: int | None = None,
        check_hazards: bool = False,
        verify_plan: bool = True,
    ):
        self._model = load_bytes(model)
        self._verify_plan = verify_plan
        if memory_bytes is None:
            self._rt = self._fit()
        else:
            self._rt = Runtime(self._model, int(memory_bytes), verify_plan)
            status = self._rt.allocate()
            if status == 5:
                needed = self._fit()
                raise OutOfMemoryError(
                    f"memory block of {memory_bytes} bytes is too small: the model needs "
                    f"{needed.pool_bytes() + needed.state_bytes()} bytes (activation pool "
                    f"{needed.pool_bytes()} + runtime state {needed.state_bytes()})"
                )
            self._check(status)
        if check_hazards:
            self._rt.enable_hazard_check()
        self._check_hazards = check_hazards
        self._cache: dict[int, dict[str, Any]] = {}
        self._inputs = list(self._rt.inputs())
        self._outputs = list(self._rt.outputs())
        if not self._rt.has_plan():
            _hint_once(self._model)

    def _fit(self) -> Any:
        size = 64 * 1024
        while True:
            rt = Runtime(self._model, size, self._verify_plan)
            status = rt.allocate()
            if status != 5:
                self._check(status, rt)
                # Shrink to what was used, so memory figures match a real deployment.
                used = rt.pool_bytes() + rt.state_bytes() + 64
                exact = Runtime(self._model, used, self._verify_plan)
                return exact if exact.allocate() == 0 else rt
            if size >= _MAX_MEMORY:
                raise OutOfMemoryError(f"model needs more than {_MAX_MEMORY} bytes: {rt.error()}")
            size *= 2

    def _check(self, status: int, rt: Any = None) -> None:
        if status != 0:
            rt = rt if rt is not None else self._rt
            raise _ERRORS.get(status, TflmVmcuError)(rt.error())

    # --- tf.lite.Interpreter-style API -------------------------------------------------
    def allocate_tensors(self) -> None:
        """Kept for tf.lite compatibility: tensors are allocated on construction."""

    def _details(self, index: int) -> dict[str, Any]:
        # Details never change after allocation: decode each tensor's once.
        cached = self._cache.get(index)
        if cached is None:
            cached = self._cache[index] = self._decode_details(index)
        return cached

    def _decode_details(self, index: int) -> dict[str, Any]:
        d = self._rt.tensor_details(index)
        dtype = TENSOR_TYPES.get(d["type"], ("", None))[1]
        return {
            "name": d["name"],
            "index": d["index"],
            "shape": np.array(d["shape"], dtype=np.int32),
            "shape_tuple": tuple(int(n) for n in d["shape"]),
            "dtype": dtype,
            "quantization": (d["scale"], d["zero_point"]),
            "bytes": d["bytes"],
            "offset": d["offset"],
        }

    def get_input_details(self) -> list[dict[str, Any]]:
        return [self._public(i) for i in self._inputs]

    def get_output_details(self) -> list[dict[str, Any]]:
        return [self._public(i) for i in self._outputs]

    def _public(self, index: int) -> dict[str, Any]:
        d = dict(self._details(index))
        d["shape"] = d["shape"].copy()
        del d["shape_tuple"]
        return d

    def set_tensor(self, index: int, value: np.ndarray) -> None:
        d = self._details(index)
        arr = np.asarray(value)
        if d["dtype"] is None or arr.dtype != d["dtype"]:
            want = np.dtype(d["dtype"]).name if d["dtype"] is not None else "an unsupported type"
            raise TflmVmcuError(f"tensor '{d['name']}' expects dtype {want}, got {arr.dtype}")
        if arr.shape != d["shape_tuple"]:
            raise TflmVmcuError(
                f"tensor '{d['name']}' expects shape {d['shape_tuple']}, got {arr.shape}"
            )
        try:
            self._rt.set_bytes(index, np.ascontiguousarray(arr))
        except ValueError as exc:  # the runtime's refusal (constant, inside a fused block)
            raise TflmVmcuError(str(exc)) from None

    def get_tensor(self, index: int) -> np.ndarray:
        d = self._details(index)
        if d["dtype"] is None:
            raise UnsupportedError(f"tensor '{d['name']}' has a type numpy cannot hold")
        try:
            raw = self._rt.get_bytes(index)
        except ValueError as exc:
            raise TflmVmcuError(str(exc)) from None
        return np.frombuffer(raw, dtype=d["dtype"]).reshape(d["shape_tuple"]).copy()

    def invoke(self) -> None:
        self._check(self._rt.invoke())

    # --- memory statistics ---------------------------------------------------------------
    @property
    def activation_bytes(self) -> int:
        """Bytes of the activation pool."""
        return int(self._rt.pool_bytes())

    @property
    def state_bytes(self) -> int:
        """Bytes of runtime state kept beside the pool (tensor structs, op data)."""
        return int(self._rt.state_bytes())

    @property
    def arm32_state_bytes(self) -> int:
        """The runtime state the same model needs on a 32-bit Arm core (Cortex-M): what a
        device's memory block holds beside the pool (state_bytes is this build's, with
        64-bit pointers on a 64-bit host)."""
        return int(self._rt.arm32_state_bytes())

    @property
    def total_bytes(self) -> int:
        return self.activation_bytes + self.state_bytes

    @property
    def has_plan(self) -> bool:
        """True when the model carries a tflm-vmcu memory plan (ring placement)."""
        return bool(self._rt.has_plan())

    @property
    def fused_blocks(self) -> int:
        """Inverted-bottleneck blocks the plan runs as fused kernels."""
        return int(self._rt.fused_blocks())

    @property
    def hazards(self) -> int:
        """Hazards seen so far under the hazard checker (0 when it is off)."""
        return int(self._rt.hazard_count())

    @property
    def first_hazard(self) -> str:
        """Description of the first hazard (op, tensor, byte, pool offset), or ""."""
        return str(self._rt.hazard_message())

    def memory_guards_intact(self) -> bool:
        """True if no byte around the runtime's memory block was written (for tests)."""
        return bool(self._rt.guards_intact())


_hinted = [False]


def _hint_once(model: bytes) -> None:
    """The first model without a plan in this process: a PlanHint saying what
    `tflm-vmcu compile` would save (computed by compiling it once)."""
    if _hinted[0]:
        return
    _hinted[0] = True  # before compiling: that loads the model again
    from .compiler import unplanned_note

    try:
        note = unplanned_note(model)
    except Exception:  # a hint never stops a model from loading
        return
    if note is not None:
        warnings.warn(note.removeprefix("note: "), PlanHint, stacklevel=3)

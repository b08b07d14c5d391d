"""The package's one error type, with subclasses that say what kind of input was bad."""

from __future__ import annotations


class TflmVmcuError(Exception):
    """Base of every error the package raises on bad input or an unsupported model."""


class ModelError(TflmVmcuError):
    """The file is not a readable .tflite model (truncated, corrupted, wrong format)."""


class UnsupportedError(TflmVmcuError):
    """The model uses an op, tensor type or feature the runtime cannot run."""


class OutOfMemoryError(TflmVmcuError):
    """The memory block given to the runtime is too small."""


class RuntimeStateError(TflmVmcuError):
    """The runtime was used out of order (e.g. invoke before allocation)."""


class PlanHint(UserWarning):
    """Said once per process, when a model without a memory plan is loaded: what compiling
    it would save (the model runs either way)."""

"""tflm-vmcu: segment-level memory management and a runtime for int8 TFLite Micro models."""

from .errors import (
    ModelError,
    OutOfMemoryError,
    PlanHint,
    RuntimeStateError,
    TflmVmcuError,
    UnsupportedError,
)
from .interpreter import Interpreter
from .reader import read_model

__all__ = [
    "Interpreter",
    "ModelError",
    "OutOfMemoryError",
    "PlanHint",
    "RuntimeStateError",
    "TflmVmcuError",
    "UnsupportedError",
    "read_model",
]
__version__ = "0.1.0"

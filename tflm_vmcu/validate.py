"""Runs a model through our runtime and the real TFLM runtime on the same seeded
inputs and compares the outputs bit for bit, with both memory figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .interpreter import Interpreter
from .ir import Graph
from .reader import load_bytes, read_model
from .tflm_reference import run_tflm


def make_inputs(graph: Graph, runs: int, seed: int) -> list[list[np.ndarray]]:
    """Seeded random inputs. Float inputs are drawn over the range the model's first
    QUANTIZE maps to int8, with sub-step jitter so rounding is exercised."""
    rng = np.random.default_rng(seed)
    consumers = {t: op for op in graph.operators for t in op.inputs}
    sets = []
    for _ in range(runs):
        arrays = []
        for t in (graph.tensors[i] for i in graph.inputs):
            dtype = np.dtype(t.np_dtype)
            if dtype.kind == "f":
                op = consumers.get(t.index)
                q = graph.tensors[op.outputs[0]].quant if op and op.opcode == "QUANTIZE" else None
                scale, zp = (q.scale, q.zero_point) if q else (1.0 / 128, 0)
                levels = rng.integers(-128, 128, size=t.shape)
                jitter = rng.uniform(-0.45, 0.45, size=t.shape)
                arrays.append(((levels - zp + jitter) * scale).astype(dtype))
            else:
                info = np.iinfo(dtype)
                arrays.append(
                    rng.integers(info.min, info.max, size=t.shape, endpoint=True, dtype=dtype)
                )
        sets.append(arrays)
    return sets


def run_ours(interp: Interpreter, inputs: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    results = []
    for arrays in inputs:
        for d, a in zip(interp.get_input_details(), arrays, strict=True):
            interp.set_tensor(d["index"], a)
        interp.invoke()
        results.append([interp.get_tensor(d["index"]) for d in interp.get_output_details()])
    return results


@dataclass
class OutputDiff:
    index: int
    name: str
    bit_exact: bool
    mismatches: int  # elements that differ, summed over runs
    max_abs_diff: float


@dataclass
class ValidationReport:
    model: str
    runs: int
    seed: int
    outputs: list[OutputDiff]
    ours: dict[str, int]
    tflm: dict[str, int]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def bit_exact(self) -> bool:
        return all(o.bit_exact for o in self.outputs)

    @property
    def ok(self) -> bool:
        """Bit-exact, and hazard-free when the hazard checker ran."""
        return self.bit_exact and not self.extra.get("hazards", 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "bit_exact": self.bit_exact,
            "runs": self.runs,
            "seed": self.seed,
            "outputs": [vars(o) for o in self.outputs],
            "ours": self.ours,
            "tflm": self.tflm,
            **self.extra,
        }


def compare(
    ours: list[list[np.ndarray]], ref: list[list[np.ndarray]], names: list[str]
) -> list[OutputDiff]:
    diffs = []
    for i, name in enumerate(names):
        mismatches, max_diff = 0, 0.0
        for run_ours_, run_ref in zip(ours, ref, strict=True):
            a, b = run_ours_[i], run_ref[i]
            if a.shape != b.shape or a.dtype != b.dtype:
                mismatches += max(a.size, b.size)
                max_diff = float("inf")
                continue
            differ = a.view(np.uint8) != b.view(np.uint8)
            mismatches += int(np.count_nonzero(differ))
            if differ.any():
                max_diff = max(
                    max_diff, float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
                )
        diffs.append(OutputDiff(i, name, mismatches == 0, mismatches, max_diff))
    return diffs


def validate(
    model_path: str, runs: int = 5, seed: int = 0, check_hazards: bool = False
) -> ValidationReport:
    data = load_bytes(model_path)
    graph = read_model(data)
    interp = Interpreter(data, check_hazards=check_hazards)
    inputs = make_inputs(graph, runs, seed)
    ours = run_ours(interp, inputs)
    ref = run_tflm(data, inputs)
    names = [d["name"] for d in interp.get_output_details()]
    extra: dict[str, Any] = {"planned": interp.has_plan}
    if check_hazards:
        extra["hazards"] = interp.hazards
        extra["first_hazard"] = interp.first_hazard
    return ValidationReport(
        model=model_path,
        runs=runs,
        seed=seed,
        outputs=compare(ours, ref.outputs, names),
        ours={
            "pool_bytes": interp.activation_bytes,
            "state_bytes": interp.state_bytes,
            "total_bytes": interp.total_bytes,
        },
        tflm={
            "head_bytes": ref.head_bytes,
            "tail_bytes": ref.tail_bytes,
            "total_bytes": ref.total_bytes,
        },
        extra=extra,
    )

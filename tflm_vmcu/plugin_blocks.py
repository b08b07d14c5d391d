"""Fused inverted-bottleneck blocks as TFLM custom operators, for the TFLM plug-in.

TFLM allocates every tensor an operator touches, so a block fused only in the plan would
still get its expanded tensors. The compiler therefore rewrites each fused block into one
CUSTOM operator (as Arm's Vela does for the Ethos-U):

    CUSTOM "TFLM_VMCU_BOTTLENECK" (A, the block's weights and biases) -> E

Its custom options are a nested flatbuffer: a tflite SubGraph table holding the block's
original operators, unchanged (their operator codes, options and tensor indices, which refer
to the model's own tables). The inner tensors (B, C, D) stay in the model's tensor table,
read and written by no operator, so stock tooling still shows their shapes; the plug-in's
planner gives them no bytes, and its kernel rebuilds the block from the nested operators.

`unfuse` undoes the rewrite: the model stock TFLM runs, operator for operator the original.
"""

from __future__ import annotations

import dataclasses

import flatbuffers
import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from .errors import ModelError
from .plan_format import pack_model
from .planner.plan import FusedBlock, Plan

BLOCK_CUSTOM_CODE = "TFLM_VMCU_BOTTLENECK"
_CUSTOM = 32  # BuiltinOperator.CUSTOM


def _custom_code(m: schema.ModelT, opcode_index: int) -> str:
    code = m.operatorCodes[opcode_index]
    name = code.customCode or b""
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


def is_block_op(m: schema.ModelT, op: schema.OperatorT) -> bool:
    builtin = max(m.operatorCodes[op.opcodeIndex].builtinCode, 0)
    return builtin == _CUSTOM and _custom_code(m, op.opcodeIndex) == BLOCK_CUSTOM_CODE


def _block_opcode(m: schema.ModelT) -> int:
    for k in range(len(m.operatorCodes)):
        if m.operatorCodes[k].builtinCode == _CUSTOM and _custom_code(m, k) == BLOCK_CUSTOM_CODE:
            return k
    code = schema.OperatorCodeT()
    code.builtinCode = _CUSTOM
    code.deprecatedBuiltinCode = _CUSTOM
    code.customCode = BLOCK_CUSTOM_CODE
    code.version = 1
    m.operatorCodes.append(code)
    return len(m.operatorCodes) - 1


def nested_options(ops: list[schema.OperatorT]) -> np.ndarray:
    """A block operator's custom options: `ops` as a nested SubGraph flatbuffer."""
    sub = schema.SubGraphT()
    sub.operators = ops
    builder = flatbuffers.Builder(1024)
    builder.Finish(sub.Pack(builder))
    return np.frombuffer(bytes(builder.Output()), dtype=np.uint8)


def _is_constant(m: schema.ModelT, t: int) -> bool:
    tensor = m.subgraphs[0].tensors[t]
    data = m.buffers[tensor.buffer].data if 0 < tensor.buffer < len(m.buffers) else None
    return data is not None and len(data) > 0


def fuse_blocks(model: bytes, plan: Plan) -> tuple[bytes, Plan]:
    """The model with each of `plan`'s fused blocks rewritten into one custom operator, and
    the plan in terms of the new operators (the tensors keep their indices)."""
    m = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    sg = m.subgraphs[0]
    code = _block_opcode(m)
    starts = {b.first: b for b in plan.blocks}
    new_index: dict[int, int] = {}  # original operator -> operator of the rewritten model
    operators: list[schema.OperatorT] = []
    blocks: list[FusedBlock] = []
    words: dict[int, np.ndarray] = {}
    k = 0
    while k < len(sg.operators):
        b = starts.get(k)
        if b is None:
            new_index[k] = len(operators)
            if k in plan.op_words:
                words[len(operators)] = plan.op_words[k]
            operators.append(sg.operators[k])
            k += 1
            continue
        inner = sg.operators[b.first : b.last + 1]
        custom = schema.OperatorT()
        custom.opcodeIndex = code
        constants = [t for op in inner for t in op.inputs if t >= 0 and _is_constant(m, int(t))]
        custom.inputs = np.array([inner[0].inputs[0], *constants], dtype=np.int32)
        custom.outputs = np.array([inner[-1].outputs[0]], dtype=np.int32)
        custom.customOptions = nested_options(inner)
        custom.customOptionsFormat = 0
        for j in range(b.first, b.last + 1):
            new_index[j] = len(operators)
        words[len(operators)] = _inner_words(
            [plan.op_words.get(j) for j in range(b.first, b.last + 1)]
        )
        blocks.append(dataclasses.replace(b, first=len(operators), last=len(operators)))
        operators.append(custom)
        k = b.last + 1
    sg.operators = operators
    end = len(operators)
    placements = {
        t: dataclasses.replace(
            p,
            first=new_index.get(p.first, end),
            last=new_index.get(p.last, end),
        )
        for t, p in plan.placements.items()
    }
    rewritten = dataclasses.replace(
        plan,
        placements=placements,
        op_words=words,
        blocks=blocks,
        tflm_kernel_ops={new_index[k] for k in plan.tflm_kernel_ops},
    )
    return pack_model(m, len(model)), rewritten


def _inner_words(per_op: list[np.ndarray | None]) -> np.ndarray:
    """A block operator's plan data: [count, start of each inner operator's words (-1:
    none), the words], read by the plug-in's block kernel."""
    starts, data, at = [], [], 1 + len(per_op)
    for w in per_op:
        starts.append(-1 if w is None else at)
        if w is not None:
            data.append(w.astype(np.int32))
            at += len(w)
    return np.concatenate([np.array([len(per_op), *starts], dtype=np.int32), *data])


def nested_operators(m: schema.ModelT, op: schema.OperatorT) -> list[schema.OperatorT]:
    """The original operators of a block operator."""
    raw = (
        bytes(np.asarray(op.customOptions, dtype=np.uint8)) if op.customOptions is not None else b""
    )
    try:
        sub = schema.SubGraphT.InitFromPackedBuf(bytearray(raw), 0)
    except Exception as exc:  # a corrupt nested buffer: name what it is
        raise ModelError(
            f"custom operator {BLOCK_CUSTOM_CODE} has unreadable options ({exc})"
        ) from None
    return list(sub.operators or [])


def unfuse(model: bytes) -> bytes:
    """The model with every block operator replaced by the operators it stands for."""
    m = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    sg = m.subgraphs[0]
    if not any(is_block_op(m, op) for op in sg.operators or []):
        return model
    operators: list[schema.OperatorT] = []
    for op in sg.operators:
        operators.extend(nested_operators(m, op) if is_block_op(m, op) else [op])
    sg.operators = operators
    return pack_model(m, len(model))


def block_op_count(model: bytes) -> int:
    m = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    return sum(is_block_op(m, op) for op in m.subgraphs[0].operators or [])

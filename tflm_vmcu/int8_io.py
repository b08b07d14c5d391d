"""`compile --io int8`: the model's float edges removed, as the TFLite converter's
`inference_input_type=int8` / `inference_output_type=int8` do.

A QUANTIZE whose input is a float32 model input that nothing else reads is removed, and
its int8 output becomes the model input; a DEQUANTIZE whose output is a float32 model
output is removed, and its int8 input becomes the model output. The caller then quantises
inputs and dequantises outputs itself, with the scale and zero point of those tensors
(returned here, printed by `compile`, and in every API's input and output details). The
float tensors leave the tensor table (every tensor index after them shifts down), so
neither TFLM nor this runtime gives them bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from .errors import ModelError
from .plan_format import pack_model

_QUANTIZE, _DEQUANTIZE = 114, 6  # BuiltinOperator
_FLOAT32, _INT8 = 0, 9  # TensorType


@dataclass(frozen=True)
class Int8Edge:
    """A model input or output that became int8: real = scale * (q - zero_point)."""

    kind: str  # "input" or "output"
    position: int  # in the model's inputs or outputs
    name: str
    scale: float
    zero_point: int
    removed_op: str  # "QUANTIZE" or "DEQUANTIZE"
    float_bytes: int  # bytes of the float tensor that no longer exists


def _builtin(m: schema.ModelT, op: schema.OperatorT) -> int:
    code = m.operatorCodes[op.opcodeIndex]
    return int(max(code.builtinCode, code.deprecatedBuiltinCode))


def _name(t: schema.TensorT) -> str:
    n = t.name
    return n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n or "")


def _per_tensor(t: schema.TensorT) -> tuple[float, int] | None:
    q = t.quantization
    if q is None or q.scale is None or q.zeroPoint is None:
        return None
    if len(q.scale) != 1 or len(q.zeroPoint) != 1:
        return None
    return float(q.scale[0]), int(q.zeroPoint[0])


def _nbytes(t: schema.TensorT, itemsize: int) -> int:
    n = itemsize
    for d in t.shape if t.shape is not None else []:
        n *= int(d)
    return n


def int8_io(model: bytes) -> tuple[bytes, list[Int8Edge]]:
    """The model with its float input QUANTIZEs and output DEQUANTIZEs removed, and the
    edges that became int8. A model without such edges comes back unchanged."""
    m = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    if m.subgraphs is None or len(m.subgraphs) != 1:
        raise ModelError("--io int8 takes single-subgraph models only")
    g = m.subgraphs[0]
    ops = list(g.operators or [])
    inputs = [int(t) for t in (g.inputs if g.inputs is not None else [])]
    outputs = [int(t) for t in (g.outputs if g.outputs is not None else [])]
    readers: dict[int, int] = {}
    for op in ops:
        for t in op.inputs if op.inputs is not None else []:
            readers[int(t)] = readers.get(int(t), 0) + 1
    replace: dict[int, int] = {}  # float tensor -> the int8 tensor that takes its place
    removed_ops: set[int] = set()
    edges: list[Int8Edge] = []
    for k, op in enumerate(ops):
        code = _builtin(m, op)
        ins = [int(t) for t in (op.inputs if op.inputs is not None else [])]
        outs = [int(t) for t in (op.outputs if op.outputs is not None else [])]
        if code not in (_QUANTIZE, _DEQUANTIZE) or len(ins) != 1 or len(outs) != 1:
            continue
        src, dst = ins[0], outs[0]
        if code == _QUANTIZE:
            float_t, int8_t, kind, edge_list = src, dst, "input", inputs
            if readers.get(src) != 1 or dst in outputs or src in outputs:
                continue
        else:
            float_t, int8_t, kind, edge_list = dst, src, "output", outputs
            if dst in inputs or src in inputs:
                continue
        if float_t not in edge_list or edge_list.count(float_t) != 1 or int8_t in edge_list:
            continue
        ft, qt = g.tensors[float_t], g.tensors[int8_t]
        quant = _per_tensor(qt)
        if ft.type != _FLOAT32 or qt.type != _INT8 or quant is None:
            continue
        replace[float_t] = int8_t
        removed_ops.add(k)
        edges.append(
            Int8Edge(
                kind,
                edge_list.index(float_t),
                _name(qt),
                quant[0],
                quant[1],
                "QUANTIZE" if code == _QUANTIZE else "DEQUANTIZE",
                _nbytes(ft, 4),
            )
        )
    if not edges:
        return model, []
    # A DEQUANTIZE's int8 input may have other readers; it stays, now a model output too.
    keep = [t for t in range(len(g.tensors)) if t not in replace]
    new_index = {t: j for j, t in enumerate(keep)}

    def remap(t: int) -> int:
        return -1 if t < 0 else new_index[replace.get(t, t)]

    g.operators = [op for k, op in enumerate(ops) if k not in removed_ops]
    for op in g.operators:
        op.inputs = [remap(int(t)) for t in (op.inputs if op.inputs is not None else [])]
        op.outputs = [remap(int(t)) for t in (op.outputs if op.outputs is not None else [])]
        if op.intermediates is not None:
            op.intermediates = [remap(int(t)) for t in op.intermediates]
    g.inputs = [remap(t) for t in inputs]
    g.outputs = [remap(t) for t in outputs]
    g.tensors = [g.tensors[t] for t in keep]
    for sig in m.signatureDefs or []:
        if sig.subgraphIndex not in (0, None):
            continue
        for entry in [*(sig.inputs or []), *(sig.outputs or [])]:
            entry.tensorIndex = remap(int(entry.tensorIndex))
    return pack_model(m, len(model)), edges

"""Reads a .tflite file into the IR (tflm_vmcu.ir), with one clear error on bad input."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from .errors import ModelError, TflmVmcuError, UnsupportedError
from .ir import Graph, Operator, Quantization, Tensor

_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_OPTION_CLASSES = {v: k for k, v in vars(schema.BuiltinOptions).items() if not k.startswith("_")}
_SKIP_METHODS = re.compile(r"^(Init|GetRootAs\w*|\w+AsNumpy|\w+Length|\w+IsNone)$")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _decode_options(op: Any) -> dict[str, Any]:
    cls_name = _OPTION_CLASSES.get(op.BuiltinOptionsType())
    table = op.BuiltinOptions()
    if not cls_name or cls_name == "NONE" or table is None:
        return {}
    options = getattr(schema, cls_name)()
    options.Init(table.Bytes, table.Pos)
    out: dict[str, Any] = {}
    for attr in dir(options):
        if attr.startswith("_") or _SKIP_METHODS.match(attr) or not attr[0].isupper():
            continue
        method = getattr(options, attr)
        try:
            value = method()
        except TypeError:  # accessors that take an index (vector elements)
            as_numpy = getattr(options, attr + "AsNumpy", None)
            if as_numpy is None:
                continue
            arr = as_numpy()
            value = [] if isinstance(arr, int) else [int(x) for x in arr]
        out[_snake(attr)] = value
    return out


def load_bytes(source: str | Path | bytes | bytearray) -> bytes:
    """The bytes of a model given as a path or bytes; ModelError if it cannot be read."""
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model '{source}': {exc.strerror}") from None


def read_model(source: str | Path | bytes | bytearray) -> Graph:
    """Parses a model from a path or bytes. Raises ModelError on anything malformed."""
    data = load_bytes(source)
    if len(data) < 16 or data[4:8] != b"TFL3":
        raise ModelError("not a .tflite model (file identifier is not 'TFL3')")
    try:
        return _read(data)
    except TflmVmcuError:
        raise
    except Exception as exc:  # the flatbuffers reader fails with assorted errors
        raise ModelError(
            f"corrupt .tflite model: an offset or length leads outside the {len(data)}-byte "
            f"file or into the wrong kind of data (is it truncated?); reader said: {exc}"
        ) from None


def _read(data: bytes) -> Graph:
    model = schema.Model.GetRootAs(data, 0)
    if model.SubgraphsLength() < 1:
        raise ModelError("model has no subgraph")
    buffers = [model.Buffers(i) for i in range(model.BuffersLength())]

    def buffer_bytes(index: int) -> bytes | None:
        if index >= len(buffers):
            raise ModelError(f"tensor names buffer {index} of {len(buffers)}")
        buf = buffers[index]
        if buf.DataLength() > 0:
            return bytes(buf.DataAsNumpy().tobytes())
        offset, size = buf.Offset(), buf.Size()
        if offset > 1:
            if offset + size > len(data):
                raise ModelError(f"buffer {index} lies outside the file")
            return data[offset : offset + size]
        return None

    sg = model.Subgraphs(0)
    tensors = []
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        name = (t.Name() or b"").decode("utf-8", "replace")
        if t.Buffer() < len(buffers) and buffers[t.Buffer()].Offset() > 1:
            # The schema's offset/size place the data after the flatbuffer; the runtime
            # does not follow them, and rewriting the model would lose the data.
            raise UnsupportedError(
                f"tensor '{name}' stores its data outside the flatbuffer (buffer offset/size): "
                "unsupported"
            )
        q = t.Quantization()
        quant = None
        if q is not None and q.ScaleLength() > 0:
            quant = Quantization(
                scales=tuple(float(x) for x in q.ScaleAsNumpy()),
                zero_points=tuple(int(x) for x in q.ZeroPointAsNumpy())
                if q.ZeroPointLength() > 0
                else (0,) * q.ScaleLength(),
                axis=q.QuantizedDimension(),
            )
        shape = tuple(int(x) for x in t.ShapeAsNumpy()) if t.ShapeLength() > 0 else ()
        tensors.append(
            Tensor(
                index=i,
                name=name,
                shape=shape,
                type_code=t.Type(),
                quant=quant,
                data=buffer_bytes(t.Buffer()),
                is_variable=bool(t.IsVariable()),
            )
        )
    operators = []
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        if op.OpcodeIndex() >= model.OperatorCodesLength():
            raise ModelError(
                f"operator {i} names operator code {op.OpcodeIndex()} of "
                f"{model.OperatorCodesLength()}"
            )
        code_table = model.OperatorCodes(op.OpcodeIndex())
        code = max(code_table.BuiltinCode(), code_table.DeprecatedBuiltinCode())
        name = _OP_NAMES.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            name = "CUSTOM:" + (code_table.CustomCode() or b"").decode("utf-8", "replace")
        ins = tuple(int(x) for x in op.InputsAsNumpy()) if op.InputsLength() else ()
        outs = tuple(int(x) for x in op.OutputsAsNumpy()) if op.OutputsLength() else ()
        for idx in ins + outs:
            if idx < -1 or idx >= len(tensors):
                raise ModelError(f"operator {i} ({name}) names tensor {idx} of {len(tensors)}")
        operators.append(Operator(i, name, code, ins, outs, _decode_options(op)))
    metadata = {}
    for i in range(model.MetadataLength()):
        m = model.Metadata(i)
        metadata[(m.Name() or b"").decode("utf-8", "replace")] = buffer_bytes(m.Buffer()) or b""
    inputs = tuple(int(x) for x in sg.InputsAsNumpy()) if sg.InputsLength() else ()
    outputs = tuple(int(x) for x in sg.OutputsAsNumpy()) if sg.OutputsLength() else ()
    for kind, indices in (("input", inputs), ("output", outputs)):
        for k, idx in enumerate(indices):
            if not 0 <= idx < len(tensors):
                raise ModelError(f"model {kind} {k} names tensor {idx} of {len(tensors)}")
    external = tuple(i for i, b in enumerate(buffers) if b.Offset() > 1)
    return Graph(
        tensors,
        operators,
        inputs,
        outputs,
        model.SubgraphsLength(),
        metadata,
        external_buffers=external,
    )

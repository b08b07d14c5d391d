"""The memory plan inside a .tflite: a metadata entry named "tflm_vmcu.plan".

The graph is left as it was, so the file still opens in Netron and runs anywhere;
runtimes that do not know the entry ignore it. Layout (little-endian uint32 words,
read by Interpreter::ApplyPlan in cpp/src/interpreter.cc):

    [magic "VMCP", version 4, pool bytes, segment bytes, graph digest, tensor count,
     offset of tensor 0, ..., offset of tensor n-1,   (offset -1: not in the pool)
     op count, start word of op 0's data, ..., of op m-1's (-1: none; -2: the op runs on
       TFLM's own kernel, in plans for the TFLM plug-in),
     fused block count, per block: first op, last op, mode (0: rows, 1: window),
       workspace offset, workspace bytes,
     data words]

Tensors produced inside a fused block (tflm_vmcu.fusion) never exist and have offset -1.

The per-op data are parameters that the runtime would otherwise compute in Prepare
and keep in RAM (for CONV_2D and DEPTHWISE_CONV_2D: int32 multipliers, then shifts,
one per output channel); the runtime checks them against its own computation.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import flatbuffers
import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper

from . import _runtime
from .errors import ModelError
from .ir import Graph
from .lifetimes import lifetimes
from .planner.plan import FusedBlock, Placement, Plan
from .reader import read_model

PLAN_METADATA = "tflm_vmcu.plan"
_MAGIC = 0x50434D56  # "VMCP"
_VERSION = 4
_HEADER = "<6I"
_HEADER_BYTES = 24
_TFLM_KERNEL = -2  # op start word: TFLM's own kernel runs the op (plug-in plans)


def plan_digest(model: bytes) -> int:
    """The digest a plan for `model` records: the runtime's own (PlanDigest in
    cpp/src/plan_verifier.h) over the graph's structure, every operator's options and small
    integer constants. The runtime refuses a plan whose digest differs, so a plan cannot be
    applied to another model, or to the same graph with other strides or permutations."""
    try:
        return int(_runtime.plan_digest(model))
    except ValueError as exc:
        raise ModelError(str(exc)) from None


def encode_plan(plan: Plan, num_tensors: int, num_ops: int, digest: int) -> bytes:
    offsets = np.full(num_tensors, -1, dtype="<i4")
    for p in plan.placements.values():
        offsets[p.tensor] = p.offset
    header = struct.pack(
        _HEADER, _MAGIC, _VERSION, plan.pool_bytes, plan.segment_bytes, digest, num_tensors
    )
    starts = np.full(num_ops, -1, dtype="<i4")
    words: list[np.ndarray] = []
    at = 0
    for k in range(num_ops):
        data = plan.op_words.get(k)
        if k in plan.tflm_kernel_ops:
            starts[k] = _TFLM_KERNEL
        elif data is not None:
            starts[k] = at
            words.append(data.astype("<i4"))
            at += len(data)
    blob = np.concatenate(words).tobytes() if words else b""
    blocks = struct.pack("<I", len(plan.blocks)) + b"".join(
        struct.pack("<5I", b.first, b.last, int(b.window), b.workspace_offset, b.workspace_bytes)
        for b in plan.blocks
    )
    return (
        header + offsets.tobytes() + struct.pack("<I", num_ops) + starts.tobytes() + blocks + blob
    )


def decode_plan(data: bytes, graph: Graph) -> Plan:
    if len(data) < _HEADER_BYTES:
        raise ModelError(f"metadata '{PLAN_METADATA}' is truncated")
    magic, version, pool, segment, _digest, n = struct.unpack_from(_HEADER, data)
    if magic != _MAGIC or version != _VERSION:
        raise ModelError(f"metadata '{PLAN_METADATA}' is not a version-{_VERSION} plan")
    # The digest itself is the runtime's to check (it also covers options and constants).
    if n != len(graph.tensors) or len(data) < _HEADER_BYTES + 4 * n + 4:
        raise ModelError("the memory plan belongs to another model (tensor count differs)")
    offsets = np.frombuffer(data, dtype="<i4", offset=_HEADER_BYTES, count=n)
    placements = {
        lt.tensor: Placement(
            lt.tensor,
            graph.tensors[lt.tensor].name,
            int(offsets[lt.tensor]),
            lt.nbytes,
            lt.first,
            lt.last,
        )
        for lt in lifetimes(graph)
        if offsets[lt.tensor] >= 0
    }
    at = _HEADER_BYTES + 4 * n
    num_ops = struct.unpack_from("<I", data, at)[0] if len(data) >= at + 4 else -1
    if num_ops != len(graph.operators) or len(data) < at + 8 + 4 * num_ops:
        raise ModelError(f"metadata '{PLAN_METADATA}' is truncated")
    starts = np.frombuffer(data, dtype="<i4", offset=at + 4, count=num_ops)
    tflm_kernel_ops = {int(k) for k in np.flatnonzero(starts == _TFLM_KERNEL)}
    at += 4 + 4 * num_ops
    count = struct.unpack_from("<I", data, at)[0]
    if len(data) < at + 4 + 20 * count:
        raise ModelError(f"metadata '{PLAN_METADATA}' is truncated")
    blocks = []
    for k in range(count):
        first, last, mode, offset, size = struct.unpack_from("<5I", data, at + 4 + 20 * k)
        blocks.append(FusedBlock(first, last, offset, size, window=mode == 1))
    return Plan(pool, segment, placements, blocks=blocks, tflm_kernel_ops=tflm_kernel_ops)


def read_plan(graph: Graph) -> Plan | None:
    data = graph.metadata.get(PLAN_METADATA)
    return None if data is None else decode_plan(data, graph)


def kernel_spans(graph: Graph) -> list[tuple[int, int]]:
    """The operators [first, last] of each kernel call Invoke() makes, in order: one per
    operator, except one per fused block of the model's plan."""
    plan = read_plan(graph)
    blocks = {b.first: b.last for b in plan.blocks} if plan is not None else {}
    spans, k = [], 0
    while k < len(graph.operators):
        last = blocks.get(k, k)
        spans.append((k, last))
        k = last + 1
    return spans


def write_plan(model: bytes, plan: Plan) -> bytes:
    """The model with `plan` stored as metadata (replacing an older plan), constant
    buffers re-aligned to 16 bytes as TFLM's own tooling does."""
    graph = read_model(model)
    payload = encode_plan(plan, len(graph.tensors), len(graph.operators), plan_digest(model))
    return write_metadata(model, PLAN_METADATA, payload)


def write_metadata(model: bytes, name: str, payload: bytes | None) -> bytes:
    """The model with metadata entry `name` set to `payload` (replacing one of that
    name; removing it when payload is None; other entries, e.g. the other target's
    plan, stay), buffers re-aligned."""
    m = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    old = [md for md in (m.metadata or []) if _name(md) == name]
    m.metadata = [md for md in (m.metadata or []) if _name(md) != name]
    # The old entry's buffer is emptied and reused, so that rewriting the entry (compiling
    # a compiled model) does not grow the file; a buffer something else names stays.
    used = {md.buffer for md in m.metadata}
    used |= {t.buffer for g in (m.subgraphs or []) for t in (g.tensors or [])}
    free = [md.buffer for md in old if md.buffer not in used and 0 < md.buffer < len(m.buffers)]
    for b in free:
        m.buffers[b].data = None
    if payload is None:
        return pack_model(m, len(model))
    md = schema.MetadataT()
    md.name = name
    if free:
        md.buffer = free[0]
    else:
        m.buffers.append(schema.BufferT())
        md.buffer = len(m.buffers) - 1
    m.buffers[md.buffer].data = np.frombuffer(payload, dtype=np.uint8)
    m.metadata.append(md)
    return pack_model(m, len(model) + len(payload))


def pack_model(m: schema.ModelT, size_hint: int) -> bytes:
    """A model object as .tflite bytes, buffers 16-byte aligned (TFLM's own alignment tool)."""
    builder = flatbuffers.Builder(size_hint + 1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    with tempfile.TemporaryDirectory() as tmp:
        packed, aligned = Path(tmp, "packed.tflite"), Path(tmp, "aligned.tflite")
        packed.write_bytes(bytes(builder.Output()))
        tflite_flatbuffer_align_wrapper.align_tflite_model(str(packed), str(aligned))
        return aligned.read_bytes()


def _name(md: object) -> str:
    name = getattr(md, "name", b"")
    return name.decode() if isinstance(name, bytes) else str(name or "")

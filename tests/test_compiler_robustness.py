"""The compiler on malformed and extreme models: `compile` and `inspect` refuse bad input
with one line (the runtime's own check first, the reader's and planner's checks behind it),
never traceback, and stay bounded in memory and time (no recursion per op, no array per
tensor byte)."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

import tflm_vmcu
from tflm_vmcu import _runtime, compiler
from tflm_vmcu.cli import main
from tflm_vmcu.compiler import compile_bytes
from tflm_vmcu.errors import ModelError, TflmVmcuError, UnsupportedError
from tflm_vmcu.ir import check_graph
from tflm_vmcu.plan_format import pack_model, read_plan
from tflm_vmcu.reader import read_model
from tflm_vmcu.synth import ModelBuilder

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from compile_scaling import chain_model, fanout_model  # noqa: E402

# --- malformed models, built with the generator and the flatbuffer object API --------------


def _conv_relu() -> tuple[ModelBuilder, int]:
    b = ModelBuilder(seed=3)
    y = b.unary("RELU", b.conv2d(b.input([1, 6, 6, 4]), 4))
    return b, y


def _edit(data: bytes, edit: Callable[[schema.ModelT], object]) -> bytes:
    m = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    edit(m)
    return pack_model(m, len(data))


def _sub(m: schema.ModelT) -> schema.SubGraphT:
    return m.subgraphs[0]


def empty_weights() -> bytes:
    b, y = _conv_relu()
    b.tensors[b.operators[0].inputs[1]].buffer = 0
    return b.build([y])


def reads_later_output() -> bytes:
    b, y = _conv_relu()
    return _edit(b.build([y]), lambda m: _sub(m).operators.reverse())


def output_never_written() -> bytes:
    b, y = _conv_relu()
    return b.build([y, b._activation([1, 6, 6, 4], 0.02, 0)])


def no_operators() -> bytes:
    b = ModelBuilder(seed=3)
    return b.build([b.input([1, 4, 4, 2])])


def constant_input() -> bytes:
    b, y = _conv_relu()
    w = b.operators[0].inputs[1]
    b.inputs.append(w)
    return b.build([y])


def activation_scale(value: float) -> Callable[[], bytes]:
    def make() -> bytes:
        b, y = _conv_relu()
        b.tensors[b.operators[0].outputs[0]].quantization.scale = [value]
        return b.build([y])

    return make


def filter_scale(value: float) -> Callable[[], bytes]:
    def make() -> bytes:
        b, y = _conv_relu()
        q = b.tensors[b.operators[0].inputs[1]].quantization
        q.scale = [value, *q.scale[1:]]
        return b.build([y])

    return make


def shape(dims: list[int]) -> Callable[[], bytes]:
    def make() -> bytes:
        b = ModelBuilder(seed=3)
        x = b.input([1, 4, 4, 2])
        y = b.unary("RELU", x)
        b.tensors[y].shape = dims
        return b.build([y])

    return make


def operand_out_of_range() -> bytes:
    b, y = _conv_relu()
    b.operators[1].inputs = [999]
    return b.build([y])


def model_input_out_of_range() -> bytes:
    b, y = _conv_relu()
    b.inputs = [999]
    return b.build([y])


def opcode_out_of_range() -> bytes:
    b, y = _conv_relu()
    b.operators[1].opcodeIndex = 7
    return b.build([y])


def no_outputs() -> bytes:
    b, y = _conv_relu()
    b.operators[1].outputs = []
    return b.build([y])


def stride_zero() -> bytes:
    b, y = _conv_relu()
    b.operators[0].builtinOptions.strideH = 0
    return b.build([y])


def external_weights() -> bytes:
    """The conv's weights moved after the flatbuffer (Buffer.offset/size), as converters do
    for models over 2 GB: the file is complete and consistent."""
    b, y = _conv_relu()
    data = b.build([y])
    m = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    buf = m.buffers[_sub(m).tensors[b.operators[0].inputs[1]].buffer]
    weights = buf.data.tobytes()
    buf.data, buf.offset, buf.size = None, 1, len(weights)
    return _with_tail(m, buf, weights)


def external_metadata() -> bytes:
    """A model whose only external buffer is a metadata entry's (no tensor uses it)."""
    b, y = _conv_relu()
    m = schema.ModelT.InitFromPackedBuf(bytearray(b.build([y])), 0)
    buf = schema.BufferT()
    buf.offset, buf.size = 1, 8
    m.buffers.append(buf)
    md = schema.MetadataT()
    md.name, md.buffer = "notes", len(m.buffers) - 1
    m.metadata = [md]
    return _with_tail(m, buf, b"8 bytes!")


def _with_tail(m: schema.ModelT, buf: schema.BufferT, tail: bytes) -> bytes:
    import flatbuffers

    def packed() -> bytes:
        builder = flatbuffers.Builder(1024)
        builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    at = -(-len(packed()) // 16) * 16 + 16
    buf.offset = at
    head = packed()
    assert len(head) <= at
    return head + bytes(at - len(head)) + tail


# Refused by the runtime and, behind it, by the compiler's own checks: (make, what the
# compiler's own message says).
REFUSED: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty weight buffer": (empty_weights, "has no data"),
    "op reads a tensor produced later": (reads_later_output, "is written later"),
    "graph output nothing writes": (output_never_written, "is written by no operator"),
    "no operators": (no_operators, "has no operators"),
    "constant model input": (constant_input, "is constant tensor"),
    "negative dimension": (shape([1, -1, 4, 2]), "dynamic or out of range"),
    "huge dimension": (shape([1, 1 << 30, 4, 2]), "dynamic or out of range"),
    "larger than 2 GiB": (shape([1, 1 << 16, 1 << 16, 2]), "larger than 2 GiB"),
    "rank 7": (shape([1, 1, 1, 4, 4, 2, 1]), "rank 7"),
    "operand index out of range": (operand_out_of_range, "names tensor 999"),
    "model input out of range": (model_input_out_of_range, "names tensor 999"),
    "opcode out of range": (opcode_out_of_range, "operator code 7"),
    "operator without outputs": (no_outputs, "has 0 outputs"),
    "external weights": (external_weights, "outside the flatbuffer"),
}

# Bad by any reading, left to the runtime's check alone (its quantisation and option
# rules): refused with one line.
RUNTIME_REFUSED: dict[str, Callable[[], bytes]] = {
    "activation scale 0": activation_scale(0.0),
    "activation scale NaN": activation_scale(math.nan),
    "activation scale negative": activation_scale(-0.5),
    "filter scale NaN": filter_scale(math.nan),
    "stride 0": stride_zero,
}

# Where TFLM computes a defined result: compiled (and then runs bit-exact like the
# original), or refused with one line.
EITHER: dict[str, Callable[[], bytes]] = {
    "activation scale 1e30": activation_scale(1e30),
    "activation scale 1e-30": activation_scale(1e-30),
    "filter scale 1e30": filter_scale(1e30),
    "filter scale 1e-30": filter_scale(1e-30),
    "filter scale negative": filter_scale(-0.01),
    "filter scale 0": filter_scale(0.0),
    "zero dimension": shape([1, 0, 4, 2]),
}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _assert_refused(code: int, err: str) -> str:
    lines = err.splitlines()
    assert code == 1, err
    assert len(lines) == 1, err
    assert lines[0].startswith("tflm-vmcu: error: "), err
    assert "internal error" not in lines[0], err
    return lines[0]


@pytest.mark.parametrize("name", [*REFUSED, *RUNTIME_REFUSED])
def test_compile_and_inspect_refuse_with_the_runtime_message(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make = REFUSED[name][0] if name in REFUSED else RUNTIME_REFUSED[name]
    data = make()
    refusal = _runtime.check_model(data)
    assert refusal, "the runtime accepts this model"
    model = tmp_path / "bad.tflite"
    model.write_bytes(data)
    out_file = tmp_path / "out.tflite"
    code, _, err = _run(["compile", str(model), "-o", str(out_file)], capsys)
    assert _assert_refused(code, err) == f"tflm-vmcu: error: {' '.join(refusal.split())}"
    assert not out_file.exists()
    code, _, err = _run(["inspect", str(model)], capsys)
    line = _assert_refused(code, err)
    assert "the runtime refuses this model" in line
    assert " ".join(refusal.split()) in line


@pytest.mark.parametrize("name", REFUSED)
def test_compiler_checks_refuse_without_the_runtime_check(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader and the graph checks refuse these on their own, before planning."""
    make, says = REFUSED[name]
    monkeypatch.setattr(compiler, "runtime_refusal", lambda data: "")
    model = tmp_path / "bad.tflite"
    model.write_bytes(make())
    code, _, err = _run(["compile", str(model), "-o", str(tmp_path / "out.tflite")], capsys)
    assert says in _assert_refused(code, err)


@pytest.mark.parametrize("name", EITHER)
def test_extreme_but_defined_quantisation_compiles_or_is_refused(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = EITHER[name]()
    model, out_file = tmp_path / "m.tflite", tmp_path / "out.tflite"
    model.write_bytes(data)
    code, _, err = _run(["compile", str(model), "-o", str(out_file)], capsys)
    refusal = _runtime.check_model(data)
    if refusal:
        _assert_refused(code, err)
        return
    assert code == 0, err
    compiled = out_file.read_bytes()
    assert read_plan(read_model(compiled)) is not None
    interp = tflm_vmcu.Interpreter(compiled, check_hazards=True)
    plain = tflm_vmcu.Interpreter(data)
    for i in (interp, plain):
        inp = i.get_input_details()[0]
        x = np.random.default_rng(0).integers(-128, 128, size=inp["shape"], dtype=np.int8)
        i.set_tensor(inp["index"], x)
        i.invoke()
    index = interp.get_output_details()[0]["index"]
    assert np.array_equal(interp.get_tensor(index), plain.get_tensor(index))
    assert interp.hazards == 0


def test_external_buffer_refused_like_the_runtime_and_never_rewritten(tmp_path: Path) -> None:
    data = external_weights()
    refusal = _runtime.check_model(data)
    assert "stores its data outside the flatbuffer (buffer offset/size): unsupported" in refusal
    with pytest.raises(UnsupportedError) as reader:
        read_model(data)
    assert str(reader.value) == refusal
    with pytest.raises(UnsupportedError):
        compile_bytes(data)


def test_external_metadata_buffer_is_not_rewritten(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rewriting the model would lose data stored after the flatbuffer, wherever it is."""
    data = external_metadata()
    assert read_model(data).metadata["notes"] == b"8 bytes!"
    monkeypatch.setattr(compiler, "runtime_refusal", lambda data: "")
    with pytest.raises(UnsupportedError, match="outside the flatbuffer"):
        compile_bytes(data)


def test_inspect_lists_a_refused_model_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "bad.tflite"
    model.write_bytes(activation_scale(0.0)())
    code, out, err = _run(["inspect", str(model)], capsys)
    assert "CONV_2D" in out
    assert "RELU" in out
    assert "the runtime refuses this model" in _assert_refused(code, err)


def test_check_graph_accepts_every_committed_and_shared_model() -> None:
    """Also those the runtime does not run (an SVDF reads its variable state tensor, which
    no operator writes), as the stock-TFLM target plans them too."""
    shared = ROOT.parent / "shared" / "models"
    for path in sorted([*(ROOT / "models").glob("*.tflite"), *shared.glob("*.tflite")]):
        check_graph(read_model(path))


def test_cli_defect_is_still_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The last-resort handler: an unexpected exception is one error line, exit 1."""

    def broken(data: bytes, fusion: str = "rows") -> None:
        raise KeyError(3)

    monkeypatch.setattr(compiler, "compile_bytes", broken)
    model = ROOT / "models" / "op_relu.tflite"
    code, _, err = _run(["compile", str(model), "-o", str(tmp_path / "o.tflite")], capsys)
    assert code == 1
    assert err.splitlines() == ["tflm-vmcu: error: internal error (KeyError: 3); please report "
                                "it with the model"]  # fmt: skip


# --- bounded memory and time --------------------------------------------------------------


def _relu_model(dims: list[int]) -> bytes:
    b = ModelBuilder(seed=0)
    y = b.unary("RELU", b.input(dims))
    return b.build([b.unary("RELU", y)])


def test_huge_tensors_are_planned_or_refused_without_allocating_them(tmp_path: Path) -> None:
    """One RELU on a 2,147,483,646-byte tensor is refused (its pool is beyond what the
    runtime addresses), one on a 1 GB tensor is planned, both in a process limited to
    1 GiB of address space: nothing is allocated per tensor byte."""
    refused, planned = tmp_path / "refused.tflite", tmp_path / "planned.tflite"
    refused.write_bytes(_relu_model([1, 126, 341, 49981]))
    planned.write_bytes(_relu_model([1, 1000, 1000, 1000]))
    script = textwrap.dedent(
        f"""
        import resource, sys
        from tflm_vmcu.cli import main
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        codes = [main(["compile", {str(refused)!r}, "-o", {str(tmp_path / "a")!r}]),
                 main(["compile", {str(planned)!r}, "-o", {str(tmp_path / "b")!r}]),
                 main(["inspect", {str(refused)!r}])]
        sys.exit(10 * codes[0] + codes[1] + 100 * codes[2])
        """
    )
    # From tmp_path, so the installed package is imported rather than the source tree.
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    err = proc.stderr.splitlines()
    assert proc.returncode == 10, proc.stderr
    assert len(err) == 1
    assert "the runtime addresses at most 2,147,483,647" in err[0]
    plan = read_plan(read_model(tmp_path / "b"))
    assert plan is not None
    assert 10**9 <= plan.pool_bytes < 2 * 10**9


def test_deep_chain_plans_without_recursion() -> None:
    """A 2,000-op chain compiles under a recursion limit far below its depth, and the plan
    overlaps (a ring plan, not the tensor-level fallback)."""
    data = chain_model(2000)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(300)
    try:
        result = compile_bytes(data)
    finally:
        sys.setrecursionlimit(limit)
    assert result.plan.method == "ring"
    _assert_runs_like_unplanned(data, result.model)


@pytest.mark.parametrize("conv", [False, True])
def test_wide_fanout_compiles(conv: bool) -> None:
    data = fanout_model(1000, conv=conv)
    result = compile_bytes(data)
    assert result.plan.pool_bytes >= result.segment_bound_bytes - result.plan.segment_bytes
    _assert_runs_like_unplanned(data, result.model)


def _assert_runs_like_unplanned(original: bytes, compiled: bytes) -> None:
    planned = tflm_vmcu.Interpreter(compiled, check_hazards=True)
    plain = tflm_vmcu.Interpreter(original)
    x = np.random.default_rng(1).integers(-128, 128, size=plain.get_input_details()[0]["shape"])
    for interp in (planned, plain):
        interp.set_tensor(interp.get_input_details()[0]["index"], x.astype(np.int8))
        interp.invoke()
    index = plain.get_output_details()[0]["index"]
    assert np.array_equal(planned.get_tensor(index), plain.get_tensor(index))
    assert planned.hazards == 0


def test_errors_are_the_package_errors() -> None:
    """Every refusal above is a TflmVmcuError (the CLI's one-line path)."""
    for make, _ in REFUSED.values():
        with pytest.raises(TflmVmcuError):
            compile_bytes(make())
    with pytest.raises(ModelError):
        check_graph(read_model(no_operators()))

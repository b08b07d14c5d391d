"""Fused inverted bottlenecks: found in the graph, bit-exact with the unfused ops and with
the tflite-micro runtime, hazard-free, and their access-order model exact."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import MODELS

import tflm_vmcu
from tflm_vmcu.access import block_min_displacement
from tflm_vmcu.compiler import compile_bytes
from tflm_vmcu.fusion import Block, Chain, Fused, block_candidates, chain_candidates, find_blocks
from tflm_vmcu.ir import Graph
from tflm_vmcu.lifetimes import lifetimes
from tflm_vmcu.plan_format import write_plan
from tflm_vmcu.planner.fused import plan_model, plan_with_blocks
from tflm_vmcu.planner.plan import FusedBlock, Placement, Plan
from tflm_vmcu.synth import ModelBuilder
from tflm_vmcu.tflm_reference import TflmSession
from tflm_vmcu.validate import compare, make_inputs, run_ours


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    size: int = 9
    cin: int = 8
    expand: int | None = 24  # expanded channels; None: no expansion conv
    expand_stride: int = 1
    kernel: int = 3
    stride: int = 1
    cout: int = 8
    residual: bool = True
    padding: str = "SAME"
    act: str = "RELU"
    pad: tuple[int, int, int, int] | None = None  # PAD before the depthwise conv: t, b, l, r
    expand_kernel: int = 1  # > 1: a KxK expansion (a stem convolution)
    expand_padding: str = "SAME"
    in_pad: tuple[int, int, int, int] | None = None  # PAD before the expansion: t, b, l, r


VARIANTS = [
    Variant("classic"),
    Variant("stride2", stride=2, residual=False, cout=12),
    Variant("k5_relu", kernel=5, act="RELU", residual=False, cout=16),
    Variant("k7_stride2", kernel=7, stride=2, residual=False, size=15),
    Variant("no_expand_residual", expand=None),
    Variant("no_expand_k5_stride2", expand=None, kernel=5, stride=2, residual=False, cout=4),
    Variant("expand_stride2", expand_stride=2, size=12, cin=3, expand=16, residual=False),
    Variant("valid_no_activation", padding="VALID", act="NONE", residual=False, size=10),
    Variant("wide_channels", cin=40, expand=120, cout=40, size=5),
    Variant("pad_valid_stride2", pad=(0, 1, 0, 1), padding="VALID", stride=2, residual=False),
    Variant("pad_same_k5", pad=(2, 1, 1, 0), kernel=5, residual=False, cout=6),
    Variant("pad_no_expand", pad=(1, 1, 1, 1), padding="VALID", expand=None),
    # Windows entirely in the padding (found by the property tests).
    Variant("windows_in_padding", pad=(2, 3, 2, 3), kernel=1, padding="VALID", residual=False),
    # KxK expansions: a stem convolution streamed into the block.
    Variant("stem_k3_stride2", expand_kernel=3, expand_stride=2, size=13, residual=False),
    Variant("stem_k3_residual", expand_kernel=3, expand=8),
    Variant(
        "stem_pad_valid",
        expand_kernel=3,
        expand_stride=2,
        expand_padding="VALID",
        in_pad=(0, 1, 0, 1),
        size=12,
        residual=False,
    ),
    Variant(
        "stem_k5_pad_window_in_padding",
        expand_kernel=5,
        expand_padding="VALID",
        in_pad=(3, 2, 1, 4),
        pad=(1, 0, 0, 1),
        padding="VALID",
        residual=False,
        size=7,
    ),
]


def build(v: Variant, seed: int = 0, block_outputs: bool = True) -> bytes:
    """input -> 3x3 conv -> RELU -> block (twice when the shapes allow it) -> 1x1 conv, so
    that the blocks' inputs and outputs are inner tensors (free to wrap around the pool).
    (The RELU keeps the 3x3 conv out of the block: it could be a KxK expansion.) With
    `block_outputs`, each block's output is a model output too: compared directly, a
    kernel error cannot hide behind the last convolution's few output levels (but it no
    longer wraps around the pool end)."""
    b = ModelBuilder(seed=seed)
    x = b.input([1, v.size, v.size, 3], 0.05, -3)
    x = b.unary("RELU", b.conv2d(x, v.cin, (3, 3)), out_zp=-5)
    blocks = []
    for _ in range(2 if v.residual else 1):
        x = add_block(b, x, v, out_zero_point=5)
        blocks.append(x)
    return b.build([b.conv2d(x, 4, (1, 1)), *(blocks if block_outputs else [])])


def add_block(b: ModelBuilder, x: int, v: Variant, out_zero_point: int) -> int:
    """Variant v's block (its PADs, expansion, depthwise conv, projection, residual ADD)
    reading x; its output."""
    y = x
    if v.in_pad is not None:
        top, bottom, left, right = v.in_pad
        y = b.pad(y, [(0, 0), (top, bottom), (left, right), (0, 0)])
    if v.expand is not None:
        k, stride = (v.expand_kernel,) * 2, (v.expand_stride,) * 2
        y = b.conv2d(y, v.expand, k, stride, v.expand_padding, activation=v.act)
    if v.pad is not None:
        top, bottom, left, right = v.pad
        y = b.pad(y, [(0, 0), (top, bottom), (left, right), (0, 0)])
    y = b.depthwise_conv2d(
        y, 1, (v.kernel, v.kernel), (v.stride, v.stride), v.padding, activation=v.act
    )
    y = b.conv2d(y, v.cout, (1, 1), out_zero_point=out_zero_point)
    return b.elementwise("ADD", x, y, out_zero_point=-2) if v.residual else y


@pytest.fixture(scope="module")
def tflm() -> Iterator[TflmSession]:
    with TflmSession() as session:
        yield session


def fused_model(data: bytes, window: bool = False) -> tuple[bytes, Plan]:
    """The model compiled with every block fused (whether or not fusion lowers the pool)."""
    graph = tflm_vmcu.read_model(data)
    blocks = [dataclasses.replace(b, window=window) for b in find_blocks(graph)]
    plan = plan_with_blocks(graph, blocks)
    return write_plan(data, plan), plan


MODES = pytest.mark.parametrize("window", [False, True], ids=["rows", "window"])


@MODES
@pytest.mark.parametrize("v", VARIANTS, ids=[v.name for v in VARIANTS])
def test_block_is_found_and_runs_fused_bit_exact(
    v: Variant, window: bool, tflm: TflmSession
) -> None:
    data = build(v)
    graph = tflm_vmcu.read_model(data)
    blocks = find_blocks(graph)
    assert len(blocks) == (2 if v.residual else 1)
    assert all(b.has_expand == (v.expand is not None) for b in blocks)
    assert all(b.has_residual == v.residual for b in blocks)
    model, plan = fused_model(data, window)
    assert all(b.window == window for b in plan.blocks)
    interp = tflm_vmcu.Interpreter(model, check_hazards=True)
    assert interp.fused_blocks == len(blocks)
    inputs = make_inputs(graph, 3, seed=1)
    ours = run_ours(interp, inputs)
    assert interp.hazards == 0, interp.first_hazard
    assert interp.memory_guards_intact()
    names = [d["name"] for d in interp.get_output_details()]
    unfused = run_ours(tflm_vmcu.Interpreter(data), inputs)
    assert all(d.bit_exact for d in compare(ours, unfused, names))
    assert all(d.bit_exact for d in compare(ours, tflm.run(data, inputs).outputs, names))
    # The tensors inside a block have no bytes in the pool.
    inner = {t for b in blocks for t in b.inner}
    assert inner
    assert not inner & set(plan.placements)


def test_a_tensor_read_outside_stays_outside_the_block() -> None:
    """When the expanded tensor is also a model output, the expansion stays unfused (the
    block starts at the depthwise conv)."""
    b = ModelBuilder(seed=2)
    x = b.input([1, 6, 6, 8])
    e = b.conv2d(x, 16, (1, 1))
    y = b.conv2d(b.depthwise_conv2d(e, 1), 8, (1, 1))
    (block,) = find_blocks(tflm_vmcu.read_model(b.build([y, e])))
    assert (block.ops, block.input, block.has_expand) == ((1, 2), e, False)
    (block,) = find_blocks(tflm_vmcu.read_model(b.build([y])))
    assert (block.ops, block.input, block.has_expand) == ((0, 1, 2), x, True)


def probe_plan(graph: Graph, block: Block, d: int, rotate: bool) -> Plan:
    """Every live tensor in its own bytes, the workspace after them, and the block output
    exactly d bytes before the block input (the pair wrapped around the pool end with
    `rotate`)."""
    lts = {lt.tensor: lt for lt in lifetimes(graph) if lt.tensor not in block.inner}
    offsets: dict[int, int] = {}
    at = 0
    for t in lts:
        if t not in (block.input, block.output):
            offsets[t] = at
            at += -(-lts[t].nbytes // 4) * 4
    workspace = at
    region = workspace + block.workspace_bytes
    offsets[block.output] = region
    offsets[block.input] = region + d
    pool = region + max(d + lts[block.input].nbytes, lts[block.output].nbytes)
    if rotate:  # the shared region straddles the pool end; the rest stays flat
        shift = (pool - region) // 2
        offsets = {t: (o + shift) % pool for t, o in offsets.items()}
        workspace += shift
    placements = {
        t: Placement(t, graph.tensors[t].name, offsets[t], lt.nbytes, lt.first, lt.last)
        for t, lt in lts.items()
    }
    fused = FusedBlock(
        block.ops[0], block.ops[-1], workspace, block.workspace_bytes, window=block.window
    )
    return Plan(pool, 1, placements, "probe", blocks=[fused])


def _probe(
    data: bytes, graph: Graph, plan: Plan, verify: bool = True
) -> tuple[int, str, list[np.ndarray]]:
    interp = tflm_vmcu.Interpreter(write_plan(data, plan), check_hazards=True, verify_plan=verify)
    assert interp.fused_blocks == 1
    outputs = run_ours(interp, make_inputs(graph, 1, 0))[0]
    return interp.hazards, interp.first_hazard, outputs


@MODES
@pytest.mark.parametrize("v", VARIANTS, ids=[v.name for v in VARIANTS])
def test_block_access_model_is_safe_and_tight(v: Variant, window: bool) -> None:
    """The block output placed exactly the modelled displacement behind its input runs
    hazard-free and unchanged (also wrapped around the pool end); one byte closer, the
    plan verifier refuses it and, with the plan trusted, the hazard checker catches it."""
    data = build(v, block_outputs=False)  # the output must be free to wrap
    graph = tflm_vmcu.read_model(data)
    check_tight(data, graph, dataclasses.replace(find_blocks(graph)[0], window=window))


def check_tight(data: bytes, graph: Graph, fused: Fused) -> int:
    """The fused kernel's output at exactly its modelled displacement runs hazard-free and
    unchanged (also wrapped); one byte closer the verifier refuses the plan and, with the
    plan trusted, the hazard checker catches it. The displacement."""
    d = block_min_displacement(fused)
    reference = run_ours(tflm_vmcu.Interpreter(data), make_inputs(graph, 1, 0))[0]
    for rotate in (False, True):
        hazards, first, outputs = _probe(data, graph, probe_plan(graph, fused, d, rotate))
        assert hazards == 0, f"d={d}, wrapped={rotate}: {first}"
        assert all(np.array_equal(a, b) for a, b in zip(outputs, reference, strict=True))
    if d > 0:
        closer = probe_plan(graph, fused, d - 1, False)
        with pytest.raises(tflm_vmcu.ModelError, match=r"unsafe memory plan .*\(fused block\)"):
            _probe(data, graph, closer)
        hazards, _, _ = _probe(data, graph, closer, verify=False)
        assert hazards > 0, f"d={d - 1} not caught"
    return d


def test_workspace_over_a_live_tensor_is_caught() -> None:
    data = build(VARIANTS[0])
    graph = tflm_vmcu.read_model(data)
    block = find_blocks(graph)[0]
    plan = probe_plan(graph, block, block_min_displacement(block), False)
    ws = plan.blocks[0]
    # Move the workspace onto the block input (read while the workspace is in use).
    moved = FusedBlock(ws.first, ws.last, plan.placements[block.input].offset, ws.workspace_bytes)
    bad = dataclasses.replace(plan, blocks=[moved], pool_bytes=plan.pool_bytes + ws.workspace_bytes)
    with pytest.raises(tflm_vmcu.ModelError, match=r"its workspace .* overlaps live tensor"):
        _probe(data, graph, bad)
    hazards, first, _ = _probe(data, graph, bad, verify=False)
    assert hazards > 0
    assert first.startswith("operator ")


def test_compiler_fuses_mobilenet_blocks_where_that_lowers_the_pool(tflm: TflmSession) -> None:
    data = (MODELS / "mobilenetv2_small.tflite").read_bytes()
    graph = tflm_vmcu.read_model(data)
    fused = compile_bytes(data)
    unfused = compile_bytes(data, fusion="off")
    assert fused.plan.blocks
    assert not unfused.plan.blocks
    assert fused.plan.pool_bytes < unfused.plan.pool_bytes
    notes = fused.plan.notes["fused_blocks"]
    assert isinstance(notes, list)
    assert len(notes) == len(fused.plan.blocks)
    assert all(n["saved_bytes"] > 0 for n in notes)
    interp = tflm_vmcu.Interpreter(fused.model, check_hazards=True)
    inputs = make_inputs(graph, 3, seed=5)
    ours = run_ours(interp, inputs)
    assert interp.hazards == 0, interp.first_hazard
    assert interp.fused_blocks == len(fused.plan.blocks)
    names = [d["name"] for d in interp.get_output_details()]
    assert all(d.bit_exact for d in compare(ours, tflm.run(data, inputs).outputs, names))


def mobilenet_chain(seed: int) -> bytes:
    """A MobileNetV1-like chain (stem conv, then depthwise / pointwise pairs) with random
    sizes and strides: candidate blocks overlap, every pointwise conv being the projection
    of one candidate and the expansion of the next."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder(seed=seed)
    x = b.input([1, int(rng.integers(12, 25)), int(rng.integers(12, 25)), 3], 0.05, -3)
    x = b.conv2d(x, int(rng.integers(16, 49)), (3, 3), (2, 2), activation="RELU6")
    for _ in range(3):
        stride = int(rng.integers(1, 3))
        x = b.depthwise_conv2d(x, 1, (3, 3), (stride, stride), activation="RELU6")
        x = b.conv2d(x, int(rng.integers(4, 65)), (1, 1), activation="RELU6")
    return b.build([b.conv2d(x, 4, (1, 1))])


def _choices(blocks: list[Fused]) -> Iterator[list[Fused]]:
    """Every set of non-overlapping blocks."""
    if not blocks:
        yield []
        return
    first, rest = blocks[0], blocks[1:]
    yield from _choices(rest)
    later = [b for b in rest if b.ops[0] > first.ops[-1]]
    for tail in _choices(later):
        yield [first, *tail]


@pytest.mark.parametrize("seed", range(8))
def test_block_choice_gives_the_smallest_pool_of_any_choice(seed: int) -> None:
    """The compiler's choice of blocks and chains gives the pool of the best of every set
    of non-overlapping candidates (planned one by one), and its bound holds for all."""
    data = mobilenet_chain(seed)
    graph = tflm_vmcu.read_model(data)
    blocks = block_candidates(graph)
    assert len(blocks) >= 5
    candidates = sorted(
        [*blocks, *chain_candidates(graph, blocks)], key=lambda c: (c.ops[0], len(c.ops))
    )
    pools = [plan_with_blocks(graph, c).pool_bytes for c in _choices(candidates)]
    plan = plan_model(graph)
    assert plan.pool_bytes == min(pools)
    if seed == 0:  # a model where a chain beats every choice of single blocks
        singles = [plan_with_blocks(graph, c).pool_bytes for c in _choices(blocks)]
        assert plan.pool_bytes < min(singles)
        assert any(n["blocks"] > 1 for n in plan.notes["fused_blocks"])
    assert all(p >= plan.notes["fusion_bound_bytes"] for p in pools)
    # The fewest blocks that reach it: each one fused saves bytes.
    assert all(n["saved_bytes"] > 0 for n in plan.notes["fused_blocks"])


def test_overlapping_candidate_beats_the_left_to_right_match(tflm: TflmSession) -> None:
    """On a MobileNetV1 chain the (pointwise, depthwise, pointwise) block that removes the
    widest tensor is chosen over the (depthwise, pointwise) pairs a left-to-right match
    takes, and runs fused bit-exact and hazard-free."""
    b = ModelBuilder(seed=3)
    x = b.input([1, 16, 16, 3], 0.05, -3)
    x = b.unary("RELU", b.conv2d(x, 8, (3, 3), (2, 2)))  # the RELU: no stem block
    x = b.conv2d(b.depthwise_conv2d(x, 1, activation="RELU6"), 48, (1, 1), activation="RELU6")
    x = b.depthwise_conv2d(x, 1, (3, 3), (2, 2), activation="RELU6")
    x = b.conv2d(x, 8, (1, 1), activation="RELU6")
    data = b.build([b.conv2d(x, 4, (1, 1))])
    graph = tflm_vmcu.read_model(data)
    assert all(len(blk.ops) == 2 for blk in find_blocks(graph))
    assert (
        plan_with_blocks(graph, find_blocks(graph)).pool_bytes
        >= plan_model(graph, "off").pool_bytes
    )
    compiled = compile_bytes(data)
    (block,) = compiled.plan.blocks
    assert (block.first, block.last) == (3, 5)
    assert compiled.plan.pool_bytes < plan_model(graph, "off").pool_bytes
    interp = tflm_vmcu.Interpreter(compiled.model, check_hazards=True)
    inputs = make_inputs(graph, 3, seed=4)
    ours = run_ours(interp, inputs)
    assert interp.hazards == 0, interp.first_hazard
    names = [d["name"] for d in interp.get_output_details()]
    assert all(d.bit_exact for d in compare(ours, tflm.run(data, inputs).outputs, names))


@dataclasses.dataclass(frozen=True)
class ChainVariant:
    name: str
    blocks: tuple[Variant, ...]
    size: int = 12


CHAINS = [
    ChainVariant(
        "stem_then_residual",
        (
            Variant("", expand_kernel=3, expand_stride=2, expand=16, cout=8, residual=False),
            Variant("", cin=8, expand=24, cout=8),
        ),
        size=15,
    ),
    ChainVariant("two_residual", (Variant("", expand=24), Variant("", expand=16, kernel=5))),
    ChainVariant(
        "stride2_pad_then_k5",
        (
            Variant("", pad=(0, 1, 0, 1), padding="VALID", stride=2, residual=False, cout=12),
            Variant("", cin=12, kernel=5, residual=False, cout=6, expand=None),
        ),
    ),
    # Output rows wider than input rows: the output must start behind the input.
    ChainVariant(
        "widening",
        (
            Variant("", expand=16, cout=16, residual=False),
            Variant("", cin=16, expand=32, cout=40, residual=False, stride=1),
        ),
    ),
    ChainVariant(
        "four_blocks",
        (
            Variant(
                "",
                expand_kernel=3,
                expand=12,
                cout=8,
                residual=False,
                in_pad=(1, 1, 1, 1),
                expand_padding="VALID",
            ),
            Variant("", expand=None),
            Variant("", stride=2, residual=False, cout=10),
            Variant("", cin=10, cout=10, expand=20, kernel=3),
        ),
    ),
]


def build_chain(c: ChainVariant, seed: int = 0, chain_output: bool = True) -> bytes:
    """input -> 3x3 conv -> RELU -> the chain's blocks -> 1x1 conv; with `chain_output`, the
    chain's output is a model output too (compared directly, as build() does)."""
    b = ModelBuilder(seed=seed)
    x = b.input([1, c.size, c.size, 3], 0.05, -3)
    x = b.unary("RELU", b.conv2d(x, 8, (3, 3)), out_zp=-5)
    for v in c.blocks:
        x = add_block(b, x, v, out_zero_point=3)
    return b.build([b.conv2d(x, 4, (1, 1)), *([x] if chain_output else [])])


def the_chain(graph: Graph, window: bool) -> Chain:
    """The chain of every block of the graph (they are consecutive)."""
    (chain,) = [
        c
        for c in chain_candidates(graph, find_blocks(graph))
        if c.ops[0] == 2 and len(c.stages) == len(find_blocks(graph))
    ]
    return dataclasses.replace(chain, window=window)


@MODES
@pytest.mark.parametrize("c", CHAINS, ids=[c.name for c in CHAINS])
def test_chain_runs_fused_bit_exact(c: ChainVariant, window: bool, tflm: TflmSession) -> None:
    """A chain of blocks runs as one kernel, its inner tensors never placed, bit-exact with
    the unfused ops and with TFLM, hazard-free."""
    data = build_chain(c)
    graph = tflm_vmcu.read_model(data)
    chain = the_chain(graph, window)
    assert len(chain.stages) == len(c.blocks)
    plan = plan_with_blocks(graph, [chain])
    assert not set(chain.inner) & set(plan.placements)
    interp = tflm_vmcu.Interpreter(write_plan(data, plan), check_hazards=True)
    assert interp.fused_blocks == 1
    inputs = make_inputs(graph, 3, seed=1)
    ours = run_ours(interp, inputs)
    assert interp.hazards == 0, interp.first_hazard
    assert interp.memory_guards_intact()
    names = [d["name"] for d in interp.get_output_details()]
    assert len(np.unique(ours[0][0])) > 8  # the outputs carry signal
    assert all(
        d.bit_exact for d in compare(ours, run_ours(tflm_vmcu.Interpreter(data), inputs), names)
    )
    assert all(d.bit_exact for d in compare(ours, tflm.run(data, inputs).outputs, names))


@MODES
@pytest.mark.parametrize("c", CHAINS, ids=[c.name for c in CHAINS])
def test_chain_access_model_is_safe_and_tight(c: ChainVariant, window: bool) -> None:
    """The chain's output exactly the modelled displacement behind its input runs
    hazard-free and unchanged (also wrapped); one byte closer is refused by the verifier
    and caught by the hazard checker."""
    data = build_chain(c, chain_output=False)  # the output must be free to wrap
    graph = tflm_vmcu.read_model(data)
    d = check_tight(data, graph, the_chain(graph, window))
    assert d > 0 or c.name != "widening"


def test_chain_longer_than_the_kernel_runs_is_refused() -> None:
    c = ChainVariant("five", tuple(Variant("", expand=16) for _ in range(5)))
    data = build_chain(c)
    graph = tflm_vmcu.read_model(data)
    blocks = find_blocks(graph)
    assert len(blocks) == 5
    assert all(len(x.stages) <= 4 for x in chain_candidates(graph, blocks))
    plan = plan_with_blocks(graph, [Chain(tuple(blocks[:4]))])
    fused = plan.blocks[0]
    too_long = dataclasses.replace(fused, last=blocks[-1].ops[-1])
    bad = dataclasses.replace(plan, blocks=[too_long])
    with pytest.raises(tflm_vmcu.ModelError, match="more than 4 blocks"):
        tflm_vmcu.Interpreter(write_plan(data, bad))


def test_block_input_larger_than_the_pool_is_refused_before_its_rows_are_walked() -> None:
    """Loading a fused block walks its rows once; a plan whose pool cannot hold the block's
    input is refused first (a hostile shape must not make loading slow)."""
    data = build(VARIANTS[0])
    graph = tflm_vmcu.read_model(data)
    plan = plan_with_blocks(graph, find_blocks(graph))
    bad = dataclasses.replace(plan, pool_bytes=16)
    with pytest.raises(tflm_vmcu.ModelError, match=r"its input .* is larger than the 16-byte pool"):
        tflm_vmcu.Interpreter(write_plan(data, bad))

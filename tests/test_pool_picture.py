"""The pool picture and table of a memory plan, on small synthetic plans."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from tflm_vmcu.ir import Graph, Operator
from tflm_vmcu.planner.plan import Placement, Plan
from tflm_vmcu.pool_picture import Rect, draw_pool, pool_table, rectangles, unlabelled_list

OPS = ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"]
NAMES = ["model/input", "model/conv1/Relu6", "model/dw1/Relu6", "model/fc/out"]


def ring_chain() -> Plan:
    """A chain t0 -> t1 -> t2 -> t3 over 3 ops in a 3.5 KB ring; t1 wraps past the end.

    At op 0, t1's wrapped piece [0, 512) overwrites the start of its dying input t0.
    """
    pool = 3584
    return Plan(
        pool_bytes=pool,
        segment_bytes=16,
        placements={
            0: Placement(0, NAMES[0], 0, 1024, 0, 0),
            1: Placement(1, NAMES[1], 2560, 1536, 0, 1),  # [2560, 3584) + [0, 512)
            2: Placement(2, NAMES[2], 512, 1536, 1, 2),
            3: Placement(3, NAMES[3], 2048, 1024, 2, 3),  # graph output: lives past op 2
        },
    )


def tensor_chain() -> Plan:
    """The same tensors placed first-fit at tensor level: no overlap, no wrap."""
    ring = ring_chain()
    offsets = {0: 0, 1: 1024, 2: 2560, 3: 0}
    placements = {
        t: Placement(t, p.name, offsets[t], p.nbytes, p.first, p.last)
        for t, p in ring.placements.items()
    }
    return Plan(4096, 0, placements, method="tensor")


def test_rectangles_split_the_wrapped_tensor() -> None:
    rects = rectangles(ring_chain())
    assert all(isinstance(r, Rect) for r in rects)
    assert len(rects) == 5  # four tensors, one of them in two pieces
    by_tensor: dict[int, list[tuple[float, float, int, int]]] = {}
    for x0, x1, y0, y1, t in rects:
        by_tensor.setdefault(t, []).append((x0, x1, y0, y1))
    assert sorted(by_tensor[1]) == [(-0.5, 1.5, 0, 512), (-0.5, 1.5, 2560, 3584)]
    assert by_tensor[0] == [(-0.5, 0.5, 0, 1024)]
    assert by_tensor[2] == [(0.5, 2.5, 512, 2048)]
    assert by_tensor[3] == [(1.5, 3.5, 2048, 3072)]
    # The pieces of the wrapped tensor add up to its size.
    assert sum(y1 - y0 for _, _, y0, y1 in by_tensor[1]) == 1536


def test_rectangles_of_a_tensor_plan_do_not_wrap() -> None:
    rects = rectangles(tensor_chain())
    assert len(rects) == 4
    assert all(0 <= r.y0 < r.y1 <= 4096 for r in rects)


def test_png_is_written_and_not_blank(tmp_path: Path) -> None:
    path = tmp_path / "pool.png"
    draw_pool(ring_chain(), OPS, path, title="ring chain")
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.ndim == 3
    assert img.shape[2] in (3, 4)
    height, width = img.shape[:2]
    assert 300 <= height <= 3000
    assert 300 <= width <= 3000
    rgb = img[:, :, :3]
    assert float(rgb.std()) > 0.05  # not a blank page
    colours = np.unique((rgb.reshape(-1, 3) * 255).astype(np.uint8), axis=0)
    assert len(colours) > 20  # rectangles, pool line, text


def test_compare_panel_is_drawn_beside(tmp_path: Path) -> None:
    single, both = tmp_path / "single.png", tmp_path / "both.png"
    draw_pool(ring_chain(), OPS, single)
    draw_pool(ring_chain(), OPS, both, title="ring vs tensor", compare=tensor_chain())
    h1, w1 = mpimg.imread(single).shape[:2]
    h2, w2 = mpimg.imread(both).shape[:2]
    assert w2 > 1.5 * w1  # side by side
    assert abs(h2 - h1) < 0.5 * h1


def test_svg_has_one_shape_per_rectangle_and_the_labels(tmp_path: Path) -> None:
    plan = ring_chain()
    path = tmp_path / "pool.svg"
    draw_pool(plan, OPS, path)
    svg = path.read_text()
    assert svg.lstrip().startswith("<?xml")
    ids = re.findall(r'<g id="tensor(\d+)_(\d+)"', svg)
    expected = {(r.tensor, int(r.y0)) for r in rectangles(plan)}
    assert {(int(t), int(y)) for t, y in ids} == expected
    assert len(ids) == 5
    # Tensor labels stay text: index and the last two parts of the name.
    for text in ("0: model/input", "1: conv1/Relu6", "2: dw1/Relu6", "3: fc/out"):
        assert text in svg
    assert "(wraps)" in svg
    assert "pool 3.5 KB" in svg
    # Op names label the columns when there are few ops; the extra column holds outputs.
    for k, name in enumerate(OPS):
        assert f"{k} {name}" in svg
    assert "3 (outputs)" in svg


def test_svg_compare_shows_both_plans(tmp_path: Path) -> None:
    path = tmp_path / "both.svg"
    draw_pool(ring_chain(), OPS, path, compare=tensor_chain())
    svg = path.read_text()
    assert "ring plan" in svg
    assert "tensor plan" in svg
    assert "ring saves 0.5 KB (12%)" in svg
    assert len(re.findall(r'<g id="tensor\d+_\d+"', svg)) == 5 + 4


def test_many_ops_use_index_ticks(tmp_path: Path) -> None:
    n_ops = 200
    placements = {
        t: Placement(t, f"t{t}", (t * 640) % 8192, 1024, max(t - 1, 0), t) for t in range(n_ops + 1)
    }
    plan = Plan(8192, 16, placements)
    names = [f"OP_{k}" for k in range(n_ops)]
    path = tmp_path / "big.svg"
    draw_pool(plan, names, path)
    svg = path.read_text()
    assert "OP_5" not in svg  # too many ops to name them
    assert len(re.findall(r'<g id="tensor\d+_\d+"', svg)) == len(rectangles(plan))
    png = tmp_path / "big.png"
    draw_pool(plan, names, png)
    height, width = mpimg.imread(png).shape[:2]
    assert width <= 2500
    assert height <= 1200


def test_unknown_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        draw_pool(ring_chain(), OPS, tmp_path / "pool.jpg")


def test_pool_table_rows() -> None:
    table = pool_table(ring_chain(), OPS, None)
    lines = table.splitlines()
    assert lines[0].startswith("ring plan: pool 3,584 bytes")
    rows = [line.split() for line in lines[3:7]]
    # op, name, live tensors, live bytes, ring span that holds them
    assert rows[0] == ["0", "CONV_2D", "2", "2,560", "2,048"]
    assert rows[1] == ["1", "DEPTHWISE_CONV_2D", "2", "3,072", "3,072"]
    assert rows[2] == ["2", "FULLY_CONNECTED", "2", "2,560", "2,560"]
    assert rows[3] == ["3", "(outputs)", "1", "1,024", "1,024"]
    assert "peak live bytes 3,072" in lines[-1]


def test_pool_table_names_ops_from_the_graph() -> None:
    ops = [Operator(k, name, 0, (k,), (k + 1,)) for k, name in enumerate(OPS)]
    graph = Graph(tensors=[], operators=ops, inputs=(0,), outputs=(3,))
    table = pool_table(tensor_chain(), [], graph)
    rows = [line.split() for line in table.splitlines()[3:7]]
    assert [r[1] for r in rows] == [*OPS, "(outputs)"]
    assert rows[1][3:] == ["3,072", "3,072"]  # tensor plan: the span is the live bytes


def test_picture_has_a_key_a_caption_and_tooltips(tmp_path: Path) -> None:
    """The legend and the caption say what a box, the dashed line and the grey band are;
    each box of the SVG carries its tensor's name, bytes, offset and lifetime on hover;
    each panel has its own address scale."""
    ring, tensor = ring_chain(), tensor_chain()
    path = tmp_path / "pool.svg"
    draw_pool(ring, OPS, path, compare=tensor)
    svg = path.read_text()
    for text in ("tensor", "pool size", "beyond the pool (unused)", "Each box is an activation"):
        assert text in svg
    titles = re.findall(r"<title>tensor (\d+) '[^']*': ([\d,]+) bytes at pool offset ([\d,]+)", svg)
    assert len(titles) == 5 + 4
    placed = {
        (p.tensor, p.nbytes, p.offset) for pl in (ring, tensor) for p in pl.placements.values()
    }
    assert {
        (int(t), int(b.replace(",", "")), int(o.replace(",", ""))) for t, b, o in titles
    } <= placed
    # Independent scales: each panel's top tick is its own pool's size, not the larger one.
    assert "pool 3.5 KB" in svg
    assert "pool 4.0 KB" in svg or "pool 4 KB" in svg


def test_boxes_too_small_for_a_label_are_listed(tmp_path: Path) -> None:
    """On a crowded picture the large boxes are labelled and every other one is returned,
    and listed with its bytes, offset and operators: each tensor is named in one of the two."""
    placements = {0: Placement(0, "big/input", 0, 60_000, 0, 30)}
    placements.update(
        {t: Placement(t, f"small/t{t}", 60_000 + 64 * t, 64, t - 1, t) for t in range(1, 161)}
    )
    plan = Plan(72_000, 16, placements)
    path = tmp_path / "crowded.svg"
    unlabelled = draw_pool(plan, [f"OP_{k}" for k in range(160)], path)
    labelled = {int(t) for t in re.findall(r'<g id="label(\d+)"', path.read_text())}
    assert 0 in labelled
    assert unlabelled
    assert {p.tensor for p in unlabelled} == set(placements) - labelled
    text = unlabelled_list(unlabelled, "crowded.svg")
    assert text.startswith(f"Boxes too small for a label in crowded.svg ({len(unlabelled)}):")
    p = unlabelled[0]
    assert (
        f"tensor {p.tensor} {p.name}: 64 bytes at {p.offset:,}, operators {p.first}-{p.last}"
        in text
    )
    assert unlabelled_list([], "x.png") == "Every box in x.png is labelled.\n"

"""Pictures and tables of a memory plan: the activation pool over the op sequence.

The picture has one column per operator (x) and the pool addresses in bytes (y). Each
activation tensor is a rectangle spanning the ops where it is live and the addresses it
occupies; a tensor that wraps past the end of the ring pool is drawn as two rectangles.
An op's output may overlap the input it overwrites at the op where both are live, so
rectangles are semi-transparent with edges and overlaps stay visible.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .planner.plan import Placement, Plan

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .ir import Graph

# Ops up to this count get their names as x tick labels; above it, indices only.
MAX_NAMED_OPS = 60
_FACE_ALPHA = 0.45
_DPI = 110


class Rect(NamedTuple):
    """One drawn rectangle: ops [x0, x1] (half-column edges), addresses [y0, y1)."""

    x0: float
    x1: float
    y0: int
    y1: int
    tensor: int


def rectangles(plan: Plan) -> list[Rect]:
    """Rectangles of every placement, ordered by first op, then tensor index.

    A placement spans x = first - 0.5 .. last + 0.5 and one rectangle per address range:
    two when it wraps past the end of the pool. Empty tensors give no rectangle.
    """
    rects: list[Rect] = []
    for p in _ordered(plan):
        if p.nbytes <= 0:
            continue
        for lo, hi in p.byte_ranges(plan.pool_bytes):
            if hi > lo:
                rects.append(Rect(p.first - 0.5, p.last + 0.5, lo, hi, p.tensor))
    return rects


def draw_pool(
    plan: Plan,
    op_names: list[str],
    path: Path,
    title: str = "",
    compare: Plan | None = None,
) -> list[Placement]:
    """Draw the pool over time for `plan` to `path` (PNG or SVG, by its suffix).

    With `compare` (e.g. the tensor-level placement), that plan is drawn in a second
    panel to the right with its own address scale, so the saving is visible.

    Returns the tensors (and fused workspaces) of `plan` whose box is too small on screen
    for a label, in drawing order (unlabelled_list() writes them out).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".svg"):
        raise ValueError(f"{path}: the picture must be a .png or .svg file")

    plans = [plan] if compare is None else [plan, compare]
    n_cols = _columns(plans, op_names)
    colours = _colour_map(plans)

    panel_w = min(16.0, max(5.5, 2.5 + 0.11 * n_cols))
    if len(plans) == 2:
        panel_w = min(panel_w, 11.0)
    named = len(op_names) <= MAX_NAMED_OPS
    longest = max((len(_op_label(i, op_names)) for i in range(n_cols)), default=1)
    height = min(8.0, max(5.5, 0.3 * panel_w * len(plans)))
    height += min(longest, 24) * 0.07 if named else 0.0
    height += 0.9  # the key and the caption

    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "tflm-vmcu", "font.size": 9}):
        fig, axes = plt.subplots(
            1,
            len(plans),
            figsize=(panel_w * len(plans), height),
            dpi=_DPI,
            squeeze=False,
            layout="constrained",
        )
        try:
            panels: list[Axes] = list(axes[0])
            for k, (ax, pl) in enumerate(zip(panels, plans, strict=True)):
                # Each panel its own address scale: a small ring beside a large flat plan
                # would otherwise be squashed to a strip.
                y_top = max(1, pl.pool_bytes, *(r.y1 for r in rectangles(pl)))
                _draw_panel(ax, pl, op_names, n_cols, named, colours, y_top)
                ax.set_title(_panel_title(pl, plans[0] if k else None), fontsize=10)
                ax.set_ylabel("pool address")
            if title:
                fig.suptitle(title, fontsize=12)
            _key(fig)
            # Fix the layout, then label the rectangles that are big enough on screen.
            fig.canvas.draw()
            fig.set_layout_engine("none")
            labelled = [
                _label_rectangles(fig, ax, pl) for ax, pl in zip(panels, plans, strict=True)
            ]
            meta: dict[str, str | None] = (
                {"Date": None} if suffix == ".svg" else {"Software": "tflm-vmcu"}
            )
            fig.savefig(path, format=suffix[1:], dpi=_DPI, metadata=meta)
        finally:
            plt.close(fig)
    if suffix == ".svg":
        _add_tooltips(path, plans)
    return [p for p in _ordered(plan) if p.nbytes > 0 and p.tensor not in labelled[0]]


def unlabelled_list(unlabelled: Sequence[Placement], picture: str) -> str:
    """The boxes `picture` draws without a label: index, name, bytes, offset, operators."""
    if not unlabelled:
        return f"Every box in {picture} is labelled.\n"
    lines = [f"Boxes too small for a label in {picture} ({len(unlabelled)}):"]
    for p in unlabelled:
        name = p.name if p.tensor < 0 else f"tensor {p.tensor} {p.name}"
        lines.append(f"  {name}: {p.nbytes:,} bytes at {p.offset:,}, operators {p.first}-{p.last}")
    return "\n".join(lines) + "\n"


CAPTION = (
    "Each box is an activation tensor: the pool bytes it occupies (up) while it is live "
    "(across: from the operator that writes it to the last one that reads it). Boxes that "
    "overlap are an output written over an input it has finished reading. A tensor drawn "
    "in two pieces wraps around the end of the ring pool. Box labels: tensor index and name; "
    "boxes too small for one are listed in the report's .txt (and named by the SVG's tooltips)."
)


def _key(fig: Figure) -> None:
    """The legend and the caption, below the panels."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Patch(facecolor=(0.55, 0.7, 0.9, _FACE_ALPHA), edgecolor="0.4", label="tensor"),
        Line2D([], [], color="#c0392b", linestyle="--", linewidth=1.4, label="pool size"),
        Patch(facecolor="0.93", edgecolor="0.8", label="beyond the pool (unused)"),
    ]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)
    width = int(fig.get_figwidth() * 17)  # characters of 7-point text per line
    fig.supxlabel(textwrap.fill(CAPTION, width), fontsize=7, color="0.25")


def _add_tooltips(path: Path, plans: Sequence[Plan]) -> None:
    """A <title> (shown on hover) in each tensor's box of the SVG: its name, bytes, offset
    and the operators where it is live."""
    import html
    import re

    # The boxes are in the SVG in drawing order: panel by panel, rectangles() order.
    owners = iter([pl for pl in plans for _ in rectangles(pl)])

    def title(m: re.Match[str]) -> str:
        p = next(owners).placements.get(int(m.group(1)))
        if p is None:
            return m.group(0)
        text = (
            f"tensor {p.tensor} '{p.name}': {p.nbytes:,} bytes at pool offset {p.offset:,}, "
            f"live at operators {p.first}-{p.last}"
        )
        return f"{m.group(0)}\n   <title>{html.escape(text, quote=False)}</title>"

    svg = path.read_text()
    path.write_text(re.sub(r'<g id="tensor(\d+)_\d+">', title, svg))


def pool_table(plan: Plan, op_names: list[str], graph: Graph | None = None) -> str:
    """Plain-text table, one row per op: live tensors, live bytes, and pool span used.

    Live bytes is the sum of the sizes of the tensors live at the op. The span is the
    shortest stretch of the ring that holds every live byte (pool size minus the
    largest free gap, going round the end of the pool); with overlaps the span can be
    smaller than the live bytes. When graph outputs outlive the last op, a final row
    "(outputs)" shows what stays live after it.
    """
    n_ops = len(graph.operators) if graph is not None else len(op_names)
    n_rows = max(n_ops, *(p.last + 1 for p in plan.placements.values()), 0)

    def name_of(k: int) -> str:
        if k < len(op_names):
            return op_names[k]
        if graph is not None and k < len(graph.operators):
            return graph.operators[k].opcode
        return "(outputs)" if k >= n_ops else "?"

    header = ("op", "name", "live", "live bytes", "span bytes")
    rows: list[tuple[str, ...]] = []
    for k in range(n_rows):
        live = plan.live_at(k)
        live_bytes = sum(p.nbytes for p in live)
        rows.append(
            (
                str(k),
                _shorten(name_of(k), 32),
                str(len(live)),
                f"{live_bytes:,}",
                f"{_ring_span(live, plan.pool_bytes):,}",
            )
        )
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]

    def fmt(cells: Sequence[str]) -> str:
        parts = [
            c.ljust(w) if i == 1 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    lines = [
        f"{plan.method} plan: pool {plan.pool_bytes:,} bytes, segment {plan.segment_bytes} bytes",
        fmt(header),
        fmt(["-" * w for w in widths]),
        *(fmt(r) for r in rows),
    ]
    peak_live = max((_live_bytes(plan, k) for k in range(n_rows)), default=0)
    lines.append(f"peak live bytes {peak_live:,}; pool {plan.pool_bytes:,}")
    return "\n".join(lines) + "\n"


# --- helpers -----------------------------------------------------------------------------


def _ordered(plan: Plan) -> list[Placement]:
    areas = [*plan.placements.values(), *plan.workspaces()]
    return sorted(areas, key=lambda p: (p.first, p.last, p.tensor))


def _live_bytes(plan: Plan, k: int) -> int:
    return sum(p.nbytes for p in plan.live_at(k))


def _ring_span(live: list[Placement], pool_bytes: int) -> int:
    """Shortest ring arc of the pool covering every byte of the live tensors."""
    ranges = sorted(r for p in live if p.nbytes > 0 for r in p.byte_ranges(pool_bytes))
    if not ranges:
        return 0
    merged: list[list[int]] = []
    for lo, hi in ranges:
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    top = max(hi for _, hi in merged)
    size = max(pool_bytes, top)
    # Free gaps between used ranges, and the one that goes round the end of the pool.
    gaps = [merged[i + 1][0] - merged[i][1] for i in range(len(merged) - 1)]
    gaps.append(size - merged[-1][1] + merged[0][0])
    return size - max(gaps)


def _columns(plans: Sequence[Plan], op_names: Sequence[str]) -> int:
    """Number of x columns: every op, plus one when graph outputs outlive the last op."""
    last = max((p.last for pl in plans for p in pl.placements.values()), default=-1)
    return max(len(op_names), last + 1, 1)


def _op_label(k: int, op_names: Sequence[str]) -> str:
    if k < len(op_names):
        return f"{k} {_shorten(op_names[k], 22)}"
    return f"{k} (outputs)"


def _shorten(name: str, limit: int) -> str:
    if len(name) <= limit:
        return name
    return name[: max(1, limit - 1)] + "\N{HORIZONTAL ELLIPSIS}"


def _tensor_label(p: Placement) -> str:
    """Tensor index and a short name: the last two path components of the TFLite name
    (a fused block's workspace, which is no tensor, by its name alone)."""
    if p.tensor < 0:
        return p.name
    name = (p.name or f"t{p.tensor}").split(";")[0].removesuffix(":0")
    parts = [s for s in name.split("/") if s]
    short = "/".join(parts[-2:]) if parts else name  # ".../conv1/Relu6" -> "conv1/Relu6"
    return f"{p.tensor}: {short}"


def _colour_map(plans: Sequence[Plan]) -> dict[int, tuple[float, float, float]]:
    """A colour per tensor index, shared by all panels; strong colours first."""
    from matplotlib import colormaps

    tab20 = colormaps["tab20"]
    order = [*range(0, 20, 2), *range(1, 20, 2)]
    palette = [tuple(float(c) for c in tab20(i)[:3]) for i in order]
    colours: dict[int, tuple[float, float, float]] = {}
    for pl in plans:
        for p in _ordered(pl):
            if p.tensor not in colours:
                c = palette[len(colours) % len(palette)]
                colours[p.tensor] = (c[0], c[1], c[2])
    return colours


def _nice_step(span: float, target: int = 8) -> float:
    """A tick step in bytes: 1, 2 or 5 times a power of ten, of KB, about span/target."""
    kb = max(span / 1024 / target, 1e-3)
    exp = math.floor(math.log10(kb))
    for m in (1, 2, 2.5, 5, 10):
        if m * 10**exp >= kb:
            return float(m * 10**exp * 1024)
    return float(10 ** (exp + 1) * 1024)


def _fmt_kb(nbytes: float) -> str:
    kb = nbytes / 1024
    return f"{kb:.0f} KB" if kb >= 100 or kb == int(kb) else f"{kb:.3g} KB"


def _panel_title(pl: Plan, reference: Plan | None) -> str:
    text = f"{pl.method} plan: pool {_fmt_kb(pl.pool_bytes)} ({pl.pool_bytes:,} B)"
    if reference is not None and pl.pool_bytes > 0:
        saved = pl.pool_bytes - reference.pool_bytes
        verb = "saves" if saved >= 0 else "needs"
        share = 100 * abs(saved) / pl.pool_bytes
        text += f"\n{reference.method} {verb} {_fmt_kb(abs(saved))} ({share:.0f}%)"
        text += "" if saved >= 0 else " more"
    elif reference is None and pl.method == "ring" and pl.segment_bytes:
        text += f"\nsegment {pl.segment_bytes} B"
    return text


def _draw_panel(
    ax: Axes,
    plan: Plan,
    op_names: Sequence[str],
    n_cols: int,
    named: bool,
    colours: dict[int, tuple[float, float, float]],
    y_top: int,
) -> None:
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FuncFormatter, MaxNLocator, MultipleLocator

    lw = 0.8 if n_cols <= 60 else 0.5
    for r in rectangles(plan):
        rgb = colours[r.tensor]
        edge = (rgb[0] * 0.6, rgb[1] * 0.6, rgb[2] * 0.6)
        patch = Rectangle(
            (r.x0, r.y0),
            r.x1 - r.x0,
            r.y1 - r.y0,
            facecolor=(*rgb, _FACE_ALPHA),
            edgecolor=edge,
            linewidth=lw,
        )
        patch.set_gid(f"tensor{r.tensor}_{int(r.y0)}")
        ax.add_patch(patch)

    ax.set_xlim(-0.5, n_cols - 0.5)
    ax.set_ylim(0, y_top * 1.06)
    ax.axhline(plan.pool_bytes, color="#c0392b", linewidth=1.4, linestyle="--", zorder=5)
    ax.text(
        n_cols - 0.5,
        plan.pool_bytes,
        f"pool {_fmt_kb(plan.pool_bytes)} ",
        color="#c0392b",
        ha="right",
        va="bottom",
        fontsize=8,
        zorder=6,
    )
    ax.axhspan(plan.pool_bytes, y_top * 1.06, color="0.93", zorder=0)

    step = _nice_step(y_top * 1.06)
    ax.yaxis.set_major_locator(MultipleLocator(step))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _fmt_kb(v)))
    ax.grid(axis="y", color="0.85", linewidth=0.5, zorder=0)
    ax.set_axisbelow(True)

    if named:
        ax.set_xticks(range(n_cols))
        ax.set_xticklabels(
            [_op_label(k, op_names) for k in range(n_cols)],
            rotation=90,
            fontsize=7 if n_cols <= 30 else 6,
        )
        # Column boundaries help read which op a rectangle starts and ends at.
        for k in range(n_cols - 1):
            ax.axvline(k + 0.5, color="0.9", linewidth=0.5, zorder=0)
        ax.set_xlabel("operator")
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=12, integer=True))
        ax.set_xlabel("operator index")
    ax.tick_params(axis="x", length=2)


def _label_rectangles(fig: Figure, ax: Axes, plan: Plan) -> set[int]:
    """Write the tensor name in each rectangle big enough on screen to hold it (in drawing
    order, skipping a label that would cross one already written); returns the tensors
    labelled (by name or by index alone)."""
    to_px = ax.transData
    px_per_pt = fig.dpi / 72.0
    fontsize = 7.0
    char_w = 0.6 * fontsize * px_per_pt  # rough average glyph width, pixels
    line_h = 1.3 * fontsize * px_per_pt
    placed: list[tuple[float, float, float, float]] = []
    labelled: set[int] = set()
    by_tensor: dict[int, list[Rect]] = {}
    for r in rectangles(plan):
        by_tensor.setdefault(r.tensor, []).append(r)
    for p in _ordered(plan):
        rects = by_tensor.get(p.tensor)
        if not rects:
            continue
        # Label the larger piece of a wrapped tensor.
        r = max(rects, key=lambda q: q.y1 - q.y0)
        (x0, y0), (x1, y1) = to_px.transform([(r.x0, r.y0), (r.x1, r.y1)])
        w, h = abs(x1 - x0) - 4, abs(y1 - y0) - 2
        name = _tensor_label(p) + (" (wraps)" if len(rects) > 1 else "")
        # Horizontal when the name fits that way or it gives more room, else vertical.
        room_h = int(w / char_w) if h >= line_h else 0
        room_v = int(h / char_w) if w >= line_h else 0
        if room_h >= len(name) or room_h >= room_v:
            rotation, room = 0, room_h
        else:
            rotation, room = 90, room_v
        if room >= len(name):
            text = name
        elif room >= len(str(p.tensor)) + 6:  # the index and a few characters of the name
            text = _shorten(name, room)
        elif room >= len(str(p.tensor)) and p.tensor >= 0:
            text = str(p.tensor)
        else:
            continue
        # Skip a label that would cross one already written (overlapping rectangles).
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        half_len, half_h = len(text) * char_w / 2, line_h / 2
        hw, hh = (half_len, half_h) if rotation == 0 else (half_h, half_len)
        box = (cx - hw, cx + hw, cy - hh, cy + hh)
        if any(_boxes_cross(box, other) for other in placed):
            continue
        placed.append(box)
        label = ax.text(
            (r.x0 + r.x1) / 2,
            (r.y0 + r.y1) / 2,
            text,
            ha="center",
            va="center",
            rotation=rotation,
            fontsize=fontsize,
            color="0.1",
            clip_on=True,
            zorder=4,
        )
        label.set_gid(f"label{p.tensor}")
        labelled.add(p.tensor)
    return labelled


def _boxes_cross(
    a: tuple[float, float, float, float], b: tuple[float, float, float, float]
) -> bool:
    """Whether two (x0, x1, y0, y1) boxes intersect."""
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]

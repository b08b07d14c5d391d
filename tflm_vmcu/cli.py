"""Command line: `tflm-vmcu inspect MODEL`, `tflm-vmcu validate MODEL`."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import ops, progress
from .errors import PlanHint, TflmVmcuError, UnsupportedError
from .firmware import add_firmware_parser
from .json_output import emit, emit_error
from .lifetimes import live_bytes_per_op
from .planner.plan import Plan
from .plugin_blocks import BLOCK_CUSTOM_CODE
from .reader import read_model


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


_BLOCK_OPCODE = f"CUSTOM:{BLOCK_CUSTOM_CODE}"


def _support(opcode: str) -> str:
    if opcode == _BLOCK_OPCODE:
        return "plug-in"
    return "yes" if ops.is_supported(opcode) else "NO"


def _tensor_figures(graph: Any, t: int) -> dict[str, Any]:
    x = graph.tensors[t]
    q = x.quant
    return {
        "name": x.name,
        "shape": list(x.shape),
        "dtype": x.dtype_name,
        "scale": q.scale if q else None,
        "zero_point": q.zero_point if q else None,
    }


def _inspect_figures(model: str, graph: Any, live: list[int]) -> dict[str, Any]:
    ops_list = [
        {
            "index": op.index,
            "opcode": op.opcode,
            "supported": _support(op.opcode),
            "outputs": [_tensor_figures(graph, t) for t in op.outputs],
            "live_bytes": nbytes,
        }
        for op, nbytes in zip(graph.operators, live, strict=False)
    ]
    return {
        "model": model,
        "inputs": [_tensor_figures(graph, t) for t in graph.inputs],
        "outputs": [_tensor_figures(graph, t) for t in graph.outputs],
        "operators": ops_list,
        "tensor_bound_bytes": max(live) if live else 0,
        "unsupported_ops": sorted({o["opcode"] for o in ops_list if o["supported"] == "NO"}),
    }


def cmd_inspect(args: argparse.Namespace) -> int:
    from .compiler import runtime_refusal
    from .reader import load_bytes

    data = load_bytes(args.model)
    refusal = runtime_refusal(data)
    try:
        graph = read_model(data)
    except TflmVmcuError:
        if refusal:  # nothing to list: the runtime's reason is the one to give
            raise UnsupportedError(f"the runtime refuses this model: {refusal}") from None
        raise
    live = live_bytes_per_op(graph)
    rows = [("#", "op", "supported", "output", "inputs", "live bytes")]
    for op, nbytes in zip(graph.operators, live, strict=False):
        acts = [graph.tensors[t] for t in op.inputs if t >= 0 and not graph.tensors[t].is_constant]
        outs = [graph.tensors[t] for t in op.outputs]
        rows.append(
            (
                str(op.index),
                op.opcode,
                _support(op.opcode),
                ", ".join(f"{_shape(t.shape)} {t.dtype_name}" for t in outs),
                ", ".join(_shape(t.shape) for t in acts),
                f"{nbytes:,}",
            )
        )
    if args.json:
        if refusal and not any(op.opcode == _BLOCK_OPCODE for op in graph.operators):
            raise UnsupportedError(f"the runtime refuses this model: {refusal}")
        emit("inspect", _inspect_figures(args.model, graph, live))
        return 0
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"model: {args.model}")
    print(
        f"operators: {len(graph.operators)}, tensors: {len(graph.tensors)} "
        f"({len(graph.activation_tensors())} activations), subgraphs: {graph.num_subgraphs}"
    )
    for kind, idxs in (("input", graph.inputs), ("output", graph.outputs)):
        for i in idxs:
            t = graph.tensors[i]
            q = f" scale={t.quant.scale:.6g} zero_point={t.quant.zero_point}" if t.quant else ""
            print(f"{kind}: '{t.name}' {_shape(t.shape)} {t.dtype_name}{q}")
    blocks = sum(op.opcode == _BLOCK_OPCODE for op in graph.operators)
    if blocks:
        print(
            f"compiled for TFLM + the tflm-vmcu plug-in: {blocks} fused blocks are custom "
            f"operator {BLOCK_CUSTOM_CODE}, which the plug-in registers "
            "(TflmPlugin::AddKernels); stock TFLM and the tflm-vmcu runtime refuse the model"
        )
    print()
    for r in rows:
        print(
            "  ".join(
                c.rjust(w) if i in (0, 5) else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    print()
    peak = max(live) if live else 0
    print(f"peak live activation bytes (tensor-level lower bound): {peak:,}")
    unsupported = sorted({op.opcode for op in graph.operators if _support(op.opcode) == "NO"})
    if unsupported:
        print(f"unsupported ops: {', '.join(unsupported)}")
    if refusal and not blocks:  # listed above, but the runtime will not run it
        raise UnsupportedError(f"the runtime refuses this model: {refusal}")
    return 0


def _say(args: argparse.Namespace) -> Callable[..., None]:
    """print, or nothing under --json (the figures go into the one JSON object)."""
    return (lambda *_a, **_k: None) if getattr(args, "json", False) else print


def _model_for_compile(args: argparse.Namespace, figures: dict[str, Any]) -> bytes:
    """The model to plan: with --io int8, without its float input and output edges."""
    from .int8_io import int8_io
    from .reader import load_bytes

    say = _say(args)
    data = load_bytes(args.model)
    if args.io != "int8":
        return data
    data, edges = int8_io(data)
    figures["int8_edges"] = [vars(e) for e in edges]
    if not edges:
        say("--io int8: no float input QUANTIZE or output DEQUANTIZE to remove")
    for e in edges:
        say(
            f"--io int8: {e.kind} {e.position} '{e.name}' is int8, real = {e.scale:.9g} * "
            f"(q - {e.zero_point}) ({e.removed_op} removed, {e.float_bytes:,} float bytes gone)"
        )
    return data


def cmd_compile(args: argparse.Namespace) -> int:
    if args.kernels is not None and args.target != "tflm":
        raise TflmVmcuError(
            "--kernels applies to --target tflm (the TFLM kernel library an offline plan "
            "must be safe for); this target runs "
            + ("the plug-in's kernels" if args.target == "tflm-plugin" else "its own kernels")
        )
    figures: dict[str, Any] = {"model": args.model, "output": args.output, "target": args.target}
    data = _model_for_compile(args, figures)
    if args.target == "tflm":
        _compile_tflm(args, data, figures)
    elif args.target == "tflm-plugin":
        _compile_plugin(args, data, figures)
    else:
        _compile_runtime(args, data, figures)
    if args.json:
        emit("compile", figures)
    return 0


def _compile_runtime(args: argparse.Namespace, data: bytes, figures: dict[str, Any]) -> None:
    from .compiler import compile_bytes

    say = _say(args)
    result = compile_bytes(data, args.fusion)
    Path(args.output).write_bytes(result.model)
    plan = result.plan
    figures.update(
        pool_bytes=plan.pool_bytes,
        segment_bytes=plan.segment_bytes,
        plan_bytes=result.plan_bytes,
        tensor_bound_bytes=result.peak_live_bytes,
        segment_bound_bytes=result.segment_bound_bytes,
        planning_seconds=plan.notes["planning_seconds"],
        fusion=_fusion_figures(plan, args.fusion),
    )
    say(f"model: {args.model}")
    say(
        f"plan: {plan.method} plan, pool {plan.pool_bytes:,} bytes, segment "
        f"{plan.segment_bytes} bytes, planned in {plan.notes['planning_seconds']:.2f} s"
    )
    say(f"plan stored in the model: {result.plan_bytes:,} bytes of flash")
    say(f"tensor-level lower bound (peak live bytes): {result.peak_live_bytes:,}")
    say(f"segment-level lower bound: {result.segment_bound_bytes:,}")
    _print_fusion(say, plan, args.fusion)
    say(f"wrote {args.output}")
    if args.report:
        reported = args.output if args.io == "int8" else args.model  # the graph planned
        if args.json:  # the files only: the one JSON object is the compile's
            from .report import build_report, write_report

            paths, _ = write_report(build_report(reported), read_model(reported), Path(args.report))
            figures["report_files"] = [str(p) for p in paths]
        else:
            cmd_report(argparse.Namespace(model=reported, out=args.report, json=False))


def _fusion_figures(plan: Plan, fusion: str) -> dict[str, Any]:
    return {
        "mode": fusion,
        "candidates": plan.notes.get("fusion_candidates", 0),
        "bound_bytes": plan.notes.get("fusion_bound_bytes"),
        "fused": plan.notes.get("fused_blocks", []),
    }


def _print_fusion(
    say: Callable[..., None], plan: Plan, fusion: str, as_custom_ops: bool = False
) -> None:
    fused: list[dict[str, Any]] = plan.notes.get("fused_blocks", [])  # type: ignore[assignment]
    candidates = plan.notes.get("fusion_candidates", 0)
    line = f"inverted-bottleneck blocks: {candidates} candidates, {len(fused)} fused"
    bound = plan.notes.get("fusion_bound_bytes")
    if isinstance(bound, int) and candidates:
        over = plan.pool_bytes - -(-bound // plan.segment_bytes) * plan.segment_bytes
        reached = "the plan reaches it" if over <= 0 else f"the plan needs {over:,} more"
        line += f": the choice with the least segment-level bound, {bound:,} bytes ({reached})"
    say(f"{line}; --fusion {fusion}")
    if as_custom_ops and fused:
        say(
            f"  each fused block is one custom operator {BLOCK_CUSTOM_CODE} (op numbers below "
            "are the original model's)"
        )
    for b in fused:
        first, last = b["ops"]
        say(
            f"  ops {first}-{last} ({b['pattern']}, {b['mode']} mode): saves "
            f"{b['saved_bytes']:,} bytes of the segment-level bound "
            f"(workspace {b['workspace_bytes']:,})"
        )


def _compile_plugin(args: argparse.Namespace, data: bytes, figures: dict[str, Any]) -> None:
    from .plugin_target import compile_for_plugin, op_counts

    say = _say(args)
    model, plan = compile_for_plugin(data, args.fusion)
    Path(args.output).write_bytes(model)
    graph = read_model(model)
    counts = op_counts(graph)
    figures.update(
        pool_bytes=plan.pool_bytes,
        segment_bytes=plan.segment_bytes,
        op_counts=counts,
        fusion=_fusion_figures(plan, args.fusion),
    )
    say(f"model: {args.model}")
    say(
        f"plan for TFLM + the tflm-vmcu plug-in: ring of {plan.pool_bytes:,} bytes, offsets "
        f"aligned to {plan.segment_bytes} bytes"
    )
    say(
        f"operators: {counts['ring']} on ring kernels, {counts['tflm']} on TFLM kernels "
        "(their tensors flat, never overlapping), "
        f"{counts['fused_blocks']} fused blocks"
    )
    if counts["tflm_fallback"]:
        say(
            f"  {counts['tflm_fallback']} of the TFLM-kernel operators are of builtins the "
            "plug-in registers: register its kernels with TFLM's as fallback, "
            "plugin.AddKernels<tflm_vmcu::Fallback::kTflmKernels>(resolver)"
        )
    _print_fusion(say, plan, args.fusion, as_custom_ops=True)
    say(f"wrote {args.output}")


def _compile_tflm(args: argparse.Namespace, data: bytes, figures: dict[str, Any]) -> None:
    from .tflm_target import compile_for_tflm

    say = _say(args)
    kernels = args.kernels or "reference"
    result = compile_for_tflm(data, kernels, args.unsafe_shift)
    Path(args.output).write_bytes(result.model)
    figures.update(
        kernels=kernels,
        head_bytes=result.plan.pool_bytes,
        tflm_head_bytes=result.greedy_head_bytes,
        segment_bytes=result.plan.segment_bytes,
    )
    say(f"model: {args.model}")
    say(
        f"offline plan for stock TFLM ({kernels} kernels): head {result.plan.pool_bytes:,} "
        f"bytes (TFLM's own plan: {result.greedy_head_bytes:,}), offsets aligned to "
        f"{result.plan.segment_bytes} bytes"
    )
    if args.unsafe_shift:
        say(f"WARNING: deliberately unsafe plan (--unsafe-shift {args.unsafe_shift}), for tests")
    say(f"wrote {args.output}")


def cmd_export(args: argparse.Namespace) -> int:
    from .export import c_source
    from .reader import load_bytes, read_model

    data = load_bytes(args.model)
    graph = read_model(data)  # one clear error for a bad file before writing anything
    if args.target is None:  # the runtime the model was compiled for
        from .plan_format import PLAN_METADATA

        args.target = "tflm-vmcu" if PLAN_METADATA in graph.metadata else "tflm"
    if args.target == "tflm":
        from .tflm_check import smallest_arena

        arena = smallest_arena(data)
    else:
        from .compiler import unplanned_note
        from .device import memory_block_bytes
        from .interpreter import Interpreter

        interp = Interpreter(data)
        arena = memory_block_bytes(interp.activation_bytes, interp.arm32_state_bytes)
        note = unplanned_note(data)
        if note is not None and not args.json and not getattr(args, "quiet", False):
            print(note)
    name = args.name or Path(args.model).stem.replace("-", "_").replace(".", "_")
    Path(args.output).write_text(c_source(data, name, arena, args.target))
    if args.json:
        emit(
            "export",
            {
                "model": args.model,
                "output": args.output,
                "target": args.target,
                "model_bytes": len(data),
                "arena_bytes": arena,
            },
        )
        return 0
    print(
        f"wrote {args.output}: {len(data):,} bytes of model, arena {arena:,} bytes ({args.target})"
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report, write_report

    report = build_report(args.model)
    if args.json:
        if args.out is not None:  # the files as well, if a folder is named
            write_report(report, read_model(args.model), Path(args.out))
        f = report.figures
        emit(
            "report",
            {
                "model": args.model,
                **f,
                # The same figures under validate's names.
                "ours": {k: f[k] for k in ("pool_bytes", "state_bytes", "total_bytes")},
                "tflm": {
                    "head_bytes": f["tflm_head_bytes"],
                    "tail_bytes": f["tflm_tail_bytes"],
                    "total_bytes": f["tflm_total_bytes"],
                    "smallest_arena_bytes": f["tflm_min_arena_bytes"],
                },
            },
        )
        return 0
    args.out = args.out or "report"
    graph = read_model(args.model)
    paths, shown = write_report(report, graph, Path(args.out))
    print(shown, end="")
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def _validate_plugin(args: argparse.Namespace) -> int:
    from .plugin_validate import validate_plugin

    if args.tflm_source is None:
        raise TflmVmcuError("--runtime tflm-plugin needs --tflm-source DIR (a TFLM source tree)")
    report = validate_plugin(
        args.model,
        Path(args.tflm_source),
        runs=args.runs,
        seed=args.seed,
        check_hazards=args.check_hazards,
    )
    if args.json:
        emit("validate", report.to_json())
    else:
        verdict = (
            "bit-exact" if report.bit_exact else "OUTPUTS DIFFER: " + "; ".join(report.mismatches)
        )
        print(f"model: {report.model}  ({report.runs} seeded runs, seed {report.seed})")
        print(f"TFLM + plug-in against stock TFLM: {verdict}")
        print(
            f"arena: {report.arena_bytes:,} bytes with the plug-in, {report.stock_arena_bytes:,} "
            f"stock ({report.arena_bytes / report.stock_arena_bytes:.3f}x)"
        )
        o = report.ops
        print(
            f"operators: {o['ring']} on ring kernels, {o['tflm']} on TFLM kernels, "
            f"{o['fused_blocks']} fused blocks (custom operator {BLOCK_CUSTOM_CODE}, "
            "registered by the plug-in)"
        )
        if report.hazards is not None:
            first = f": {report.first_hazard}" if report.hazards else ""
            print(f"hazards: {report.hazards}{first}")
    return 0 if report.ok else 2


def _validate_tflm(args: argparse.Namespace) -> int:
    from .plan_format import write_metadata
    from .reader import load_bytes
    from .tflm_check import compare_in_tflm
    from .tflm_target import OFFLINE_METADATA

    planned = load_bytes(args.model)
    if OFFLINE_METADATA not in read_model(planned).metadata:
        print(f"tflm-vmcu: error: {args.model} carries no {OFFLINE_METADATA} plan", file=sys.stderr)
        return 1
    original = write_metadata(planned, OFFLINE_METADATA, None)
    result = compare_in_tflm(original, planned, runs=args.runs, seed=args.seed)
    if args.json:
        emit("validate", {"model": args.model, "runtime": "tflm", **result.to_json()})
    else:
        print(result.message())
    return 0 if result.bit_identical else 2


def cmd_validate(args: argparse.Namespace) -> int:
    if args.tflm:
        if args.check_hazards:
            raise TflmVmcuError(
                "--check-hazards checks this runtime's plan; --tflm runs the offline plan in "
                "stock TFLM, which has no hazard checker (use --runtime tflm-plugin "
                "--check-hazards for a plan inside TFLM)"
            )
        return _validate_tflm(args)
    if args.runtime == "tflm-plugin":
        return _validate_plugin(args)
    from .compiler import unplanned_note, unplanned_saving
    from .reader import load_bytes
    from .validate import validate

    report = validate(args.model, runs=args.runs, seed=args.seed, check_hazards=args.check_hazards)
    data = load_bytes(args.model)
    if args.json:
        figures = report.to_json()
        saving = unplanned_saving(data)
        if saving is not None:
            figures["compile_would_save_bytes"] = saving[0] - saving[1]
        emit("validate", figures)
    else:
        print(f"model: {report.model}  ({report.runs} seeded runs, seed {report.seed})")
        note = unplanned_note(data)
        if note is not None and not args.json and not getattr(args, "quiet", False):
            print(note)
        for o in report.outputs:
            verdict = (
                "bit-exact"
                if o.bit_exact
                else f"DIFFERS in {o.mismatches} elements (max |diff| {o.max_abs_diff:g})"
            )
            print(f"output {o.index} '{o.name}': {verdict}")
        print()
        print(f"{'':14}{'tflm-vmcu':>12}{'TFLM':>12}")
        print(f"{'activations':14}{report.ours['pool_bytes']:>12,}{report.tflm['head_bytes']:>12,}")
        print(f"{'state':14}{report.ours['state_bytes']:>12,}{report.tflm['tail_bytes']:>12,}")
        print(f"{'total':14}{report.ours['total_bytes']:>12,}{report.tflm['total_bytes']:>12,}")
        if args.check_hazards:
            hazards = report.extra["hazards"]
            first = f": {report.extra['first_hazard']}" if hazards else ""
            print(f"hazards: {hazards}{first}")
    return 0 if report.ok else 2


class _UsageError(Exception):
    """A command line argparse refuses."""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line and exit status 1, like every other failure (2 means
    "outputs differ" for validate)."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message} (see {self.prog.split()[0]} --help)")


class _CMakeDir(argparse.Action):
    """--cmake-dir: prints the CMake package folder and exits, as --version does."""

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kwargs: Any) -> None:
        from .sources import cmake_dir

        print(cmake_dir())
        parser.exit()


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive count")
    return value


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="tflm-vmcu",
        description="Segment-level memory management for int8 TFLite Micro models.",
    )
    parser.add_argument("--version", action="version", version=f"tflm-vmcu {__version__}")
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument(
        "-v", "--verbose", action="store_true", help="show each long step, with elapsed time"
    )
    talk.add_argument("-q", "--quiet", action="store_true", help="no progress and no notes")
    parser.add_argument(
        "--cmake-dir",
        action=_CMakeDir,
        nargs=0,
        help="print the folder for find_package(tflm_vmcu): -Dtflm_vmcu_DIR=$(tflm-vmcu "
        "--cmake-dir)",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("inspect", help="ops, tensors and bytes live per op")
    p.add_argument("model")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("validate", help="run ours and TFLM on seeded inputs; compare bit for bit")
    p.add_argument("model")
    p.add_argument(
        "--runs", type=_positive, default=5, help="number of seeded random inputs (default 5)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--check-hazards",
        action="store_true",
        help="run every kernel under the hazard checker (adds 'hazards' to --json)",
    )
    p.add_argument(
        "--tflm",
        action="store_true",
        help="MODEL has an offline plan: run it and the unplanned model in stock TFLM, "
        "compare outputs and the smallest arena each accepts",
    )
    p.add_argument(
        "--runtime",
        choices=["tflm-vmcu", "tflm-plugin"],
        default="tflm-vmcu",
        help="tflm-plugin: run MODEL (compiled with --target tflm-plugin) in TFLM + the "
        "plug-in and without its plan in stock TFLM, both built from --tflm-source",
    )
    p.add_argument("--tflm-source", metavar="DIR", help="a TFLM source tree (for tflm-plugin)")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("compile", help="plan the activation pool and store the plan in the model")
    p.add_argument("model")
    p.add_argument("-o", "--output", required=True, help="the compiled .tflite to write")
    p.add_argument("--report", metavar="DIR", help="also write the report (table, PNG, SVG)")
    p.add_argument(
        "--target",
        choices=["tflm-vmcu", "tflm", "tflm-plugin"],
        default="tflm-vmcu",
        help="tflm-vmcu: ring plan for this runtime; tflm: offline plan for stock TFLM; "
        "tflm-plugin: plan for TFLM with the tflm-vmcu plug-in (cpp/tflm_plugin)",
    )
    p.add_argument(
        "--kernels",
        choices=["reference", "portable"],
        default=None,
        help="with --target tflm: the TFLM kernel library the offline plan must be safe for "
        "(default reference)",
    )
    p.add_argument(
        "--fusion",
        choices=["rows", "window", "off"],
        default="rows",
        help="inverted-bottleneck blocks: rows (fused where that lowers the pool, as fast as "
        "unfused), window (also recompute each output's window where that saves more: "
        "least memory, slower blocks), off",
    )
    p.add_argument(
        "--io",
        choices=["float", "int8"],
        default="float",
        help="int8: remove the QUANTIZE of float model inputs and the DEQUANTIZE of float "
        "model outputs (the caller quantises with the printed scale and zero point)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--unsafe-shift", type=int, default=0, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_compile)
    p = sub.add_parser("export", help="the model as an aligned C array with the arena size")
    p.add_argument("model")
    p.add_argument("-o", "--output", required=True, help="the header to write")
    p.add_argument(
        "--target",
        choices=["tflm", "tflm-vmcu"],
        help="the runtime the arena is sized for (default: tflm-vmcu for a model compiled for "
        "it, else tflm)",
    )
    p.add_argument("--name", help="C identifier of the array (default: from the file name)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("report", help="per-op table, pool picture and totals against TFLM")
    p.add_argument("model")
    p.add_argument(
        "-o", "--out", help="folder for the table and pictures (default: report; with --json: none)"
    )
    p.add_argument("--json", action="store_true", help="print the totals as one JSON object")
    p.set_defaults(func=cmd_report)
    add_firmware_parser(sub)
    p = sub.add_parser("fit", help="does the model fit a board's RAM and flash")
    p.add_argument("model")
    p.add_argument("--ram", required=True, help="the board's RAM for the model, e.g. 64K")
    p.add_argument("--flash", help="the board's flash for the program, e.g. 1M")
    p.add_argument("--cpu", choices=["cortex-m3", "cortex-m4", "cortex-m7"], default="cortex-m4")
    p.add_argument(
        "--measure",
        action="store_true",
        help="run it on the emulated core (needs arm-none-eabi-gcc, CMake, QEMU) instead of "
        "predicting",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_fit)
    return parser


def cmd_fit(args: argparse.Namespace) -> int:
    from .fit import fit, parse_size

    ram = parse_size(args.ram)
    flash = parse_size(args.flash) if args.flash else None
    report = fit(args.model, ram, flash, args.cpu, measure=args.measure)
    if args.json:
        emit("fit", report.to_json())
        return 0 if report.fits else 3
    limit = f"{ram:,} bytes of RAM" + (f" and {flash:,} of flash" if flash else "")
    parts = (
        f"pool {report.pool_bytes:,} + state {report.state_bytes:,} + stack {report.stack_bytes:,}"
    )
    verdict = "fits" if report.fits else "does NOT fit"
    how = "measured on the emulated core" if args.measure else "predicted (--measure: run it)"
    print(f"{args.model} on {args.cpu}: {verdict} in {limit}")
    print(f"  RAM {report.ram_bytes:,} bytes ({parts}), flash {report.flash_bytes:,} bytes, {how}")
    for a in report.alternatives:
        answer = "fits" if a.fits else "does not fit"
        print(
            f"  with {a.options}: RAM {a.ram_bytes:,} bytes (pool {a.pool_bytes:,}), "
            f"flash {a.flash_bytes:,}: {answer}"
        )
    if not report.fits and not any(a.fits for a in report.alternatives):
        print("  no compile option makes it fit: a board with more RAM, or a smaller model")
    return 0 if report.fits else 3


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv  # errors too are JSON on stdout (and one line on stderr)
    command = next((a for a in argv if not a.startswith("-")), None)
    warnings.simplefilter("ignore", PlanHint)  # commands say it as a note line instead
    try:
        args = build_parser().parse_args(argv)
        progress.configure(
            on=not args.quiet
            and not getattr(args, "json", False)
            and (args.verbose or sys.stderr.isatty()),
            verbose=args.verbose,
        )
        return int(args.func(args))
    except _UsageError as exc:
        message = str(exc)
    except TflmVmcuError as exc:
        message = str(exc)
    except BrokenPipeError:  # the reader went away (| head): nothing more to say to it
        sys.stdout = Path(os.devnull).open("w")  # noqa: SIM115 (closed at exit)
        message = "output closed before the command finished"
    except OSError as exc:  # a file or folder named on the command line
        where = f": {exc.filename}" if exc.filename else ""
        message = f"{exc.strerror or exc}{where}"
    except Exception as exc:  # a defect of ours: still one line, and a clear exit status
        message = f"internal error ({type(exc).__name__}: {exc}); please report it with the model"
    message = " ".join(message.split())
    print(f"tflm-vmcu: error: {message}", file=sys.stderr)
    if as_json:
        emit_error(command, message)
    return 1


if __name__ == "__main__":
    sys.exit(main())

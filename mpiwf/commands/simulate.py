"""``mpiwf simulate SPEC``: the real scheduler on a virtual clock and machine."""

from __future__ import annotations

import argparse
import json
import math
import os
from typing import Any

from ..resources import MAX_NODES
from . import refuse_overwrite

#: the most workers simulated (Frontier, 9,408 nodes, is ~600,000 workers): more is a
#: typo, and would fill memory building them
MAX_WORKERS = 4_000_000

def add_machine_args(p: Any, required: bool) -> None:
    """Options naming a virtual machine: ``--layout`` or ``--cores/--gpus`` (the shape of
    a node), and ``--nodes`` (how many of them)."""
    p.add_argument("--layout", default=None,
                   help="summit (42 cores + 6 GPUs per node), summit168 (the paper's count: "
                   "168 hardware threads + 6 GPUs), frontier, perlmutter, polaris, or a "
                   "YAML/JSON layout file" + ("" if required else
                                              " (default: unlimited resources)"))
    p.add_argument("--nodes", type=int, default=None,
                   help="nodes of the layout (default: its own count), or of the node that "
                   "--cores and --gpus describe (default 1)")
    p.add_argument("--cores", type=int, default=None,
                   help="instead of a layout: a node of this many cores (--nodes of them)")
    p.add_argument("--gpus", type=int, default=0, help="GPUs of that node (with --cores)")


def add_input_args(p: Any) -> None:
    """The workflow file and how to read it."""
    p.add_argument("spec", help="workflow spec (YAML/JSON) or WfFormat JSON")
    p.add_argument("--format", default="auto", choices=["auto", "spec", "wfformat"],
                   help="input format (default: detect)")
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="multiply every duration (default 1)")


def machine(args: argparse.Namespace, required: bool) -> tuple[Any, dict[str, Any]]:
    """Workers named by the machine options, and a description for output.

    Raises:
        SpecError: conflicting or invalid options, or none where one is required.
    """
    from ..errors import SpecError
    from ..layouts import Layout, get

    if args.layout is not None and args.cores is not None:
        raise SpecError("--cores", "give either --layout or --cores, not both")
    if args.nodes is not None and not 1 <= args.nodes <= MAX_NODES:
        raise SpecError("--nodes", f"must be from 1 to {MAX_NODES}, got {args.nodes}")
    if args.layout is not None:
        lay = get(args.layout)
        nodes = args.nodes if args.nodes is not None else lay.nodes
        per = len(lay.workers(1))
        if nodes * per > MAX_WORKERS:
            raise SpecError("--nodes", f"{nodes} nodes of {args.layout} are {nodes * per} "
                            f"workers; at most {MAX_WORKERS} are simulated")
        return lay.workers(nodes), {**lay.as_dict(), "nodes": nodes}
    if args.cores is not None:
        if args.cores < 0 or args.gpus < 0 or args.cores + args.gpus < 1:
            raise SpecError("--cores", "needs cores >= 0, gpus >= 0 and at least one of them")
        if (args.cores + args.gpus) * (args.nodes or 1) > MAX_WORKERS:
            raise SpecError("--cores", f"{args.cores} cores and {args.gpus} GPUs on "
                            f"{args.nodes or 1} node(s) are more than {MAX_WORKERS} workers")
        lay = Layout("cores", args.cores, args.gpus, args.nodes or 1)
        return lay.workers(), {**lay.as_dict()}
    if args.nodes is not None:
        raise SpecError("--nodes", "needs --layout or --cores (the shape of a node)")
    if required:
        raise SpecError("--layout", "name a machine: --layout L [--nodes N] or --cores N")
    return None, {"name": "unlimited"}


def load_workflow(args: argparse.Namespace) -> tuple[Any, dict[str, Any] | None]:
    """The workflow (durations scaled) and, for WfFormat input, what it recorded.

    Raises:
        SpecError: unreadable or invalid input.
    """
    from ..errors import SpecError
    from ..spec import is_wfformat, load, read_document

    ts = args.time_scale
    if not (ts > 0 and math.isfinite(ts)):
        raise SpecError("--time-scale", f"must be a finite number > 0, got {ts}")
    if not os.path.exists(args.spec):
        raise SpecError(args.spec, "no such file")
    wf = load(args.spec, fmt=args.format)
    if ts != 1.0:
        wf.scaled(ts)
    info = None
    if args.format == "wfformat" or (args.format == "auto" and args.spec.endswith(".json")):
        doc = read_document(args.spec)
        if is_wfformat(doc):
            from ..wfformat import instance_info

            info = instance_info(doc)
            if info["recorded_makespan"] is not None:
                info["recorded_makespan"] *= ts
    return wf, info


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("simulate", help="simulate a workflow on a virtual machine",
                       description="Drive the real scheduler on a virtual clock over a "
                       "machine layout; writes the same HDF5 trace as a real run (marked "
                       "simulated), so 'mpiwf analyze' reads it. Exit 2 on bad input.")
    add_input_args(p)
    add_machine_args(p, required=True)
    p.add_argument("--mode", default="async", help="async (default), sequential or doa=K")
    p.add_argument("--order", default="critical_path", choices=["critical_path", "fifo"],
                   help="order of ready work (default: critical_path)")
    p.add_argument("--seed", type=int, default=0, help="seed of duration distributions")
    p.add_argument("--trace", default="", help="HDF5 trace to write (default: none)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the exit status."""
    from ..config import parse_mode
    from ..errors import SpecError
    from ..resources import capacity
    from ..simulate import simulate_to_trace

    parse_mode(args.mode)
    wf, info = load_workflow(args)
    workers, lay = machine(args, required=True)
    wf.validate(capacity(workers), check_kernels=False)
    if args.trace:
        d = os.path.dirname(os.path.abspath(args.trace))
        if not os.path.isdir(d):
            raise SpecError("--trace", f"directory {d!r} does not exist")
        if getattr(args, "spec", None):
            refuse_overwrite("--trace", args.trace, args.spec, "the spec itself")
    out = simulate_to_trace(wf, workers, args.mode, trace_path=args.trace or None,
                            seed=args.seed, order=args.order,
                            attrs={"layout": lay, "time_scale": args.time_scale,
                                   "command": "mpiwf simulate " + args.spec})
    out["layout"] = lay
    out["workflow"] = wf.name
    if info is not None:
        out["recorded_makespan"] = info["recorded_makespan"]
    if args.json:
        print(json.dumps(out))
        return 0
    u = out["utilization"]
    print(f"mpiwf simulate: {wf.name} on {lay['name']} ({out['resources']['cores']} cores, "
          f"{out['resources']['gpus']} GPUs), mode {args.mode}, order {args.order}: makespan "
          f"{out['makespan']:.6g} s, {out['tasks']} tasks, utilization cpu "
          f"{100 * u['cpu']:.1f} % gpu {100 * u['gpu']:.1f} %"
          + (f"; recorded makespan {info['recorded_makespan']:.6g} s"
             if info and info["recorded_makespan"] is not None else "")
          + (f"; trace {args.trace}" if args.trace else ""))
    return 0

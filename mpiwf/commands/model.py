"""``mpiwf model SPEC``: T_seq, T_async, I, structural DOA and the critical path."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .simulate import add_input_args, add_machine_args, load_workflow, machine


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("model", help="predict T_seq, T_async and I of a workflow",
                       description="The asynchronicity model: effective set durations with "
                       "waves, T_seq (a barrier per stage), T_async (critical path, and a "
                       "resource-aware list-scheduling bound on a machine), "
                       "I = 1 - T_async/T_seq, structural DOA, the critical path.")
    add_input_args(p)
    add_machine_args(p, required=False)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the exit status."""
    from ..model import model
    from ..resources import capacity

    wf, info = load_workflow(args)
    workers, lay = machine(args, required=False)
    if workers is not None:
        wf.validate(capacity(workers), check_kernels=False)
    m = model(wf, workers)
    out: dict[str, Any] = {"workflow": wf.name, "layout": lay, **m.as_dict()}
    if info is not None:
        out["recorded_makespan"] = info["recorded_makespan"]
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"workflow      {wf.name}  on {lay['name']}"
          + (f" x {lay['nodes']} nodes" if "nodes" in lay else ""))
    print(f"T_seq         {m.t_seq:.6g} s  ({len(m.stages)} stages; formula "
          f"{m.t_seq_stages:.6g} s" + (f", list scheduling {m.t_seq_list:.6g} s"
                                       if m.t_seq_list is not None else "") + ")")
    print(f"T_async       {m.t_async:.6g} s  (critical path {m.t_async_path:.6g} s"
          + (f", list scheduling {m.t_async_list:.6g} s" if m.t_async_list is not None
             else "") + (", resource-bound" if m.contended else "") + ")")
    print(f"improvement   I = {100 * m.improvement:.1f} %  speed-up {m.speedup:.3f}")
    print(f"DOA           {m.doa} set(s) delayed by barriers without need"
          + (f": {', '.join(m.doa_sets[:10])}" + (" ..." if m.doa > 10 else "")
             if m.doa else ""))
    cp = m.critical_path
    print(f"critical path {' -> '.join(cp[:12])}" + (f" ... ({len(cp)} sets)"
                                                      if len(cp) > 12 else ""))
    if info is not None and info["recorded_makespan"] is not None:
        print(f"recorded      makespan {info['recorded_makespan']:.6g} s (WfFormat execution)")
    return 0

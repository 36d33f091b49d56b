"""``mpiwf analyze TRACE...``: headline metrics of runs, and comparisons."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("analyze", help="metrics of one or more traces",
                       description="Makespan, tasks, throughput, CPU/GPU utilization and "
                       "per-set statistics, concurrency, scheduling overheads, realised vs model "
                       "critical path and failures of a trace. With two or more traces, the later "
                       "ones are compared with the first: I = 1 - T_b/T_a.")
    p.add_argument("traces", nargs="+", help="HDF5 trace file(s)")
    p.add_argument("--run", type=int, default=-1, help="run group (default: the last)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the exit status."""
    from ..analysis import analyze_paths, compare, format_comparison, format_summary

    sums = analyze_paths(args.traces, args.run)
    comps = [compare(sums[0], s) for s in sums[1:]]
    if args.json:
        if len(sums) == 1:
            out: dict[str, Any] = dict(sums[0])
        else:
            out = {"runs": sums, "comparisons": comps, "improvement": comps[0]["improvement"],
                   "speedup": comps[0]["speedup"]}
        print(json.dumps(_finite(out), default=float, allow_nan=False))
        return 0
    for i, s in enumerate(sums):
        if i:
            print()
        print(format_summary(s))
    if comps:
        print("\n" + format_comparison(sums))
    for c in comps:
        if c["note"]:
            print(f"\n{c['other']} vs {c['baseline']}: no improvement I or speed-up: "
                  f"{c['note']}")
            continue
        print(f"\n{c['other']} vs {c['baseline']}: improvement I = {100 * c['improvement']:.1f} %"
              f", speed-up {c['speedup']:.3f}, utilization change cpu "
              f"{100 * c['utilization_change']['cpu']:+.1f} pt, gpu "
              f"{100 * c['utilization_change']['gpu']:+.1f} pt")
    return 0


def _finite(x: Any) -> Any:
    """NaN and infinities (e.g. the mean of an empty set) become null: strict JSON."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x

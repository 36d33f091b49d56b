"""``mpiwf plot TRACE... --kind gantt|utilization|concurrency -o out.png``."""

from __future__ import annotations

import argparse
import math
from typing import Any


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("plot", help="plot one or more traces as PNG",
                       description="Gantt chart by worker coloured by task set, CPU/GPU "
                       "utilization over time, or concurrency (running, ready-but-waiting) "
                       "over time. Several traces are stacked on one time axis; the first "
                       "is the baseline of the improvement in the title.")
    p.add_argument("traces", nargs="+", help="HDF5 trace file(s)")
    p.add_argument("--kind", default="utilization",
                   help="gantt, utilization or concurrency (default utilization)")
    p.add_argument("-o", "--output", default=None,
                   help="output file (default: KIND.png); the extension picks the format")
    p.add_argument("--run", type=int, default=-1, help="run group (default: the last)")
    p.add_argument("--width", type=float, default=11.0,
                   help="figure width in inches, 1 to 1000 (default 11)")
    p.add_argument("--dpi", type=int, default=120,
                   help="resolution in dots per inch, 10 to 1200 (default 120)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the exit status."""
    from ..errors import MpiwfError
    from ..plot import KINDS, plot
    from ..trace import load

    if args.kind not in KINDS:
        raise MpiwfError(f"--kind: unknown plot kind {args.kind!r} (one of {', '.join(KINDS)})")
    if not (math.isfinite(args.width) and 1 <= args.width <= 1000):
        raise MpiwfError(f"--width: {args.width:g} is not a width in inches in 1..1000")
    if not 10 <= args.dpi <= 1200:
        raise MpiwfError(f"--dpi: {args.dpi} is not a resolution in 10..1200")
    traces = [load(p, args.run) for p in args.traces]
    out = plot(traces, args.kind, args.output or f"{args.kind}.png", width=args.width,
               dpi=args.dpi)
    print(out)
    return 0

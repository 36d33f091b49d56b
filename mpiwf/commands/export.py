"""``mpiwf export TRACE --format csv|chrome -o FILE``: the task table for other tools."""

from __future__ import annotations

import argparse
from typing import Any

from . import refuse_overwrite


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("export", help="export a trace as CSV or Chrome trace-event JSON",
                       description="CSV: one row per task attempt with decoded names. "
                       "chrome: trace-event JSON for Perfetto (ui.perfetto.dev) or "
                       "chrome://tracing, one track per worker.")
    p.add_argument("trace", help="HDF5 trace file")
    p.add_argument("--format", choices=("csv", "chrome"), default="csv",
                   help="csv (default) or chrome")
    p.add_argument("-o", "--output", default=None,
                   help="output file (default: tasks.csv or trace.json)")
    p.add_argument("--run", type=int, default=-1, help="run group (default: the last)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the exit status."""
    from ..analysis import check
    from ..export import write_chrome, write_csv
    from ..trace import load

    tr = load(args.trace, args.run)
    check(tr)
    out = args.output or ("tasks.csv" if args.format == "csv" else "trace.json")
    refuse_overwrite("-o", out, args.trace, "the trace being exported")
    n = write_csv(tr, out) if args.format == "csv" else write_chrome(tr, out)
    print(f"{out}: {n} task rows{' (partial run)' if tr.partial else ''}")
    return 0

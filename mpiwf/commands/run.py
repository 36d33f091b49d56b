"""``mpiwf run SPEC``: run a workflow under mpiexec/srun/jsrun (or on one rank)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("run", help="run a workflow (launch under mpiexec/srun/jsrun)",
                       description="Run a workflow: rank 0 schedules, ranks >= 1 run tasks. "
                       "A 1-rank run executes the tasks on rank 0. Exit status: 0 all tasks "
                       "done, 1 some failed/skipped/cancelled, 2 bad input.")
    p.add_argument("spec", help="workflow spec (YAML/JSON) or WfFormat JSON")
    p.add_argument("--mode", default=None, help="async (default), sequential or doa=K")
    p.add_argument("--trace", default="mpiwf-trace.h5",
                   help="HDF5 trace to write (default: %(default)s; '' for none)")
    p.add_argument("--format", default="auto", choices=["auto", "spec", "wfformat"],
                   help="input format (default: detect)")
    p.add_argument("--time-scale", type=float, default=None,
                   help="multiply every duration (sleep/spin seconds and estimates)")
    p.add_argument("--rundir", default=None, help="run directory (default: mpiwf-run)")
    p.add_argument("--prefetch", type=int, default=None,
                   help="short tasks a worker may hold beyond the running one (default 4)")
    p.add_argument("--short-task", type=float, default=None,
                   help="estimate (s) up to which a task may be prefetched (default 0.05)")
    p.add_argument("--progress", type=float, default=None,
                   help="seconds between progress lines (0: none; default 10)")
    p.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default), ERROR")
    p.add_argument("--json", action="store_true", help="print a JSON summary on rank 0")
    p.add_argument("--validate", action="store_true",
                   help="check scheduler invariants after every event (slow)")
    from ..binding import add_arguments

    add_arguments(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the exit status."""
    from ..cli import setup_logging
    from ..config import from_env
    from ..errors import SpecError
    from ..spec import load

    cfg = from_env(mode=args.mode, rundir=args.rundir, prefetch=args.prefetch,
                   short_task=args.short_task, progress_interval=args.progress,
                   log_level=args.log_level, validate=args.validate or None,
                   time_scale=args.time_scale)
    setup_logging(cfg.log_level)
    if not os.path.exists(args.spec):
        raise SpecError(args.spec, "no such file")
    trace_path = args.trace or None
    if trace_path:
        d = os.path.dirname(os.path.abspath(trace_path))
        if not os.path.isdir(d):
            raise SpecError("--trace", f"directory {d!r} does not exist")

    def build() -> Any:
        wf = load(args.spec, fmt=args.format)
        if cfg.time_scale != 1.0:
            wf.scaled(cfg.time_scale)
        return wf

    from ..binding import from_args
    from ..runner import run

    summary = run(build, cfg, trace_path=trace_path, bind=from_args(args))
    if summary is None:
        return 0
    if args.json:
        print(json.dumps({"makespan": summary.makespan, "tasks": summary.tasks,
                          "done": summary.done, "failed": summary.failed,
                          "skipped": summary.skipped, "cancelled": summary.cancelled,
                          "trace": trace_path, "mode": cfg.mode}))
    else:
        print(f"mpiwf run: {summary.done}/{summary.tasks} tasks done, {summary.failed} failed, "
              f"{summary.skipped} skipped, {summary.cancelled} cancelled in "
              f"{summary.wall:.3f} s (mode {cfg.mode})" + (f"; trace {trace_path}"
                                                          if trace_path else ""))
    sys.stdout.flush()
    return 0 if summary.ok else 1

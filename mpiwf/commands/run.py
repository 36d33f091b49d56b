"""``mpiwf run SPEC``: run a workflow under mpiexec/srun/jsrun (or on one rank)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from . import refuse_overwrite


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("run", help="run a workflow (launch under mpiexec/srun/jsrun)",
                       description="Run a workflow: rank 0 schedules, ranks >= 1 run tasks. "
                       "A 1-rank run executes the tasks on rank 0. Exit status: 0 all tasks "
                       "done, 1 some failed/skipped/cancelled, 2 bad input, 3 stopped early "
                       "(signal, --walltime), 4 job aborted after a worker was lost or a "
                       "forced stop (the trace is closed first).")
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
    p.add_argument("--fail-fast", action="store_true",
                   help="stop at the first task that fails for good (after its retries)")
    p.add_argument("--resume", default=None, metavar="OLD.h5",
                   help="skip the tasks recorded done in this trace; with --trace the same "
                   "file, the new run is appended to it as a new run group")
    p.add_argument("--walltime", type=float, default=None, metavar="S",
                   help="stop gracefully S seconds after rank 0 starts the run (after "
                   "start-up): dispatching stops --walltime-grace seconds before, running "
                   "tasks are then drained until S")
    p.add_argument("--walltime-grace", type=float, default=None, metavar="G",
                   help="seconds before --walltime to stop dispatching "
                   "(default: 10%% of it, at most 60)")
    p.add_argument("--drain-timeout", type=float, default=30.0, metavar="S",
                   help="after a stop (signal, --walltime, --fail-fast) wait at most S seconds "
                   "for running tasks, then record them cancelled and end the job "
                   "(default %(default)s)")
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
        refuse_overwrite("--trace", trace_path, args.spec, "the spec itself")

    def build() -> Any:
        wf = load(args.spec, fmt=args.format)
        if cfg.time_scale != 1.0:
            wf.scaled(cfg.time_scale)
        if args.resume is not None:
            _check_resume(args.resume, wf)
        return wf

    if args.resume is not None:
        from ..trace import done_tasks

        if not os.path.isfile(args.resume):
            raise SpecError("--resume", f"{args.resume!r}: no such trace")
        done_tasks(args.resume)  # a bad trace is bad input: one line, exit 2
    grace = _walltime(args)
    if not args.drain_timeout >= 0:
        raise SpecError("--drain-timeout", f"must be >= 0 seconds, got {args.drain_timeout}")

    def on_master(master: Any) -> None:
        master.fail_fast = args.fail_fast
        master.drain_timeout = args.drain_timeout
        if args.walltime is not None:
            _start_walltime(master, args.walltime, grace)

    from ..binding import from_args
    from ..runner import run

    summary = run(build, cfg, trace_path=trace_path, resume=args.resume, on_master=on_master,
                  bind=from_args(args))
    if summary is None:
        return 0
    if args.json:
        print(json.dumps({"makespan": summary.makespan, "tasks": summary.tasks,
                          "done": summary.done, "failed": summary.failed,
                          "skipped": summary.skipped, "cancelled": summary.cancelled,
                          "trace": trace_path, "mode": cfg.mode,
                          "stop_reason": summary.stop_reason,
                          "failures": [list(f) for f in summary.failures]}))
    else:
        print(f"mpiwf run: {summary.done}/{summary.tasks} tasks done, {summary.failed} failed, "
              f"{summary.skipped} skipped, {summary.cancelled} cancelled in "
              f"{summary.wall:.3f} s (mode {cfg.mode})" + (f"; trace {trace_path}"
                                                          if trace_path else ""))
        _print_failures(summary)
    sys.stdout.flush()
    if summary.lost:
        return 4
    if summary.stop_reason and not summary.stop_reason.startswith("--fail-fast"):
        return 3
    return 0 if summary.ok else 1


def _check_resume(path: str, wf: Any) -> None:
    """Task ids are positions in the workflow: resume only the workflow that was run
    (its name and task count, and every run's sets: the same names and sizes in the
    same order; a run may hold sets added after the spec's), and only from real runs
    (a simulated run's tasks never ran)."""
    from ..errors import SpecError
    from ..trace import runs_info

    mine = [(ts.name, ts.n) for ts in wf.sets]
    for r in runs_info(path):
        name, n = r["workflow"], r["ntasks"]
        if (name is not None and name != wf.name) or (n is not None and int(n) != wf.ntasks):
            raise SpecError("--resume", f"{path!r} was written for workflow {name!r} with {n} "
                            f"tasks; this spec is {wf.name!r} with {wf.ntasks} tasks")
        if r["simulated"]:
            raise SpecError("--resume", f"{path!r} holds a simulated run (run {r['run']}): "
                            "its tasks never ran")
        for i, (got, want) in enumerate(zip(r["sets"], mine)):
            if got != want:
                raise SpecError("--resume", f"{path!r} run {r['run']}: set {i} is "
                                f"{got[0]!r} with {got[1]} tasks; this spec's set {i} is "
                                f"{want[0]!r} with {want[1]} tasks")


def _walltime(args: argparse.Namespace) -> float:
    from ..errors import SpecError

    if args.walltime is None:
        if args.walltime_grace is not None:
            raise SpecError("--walltime-grace", "needs --walltime")
        return 0.0
    if not args.walltime > 0 or args.walltime == float("inf"):
        raise SpecError("--walltime", f"must be a positive number of seconds, got "
                        f"{args.walltime}")
    grace = min(60.0, 0.1 * args.walltime) if args.walltime_grace is None \
        else args.walltime_grace
    if not 0 <= grace < args.walltime:
        raise SpecError("--walltime-grace", f"must be >= 0 and below --walltime, got {grace}")
    return grace


def _start_walltime(master: Any, walltime: float, grace: float) -> None:
    """Two daemon timers on rank 0 (nothing on the hot path): at ``walltime - grace``
    stop dispatching, at ``walltime`` stop waiting for running tasks."""
    import threading

    soft = threading.Timer(walltime - grace, master.request_stop,
                           (f"--walltime {walltime:g} s reached (grace {grace:g} s)",))
    hard = threading.Timer(walltime, master.request_stop,
                           (f"--walltime {walltime:g} s reached",), {"force": True})
    for t in (soft, hard):
        t.daemon = True
        t.start()


def _print_failures(summary: Any) -> None:
    """The failure summary: why the run stopped and the first failed tasks."""
    if summary.stop_reason:
        print(f"mpiwf run: stopped early: {summary.stop_reason}")
    if summary.lost:
        print(f"mpiwf run: worker rank(s) {list(summary.lost)} lost; their tasks were re-run "
              "on the others")
    for name, etype, msg, rank in summary.failures[:10]:
        first = msg.splitlines()[0] if msg else ""
        print(f"mpiwf run: FAILED {name} on rank {rank}: {etype}: {first[:200]}")
    if summary.failed > 10:
        print(f"mpiwf run: ... and {summary.failed - 10} more failed task(s); "
              "see the trace's errors table")
    if summary.skipped:
        print(f"mpiwf run: {summary.skipped} task(s) skipped because a parent failed")

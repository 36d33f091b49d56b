"""Scheduler per-event cost and memory per task from 10^3 to 10^6 tasks (no MPI).

Launch::

    .venv/bin/python benchmarks/sched_scale.py            # 10^3 .. 10^6
    .venv/bin/python benchmarks/sched_scale.py --max 1e5  # quicker

Drives the pure :class:`~mpiwf.scheduler.Scheduler` as the master does (same
prefetch and batch settings, 3 workers by default): ``schedule_runs()``, then each
worker's oldest 64 tasks completed as one results message (``tasks_done``, or
``task_done`` per task where it declines), until the workflow finishes. Shapes:
independent tasks (one set), a layered DAG (sets of 1,000 tasks,
set-to-set dependencies) and a one-to-one chain (``after_each``: a dependency
counter per task). Prints microseconds per task (one dispatch plus one completion
event), the ratio of the largest to the smallest size (target: within 1.5x), and
the bytes per task that the workflow plus scheduler hold (tracemalloc peak).
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import sys
import time
import tracemalloc
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from mpiwf.resources import uniform_workers  # noqa: E402
from mpiwf.scheduler import Scheduler  # noqa: E402
from mpiwf.workflow import Workflow  # noqa: E402


def independent(n: int) -> Workflow:
    """One set of ``n`` null tasks."""
    wf = Workflow("independent")
    wf.add_set("t", n, "noop", duration=0.0)
    return wf


def layered(n: int, size: int = 1000) -> Workflow:
    """Sets of ``size`` null tasks, each set after the previous one (all-to-all)."""
    wf = Workflow("layered")
    k = max(1, n // size)
    for i in range(k):
        wf.add_set(f"s{i}", min(size, n), "noop", duration=0.0,
                   after=[f"s{i - 1}"] if i else [])
    return wf


def one_to_one(n: int, width: int = 10) -> Workflow:
    """``width`` sets of ``n / width`` tasks, each task after its twin in the previous set."""
    wf = Workflow("one-to-one")
    m = max(1, n // width)
    for i in range(width):
        wf.add_set(f"s{i}", m, "noop", duration=0.0, after_each=[f"s{i - 1}"] if i else [])
    return wf


SHAPES: dict[str, Callable[[int], Workflow]] = {
    "independent": independent, "layered": layered, "one-to-one": one_to_one}


def drive(wf: Workflow, workers: int, done_batch: int = 64) -> tuple[float, int]:
    """Run the scheduler to the end as the master does (runs placed with
    ``schedule_runs``; each worker's oldest ``done_batch`` tasks completed as one
    results message: ``tasks_done``, or ``task_done`` one by one where it declines);
    returns (seconds, tasks)."""
    s = Scheduler(wf, uniform_workers(1, workers), prefetch=4, short_task=0.05, batch=256)
    queued: dict[int, collections.deque[int]] = {w: collections.deque() for w in range(workers)}
    t0 = time.perf_counter()
    s.start()
    while not s.finished:
        for lo, hi, gang in s.schedule_runs():
            queued[gang[0]].extend(range(lo, hi))
        for w, q in queued.items():
            if q:
                msg = [q.popleft() for _ in range(min(done_batch, len(q)))]
                if not s.tasks_done(msg, w):
                    for tid in msg:
                        s.task_done(tid)
    return time.perf_counter() - t0, s.ntasks


def bytes_per_task(shape: str, n: int, workers: int) -> float:
    """Peak traced bytes of building and scheduling a workflow, per task."""
    gc.collect()
    tracemalloc.start()
    wf = SHAPES[shape](n)
    s = Scheduler(wf, uniform_workers(1, workers), prefetch=4, short_task=0.05, batch=256)
    s.start()
    inflight = [tid for tid, _g in s.schedule()]
    for tid in inflight:
        s.task_done(tid)
    _cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / n


def main(argv: list[str] | None = None) -> int:
    """Print the per-task cost table, the flatness ratios and memory per task."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max", type=float, default=1e6, help="largest size (default 1e6)")
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--repeat", type=int, default=3, help="runs per size (best is kept)")
    a = p.parse_args(argv)
    sizes = [10 ** k for k in range(3, 7) if 10 ** k <= a.max]
    if not sizes:
        print("sched_scale.py: --max must be at least 1000", file=sys.stderr)
        return 2
    print(f"{'shape':<13}" + "".join(f"{n:>11}" for n in sizes) + "   max/min  (us per task)")
    for shape, build in SHAPES.items():
        costs = []
        for n in sizes:
            best = float("inf")
            for _ in range(a.repeat if n < 10 ** 6 else 1):
                wf = build(n)
                dt, nt = drive(wf, a.workers)
                best = min(best, dt / nt)
            costs.append(best * 1e6)
        ratio = max(costs) / min(costs)
        print(f"{shape:<13}" + "".join(f"{c:>11.2f}" for c in costs) + f"   {ratio:7.2f}",
              flush=True)
    n = min(sizes[-1], 10 ** 5)
    for shape in SHAPES:
        print(f"bytes_per_task[{shape}, {n} tasks]={bytes_per_task(shape, n, a.workers):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Discrete-event simulation: the real :class:`~mpiwf.scheduler.Scheduler` on a
virtual clock and a virtual machine.

No copy of the scheduling logic: the simulator only advances time, feeds
completions to the scheduler, and records what it decided in the same trace format
as a real run (marked ``simulated``). This module never imports mpi4py.
"""

from __future__ import annotations

import copy
import dataclasses
import heapq
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .config import parse_mode
from .errors import RunError
from .resources import WorkerSpec
from .scheduler import DONE, Scheduler
from .workflow import Workflow


@dataclasses.dataclass
class SimResult:
    """What a simulation produced.

    Attributes:
        makespan: first start to last end, virtual seconds.
        tasks: tasks run.
        rows: structured array of task rows (``trace.ROW_DTYPE``).
        events: scheduler events processed.
    """

    makespan: float
    tasks: int
    rows: np.ndarray
    events: int


def task_durations(wf: Workflow, seed: int = 0) -> Callable[[int], float]:
    """Per-task duration function: the set's ``duration``, or a draw from its
    ``duration_dist`` (seeded, so a simulation is reproducible).

    ``duration_dist`` forms: ``{"dist": "normal", "std": s}`` (mean = duration,
    clipped at 0), ``{"dist": "uniform", "low": a, "high": b}``,
    ``{"dist": "exponential"}`` (mean = duration), ``{"dist": "lognormal", "sigma": s}``
    (median = duration).
    """
    per_set: dict[int, np.ndarray | float] = {}

    def draw(sid: int) -> np.ndarray | float:
        ts = wf.sets[sid]
        d = ts.duration_dist
        if not d:
            return ts.duration
        rng = np.random.default_rng([seed, sid])  # per set: independent of event order
        kind = d.get("dist", "normal")
        n = ts.n
        if kind == "normal":
            return np.clip(rng.normal(ts.duration, float(d.get("std", 0.0)), n), 0, None)
        if kind == "uniform":
            return rng.uniform(float(d.get("low", 0.0)), float(d.get("high", ts.duration)), n)
        if kind == "exponential":
            return rng.exponential(ts.duration, n)
        if kind == "lognormal":
            return ts.duration * rng.lognormal(0.0, float(d.get("sigma", 0.1)), n)
        raise RunError(f"sets.{ts.name}.duration_dist: unknown dist {kind!r}")

    last: list[Any] = [0, 0, None]  # [lo, hi, values] of the set looked up last

    def dur(tid: int) -> float:
        lo, hi, v = last
        if not lo <= tid < hi:  # tasks are dispatched in runs of one set: rarely taken
            ts = wf.set_of(tid)
            v = per_set.get(ts.sid)
            if v is None:
                v = per_set[ts.sid] = draw(ts.sid)
            lo = last[0] = ts.offset
            last[1] = ts.offset + ts.n
            last[2] = v
        return v if isinstance(v, float) else float(v[tid - lo])

    return dur


def fifo_view(wf: Workflow) -> Workflow:
    """A shallow view of ``wf`` whose duration estimates are all 0.

    The scheduler orders ready work by critical-path priority computed from the
    estimates; with all of them 0 every set ties and ready work is taken
    first-ready first (FIFO), the order of a middleware without priorities. Set
    ids, task ids and dependencies are those of ``wf``.
    """
    view = copy.copy(wf)
    view.sets = [dataclasses.replace(ts, duration=0.0) for ts in wf.sets]
    view.by_name = {ts.name: ts for ts in view.sets}
    return view


def simulate(wf: Workflow, workers: Sequence[WorkerSpec], mode: str = "async", *,
             seed: int = 0, durations: Callable[[int], float] | None = None,
             trace: Any = None, validate: bool = False,
             on_done: Callable[[int, float], None] | None = None,
             order: str = "critical_path") -> SimResult:
    """Run ``wf`` on virtual ``workers`` and return the virtual makespan.

    Args:
        wf: the workflow.
        workers: the virtual machine.
        mode: ``async``, ``sequential`` or ``doa=K``.
        seed: seed of duration distributions.
        durations: per-task duration function (default :func:`task_durations`).
        trace: an open :class:`~mpiwf.trace.TraceWriter` to record rows in.
        validate: check the scheduler's invariants after every event.
        on_done: called with (task id, virtual time) after each completion; it may
            add sets to the workflow (adaptive workflows).
        order: ``critical_path`` (the scheduler's priority) or ``fifo`` (ready work
            first-ready first, see :func:`fifo_view`; not with ``on_done``).

    Raises:
        RunError: the scheduler stalled (a request the machine cannot hold).
    """
    _, window = parse_mode(mode)
    if order not in ("critical_path", "fifo"):
        raise RunError(f"order: unknown order {order!r} (critical_path or fifo)")
    if order == "fifo" and on_done is not None:
        raise RunError("order fifo cannot be combined with on_done (the view would not see "
                       "added sets)")
    dur = durations or task_durations(wf, seed)
    sched = Scheduler(fifo_view(wf) if order == "fifo" else wf, workers, window=window,
                      prefetch=0, validate=validate)
    ranks = [w.rank for w in workers]
    nodes = [w.node for w in workers]
    heap: list[tuple[float, int, float]] = []  # (end, task, start)
    rows: list[tuple[Any, ...]] = []
    now = 0.0
    sched.now = now
    sched.start()
    events = 0
    created = 0.0
    ready_at = float("nan")  # filled from the scheduler's table at the end (no trace)
    lo = hi = 0  # task-id range of the set looked up last: completions come in runs
    sid = off = cores = gpus = 0
    push, pop = heapq.heappush, heapq.heappop
    while not sched.finished:
        for tid, _gang in sched.schedule():
            push(heap, (now + dur(tid), tid, now))
        if not heap:
            if sched.finished:
                break
            raise RunError("simulation stalled: tasks remain but none can be placed "
                           f"({sched.counts()})")
        now = heap[0][0]
        sched.now = now
        while heap and heap[0][0] == now:
            _, tid, t0 = pop(heap)
            gang = sched.running[tid]
            if not lo <= tid < hi:
                ts = wf.set_of(tid)
                sid, off, cores, gpus = ts.sid, ts.offset, ts.cores, ts.gpus
                lo, hi = off, off + ts.n
            sched.task_done(tid)
            events += 1
            lead = gang[0]
            if trace is not None:
                ready_at = float(sched.ready_at[tid])
            row = (tid, sid, tid - off, 0, DONE, ranks[lead], len(gang), nodes[lead],
                   cores if len(gang) == 1 else sched.held_cores(cores, gang),
                   gpus, created, ready_at, t0, t0, now, now)
            rows.append(row)
            if trace is not None:
                trace.add(row)
            if on_done is not None:
                nsets = len(wf.sets)
                on_done(tid, now)
                if len(wf.sets) > nsets:
                    lo = hi = 0
                    sched.tasks_added()
                    if trace is not None:
                        trace.sets_added()
    from .trace import ROW_DTYPE

    arr = np.array(rows, dtype=ROW_DTYPE) if rows else np.zeros(0, ROW_DTYPE)
    del rows
    if trace is None and len(arr):
        arr["ready"] = sched.ready_at[arr["task"]]
    makespan = float(arr["ended"].max() - arr["started"].min()) if len(arr) else 0.0
    return SimResult(makespan, len(arr), arr, events)


def simulate_to_trace(wf: Workflow, workers: Sequence[WorkerSpec], mode: str = "async", *,
                      trace_path: str | None = None, seed: int = 0,
                      order: str = "critical_path",
                      attrs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Simulate and (optionally) write the same HDF5 trace a real run writes.

    The trace is marked ``simulated`` and carries the mode, order, seed and any
    ``attrs`` (e.g. the layout); ``mpiwf analyze`` reads it like a real one.

    Args:
        wf: the workflow.
        workers: the virtual machine.
        mode: ``async``, ``sequential`` or ``doa=K``.
        trace_path: HDF5 file to write, or ``None``.
        seed: seed of duration distributions.
        order: ``critical_path`` or ``fifo``.
        attrs: extra run attributes.

    Returns:
        ``makespan``, ``tasks``, ``utilization`` (cpu, gpu), ``events``, ``mode``,
        ``order``, ``seed``, ``resources`` and ``trace``.
    """
    from .analysis import utilization

    parse_mode(mode)
    writer = None
    if trace_path:
        from .trace import TraceWriter, versions

        run_attrs: dict[str, Any] = {"mode": mode, "simulated": True, "order": order,
                                     "seed": seed, "versions": versions(),
                                     "ranks": len(workers) + 1}
        run_attrs.update(attrs or {})
        writer = TraceWriter(trace_path, wf, workers, run_attrs, start_time=0.0)
    try:
        res = simulate(wf, workers, mode, seed=seed, trace=writer, order=order)
    except BaseException:
        if writer is not None:
            writer.close(complete=False)
        raise
    cores = sum(w.cores for w in workers)
    gpus = sum(w.gpus for w in workers)
    util = utilization(res.rows, cores, gpus, res.makespan)
    if writer is not None:
        writer.close(complete=True, makespan=res.makespan, tasks_done=res.tasks)
    return {"makespan": res.makespan, "tasks": res.tasks, "utilization": util,
            "events": res.events, "mode": mode, "order": order, "seed": seed,
            "resources": {"workers": len(workers), "cores": cores, "gpus": gpus},
            "trace": trace_path}

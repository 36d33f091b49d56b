"""Offline analysis of traces: the paper's metrics, vectorised over the task table.

Works the same on real and simulated traces. This module never imports mpi4py.

Time series are step functions ``(times, values)``: ``values[i]`` holds on
``[times[i], times[i + 1])`` and the last value (0) holds after the last time. Times
are seconds since the run's ``start_time``, like the trace's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import TraceError
from .trace import STATUS_NAMES, Trace, load

DONE = 4
FAILED = 5
#: Statuses of an attempt that ran and did not succeed (failed, timeout, lost).
FAILED_STATUSES = (5, 8, 9)
_NEEDED = ("task", "set", "attempt", "status", "worker", "cores", "gpus", "ready",
           "dispatched", "started", "ended", "received")

__all__ = [
    "DONE", "analyze_paths", "binned", "check", "compare", "concurrency", "critical_path",
    "failures", "format_comparison", "format_summary", "makespan", "model_critical_path",
    "overheads", "per_set", "resumed_count", "step_series", "summarize", "to_dataframe",
    "totals", "utilization", "utilization_series",
]


def check(tr: Trace) -> None:
    """Raise :class:`TraceError` if the task table lacks a field analysis needs."""
    names = tr.tasks.dtype.names or ()
    missing = [n for n in _NEEDED if n not in names]
    if missing:
        raise TraceError(f"{tr.path}: task table lacks field(s) {', '.join(missing)}")


class _Ran:
    """Columns of the attempts that ran (a start, an end, a worker), gathered one
    field at a time: copying whole 200-byte records of a million-row table costs
    more than the metrics themselves."""

    def __init__(self, t: np.ndarray) -> None:
        self.t = t
        self.mask = np.isfinite(t["started"]) & np.isfinite(t["ended"]) & (t["worker"] >= 0)
        self.n = int(self.mask.sum())
        self._cols: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, name: str) -> np.ndarray:
        c = self._cols.get(name)
        if c is None:
            c = self._cols[name] = self.t[name][self.mask]
        return c


def _final_rows(t: np.ndarray) -> _Ran:
    """The attempts that ran (have a start and an end), by column."""
    return _Ran(t)


def _marks(ids: np.ndarray, size: int) -> np.ndarray:
    """Boolean membership array of dense non-negative ids (O(n), no sort)."""
    m = np.zeros(size, dtype=bool)
    m[ids] = True
    return m


def totals(tr: Trace) -> tuple[int, int]:
    """Total cores and GPUs of the run's workers."""
    cores = sum(int(w.get("cores", 0)) for w in tr.workers)
    gpus = sum(int(w.get("gpus", 0)) for w in tr.workers)
    return cores, gpus


def makespan(tasks: np.ndarray) -> float:
    """First start to last end (seconds) over every attempt that ran."""
    r = _final_rows(tasks)
    if not len(r):
        return 0.0
    return float(r["ended"].max() - r["started"].min())


def utilization(tasks: np.ndarray, total_cores: int, total_gpus: int,
                span: float | None = None) -> dict[str, float]:
    """U_r = sum over attempts of r(task) * (end - start) / (R_total * makespan).

    Args:
        tasks: the task table (failed attempts count: they held their resources).
        total_cores: cores of all workers.
        total_gpus: GPUs of all workers.
        span: the makespan to divide by (default: :func:`makespan` of ``tasks``).

    Returns:
        ``{"cpu": U_cpu, "gpu": U_gpu}``, each in [0, 1]; 0 where the total is 0.
    """
    r = _final_rows(tasks)
    ms = makespan(tasks) if span is None else span
    out = {"cpu": 0.0, "gpu": 0.0}
    if ms <= 0 or not len(r):
        return out
    dur = r["ended"] - r["started"]
    if total_cores:
        out["cpu"] = float(np.sum(r["cores"] * dur) / (total_cores * ms))
    if total_gpus:
        out["gpu"] = float(np.sum(r["gpus"] * dur) / (total_gpus * ms))
    return out


# ====================================================================== time series
def step_series(t0: np.ndarray, t1: np.ndarray,
                weight: np.ndarray | float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Sum of ``weight`` over intervals ``[t0, t1)`` as a step function of time.

    Args:
        t0: interval starts.
        t1: interval ends (same length; empty intervals and NaN times are dropped).
        weight: one weight for all, a weight per interval (shape ``(n,)``), or ``k``
            weights per interval (shape ``(n, k)``: ``k`` series on shared times).

    Returns:
        ``(times, values)``: the distinct event times, sorted, and the sum in force
        from each time up to the next (shape ``(m,)`` or ``(m, k)``).
    """
    t0 = np.asarray(t0, dtype=float)
    t1 = np.asarray(t1, dtype=float)
    w = np.asarray(weight)
    if w.dtype.kind not in "iuf":
        w = w.astype(float)
    if w.dtype.kind == "u" or w.dtype.itemsize < 8:  # room for sums and negation
        w = w.astype(np.float64 if w.dtype.kind == "f" else np.int64)
    if w.ndim == 0:
        w = np.broadcast_to(w, t0.shape)
    ok = np.isfinite(t0) & np.isfinite(t1) & (t1 > t0)
    t = np.concatenate([t0[ok], t1[ok]])
    w = w[ok]
    o = np.argsort(t)  # ties need no order: equal times collapse below
    t = t[o]
    cols = [w] if w.ndim == 1 else [w[:, j] for j in range(w.shape[1])]
    vs = [np.cumsum(np.concatenate([c, -c])[o]) for c in cols]
    v = vs[0] if w.ndim == 1 else np.stack(vs, axis=1).reshape(len(t), len(cols))
    if not len(t):
        return t, v
    last = np.empty(len(t), dtype=bool)
    last[:-1] = t[1:] != t[:-1]
    last[-1] = True
    v = v[last]
    if v.dtype.kind == "f" and len(w):
        tol = 1e-9 * max(1.0, float(np.abs(w).max()))
        v[np.abs(v) < tol] = 0.0  # float residue of +w then -w
    return t[last], v


def binned(times: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Time-average of a step series over each bin ``[edges[i], edges[i + 1])``.

    Exact (the integral of a step function is piecewise linear), O(n + bins): what
    plots of million-task traces draw instead of every step.
    """
    edges = np.asarray(edges, dtype=float)
    if len(times) < 2:
        return np.zeros(max(len(edges) - 1, 0))
    integral = np.concatenate([[0.0], np.cumsum(values[:-1] * np.diff(times))])
    at = np.interp(edges, times, integral)  # 0 before the first time, flat after the last
    width = np.diff(edges)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(width > 0, np.diff(at) / width, 0.0)


def utilization_series(tr: Trace) -> dict[str, np.ndarray]:
    """CPU and GPU utilization over time (fractions of the run's totals).

    Returns:
        ``{"times", "cpu", "gpu"}``: step series of both resources on shared times.
    """
    r = _final_rows(tr.tasks)
    cores, gpus = totals(tr)
    w = np.stack([r["cores"], r["gpus"]], axis=1).astype(np.int64)
    times, v = step_series(r["started"], r["ended"], w.reshape(-1, 2))
    v = v.reshape(-1, 2).astype(float)
    return {"times": times, "cpu": v[:, 0] / cores if cores else np.zeros(len(times)),
            "gpu": v[:, 1] / gpus if gpus else np.zeros(len(times))}


def concurrency(tr: Trace) -> dict[str, np.ndarray]:
    """Attempts running (started..ended) and ready but not yet started (ready..started)
    over time.

    Returns:
        ``{"times", "running", "waiting"}`` on shared times.
    """
    t = _final_rows(tr.tasks)
    s, e, r = t["started"], t["ended"], t["ready"]
    run = np.isfinite(s) & np.isfinite(e) & (e > s)
    wait = np.isfinite(r) & (s > r)
    times = np.concatenate([s[run], e[run], r[wait], s[wait]])
    nr, nw = int(run.sum()), int(wait.sum())
    # one int8 step per event: running +1/-1, waiting +1/-1 (cheap to gather)
    dr = np.concatenate([np.ones(nr, np.int8), -np.ones(nr, np.int8), np.zeros(2 * nw, np.int8)])
    dw = np.concatenate([np.zeros(2 * nr, np.int8), np.ones(nw, np.int8), -np.ones(nw, np.int8)])
    o = np.argsort(times)
    times = times[o]
    running = np.cumsum(dr[o], dtype=np.int64)
    waiting = np.cumsum(dw[o], dtype=np.int64)
    if len(times):
        last = np.empty(len(times), dtype=bool)
        last[:-1] = times[1:] != times[:-1]
        last[-1] = True
        times, running, waiting = times[last], running[last], waiting[last]
    return {"times": times, "running": running, "waiting": waiting}


# ====================================================================== per set, overheads
def per_set(tr: Trace) -> list[dict[str, Any]]:
    """Per set: attempts that ran, duration mean/std/min/max, queue wait, failures.

    Queue wait is dispatched − ready (time in the scheduler's ready queue); durations
    are ended − started of attempts that ran.
    """
    t = _final_rows(tr.tasks)
    nsets = max([int(s["sid"]) + 1 for s in tr.sets] + [int(t["set"].max()) + 1 if len(t) else 0])
    sid = t["set"].astype(np.int64)
    dur = t["ended"] - t["started"]
    wait = t["dispatched"] - t["ready"]
    cnt = np.bincount(sid, minlength=nsets)
    ok = np.isfinite(wait)
    wcnt = np.bincount(sid[ok], minlength=nsets)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(sid, dur, nsets) / cnt
        std = np.sqrt(np.bincount(sid, (dur - mean[sid]) ** 2, nsets) / cnt)
        wmean = np.bincount(sid[ok], wait[ok], nsets) / wcnt
    o = np.argsort(sid, kind="stable")  # integer keys: a radix sort, O(n)
    has = np.nonzero(cnt)[0]
    lo = np.concatenate([[0], np.cumsum(cnt)[:-1]])[has]
    dmin = np.full(nsets, np.nan)
    dmax = np.full(nsets, np.nan)
    wmax = np.full(nsets, np.nan)
    if len(o):
        ds, ws = dur[o], wait[o]
        dmin[has] = np.minimum.reduceat(ds, lo)
        dmax[has] = np.maximum.reduceat(ds, lo)
        wmax[has] = np.fmax.reduceat(ws, lo)  # fmax skips NaN waits
    nfail = np.bincount(sid[np.isin(t["status"], FAILED_STATUSES)], minlength=nsets)
    out = []
    nan = float("nan")
    for s in tr.sets:
        k = int(s["sid"])
        n = int(cnt[k])
        out.append({"set": s["name"], "tasks": n,
                    "mean": float(mean[k]) if n else nan,
                    "std": float(std[k]) if n else nan,
                    "min": float(dmin[k]), "max": float(dmax[k]),
                    "wait": float(wmean[k]) if wcnt[k] else nan,
                    "wait_max": float(wmax[k]),
                    "failed": int(nfail[k])})
    return out


def _stats(x: np.ndarray) -> dict[str, float]:
    x = x[np.isfinite(x)]
    if not len(x):
        return {"n": 0, "mean": 0.0, "median": 0.0, "p95": 0.0, "max": 0.0, "total": 0.0}
    return {"n": int(len(x)), "mean": float(x.mean()), "median": float(np.median(x)),
            "p95": float(np.percentile(x, 95)), "max": float(x.max()), "total": float(x.sum())}


def overheads(tasks: np.ndarray) -> dict[str, dict[str, float]]:
    """Scheduling overheads of attempts that ran, each as n/mean/median/p95/max/total.

    ``queue`` = dispatched − ready (waiting for a free worker, or for the stage
    barrier's release in order), ``launch`` = started − dispatched (message and
    worker start-up), ``report`` = received − ended (the result's way back to rank 0).
    A simulated trace has 0 launch and report overhead by construction.
    """
    r = _final_rows(tasks)
    return {"queue": _stats(r["dispatched"] - r["ready"]),
            "launch": _stats(r["started"] - r["dispatched"]),
            "report": _stats(r["received"] - r["ended"])}


def failures(tr: Trace) -> dict[str, Any]:
    """Failed attempts, retries and tasks that never succeeded.

    Returns:
        ``failed_attempts`` (rows failed, timed out or lost), ``retries`` (rows with
        attempt > 0), ``retried_tasks``, ``failed_tasks`` (a failed row and no done
        row), ``unrecorded`` (tasks of the run with no row at all: skipped, cancelled
        before running, or not reached in a partial run) and ``errors`` (count per
        exception type, from the error table).
    """
    t = tr.tasks
    status = t["status"]
    task = t["task"]
    bad = np.isin(status, FAILED_STATUSES)
    size = int(task.max()) + 1 if len(task) else 0
    if len(task) and int(task.min()) < 0:
        raise TraceError(f"{tr.path}: negative task id in the task table")
    done = _marks(task[status == DONE], size)
    failed_tasks = int(np.sum(_marks(task[bad], size) & ~done))
    ntasks = int(tr.attrs.get("ntasks", 0) or 0)
    recorded = int(_marks(task, size).sum())
    types: dict[str, int] = {}
    for e in tr.errors:
        k = str(e.get("type", "?"))
        types[k] = types.get(k, 0) + 1
    return {"failed_attempts": int(bad.sum()),
            "retries": int(np.sum(t["attempt"] > 0)),
            "retried_tasks": int(_marks(task[t["attempt"] > 0], size).sum()),
            "failed_tasks": failed_tasks,
            "unrecorded": max(ntasks - recorded, 0),
            "errors": types}


# ====================================================================== critical path
def _set_offsets(tr: Trace) -> dict[int, int]:
    return {int(s["sid"]): int(s.get("offset", 0)) for s in tr.sets}


def critical_path(tr: Trace) -> dict[str, Any]:
    """The realised critical path: from the task that ended last, back through the
    dependency that ended last (the one that released it), to a source.

    Only dependencies are followed (set edges all-to-all and one-to-one, task edges),
    so in a sequential run the barrier's delay shows as ``dependency_wait``.

    Returns:
        ``length`` (first start on the path to its last end), ``busy`` (running time
        on the path), ``dependency_wait`` (a task's ready − its releasing parent's
        end, summed), ``queue_wait`` (started − ready, summed over the path after
        its first task), ``tasks`` (path length in tasks), ``sets`` (set names along
        the path, repeats merged) and ``task_ids`` (first to last). ``busy +
        dependency_wait + queue_wait == length`` whenever timestamps are ordered.
    """
    t = tr.tasks
    done = (t["status"] == DONE) & np.isfinite(t["ended"]) & np.isfinite(t["started"])
    empty = {"length": 0.0, "busy": 0.0, "dependency_wait": 0.0, "queue_wait": 0.0,
             "tasks": 0, "sets": [], "task_ids": []}
    if not done.any():
        return empty
    rows = np.nonzero(done)[0]
    tid = t["task"][rows]
    row_of = np.full(int(tid.max()) + 1, -1, dtype=np.int64)
    row_of[tid] = rows
    ended = t["ended"]
    sid_all = t["set"][rows].astype(np.int64)
    nsets = int(max([int(s["sid"]) for s in tr.sets] + [int(sid_all.max())])) + 1
    # the done row of each set that ended last (releases an all-to-all child)
    e = ended[rows]
    best = np.full(nsets, -np.inf)
    np.maximum.at(best, sid_all, e)
    # among rows ending at their set's latest end, the last row wins (any would do)
    hit = np.nonzero(e == best[sid_all])[0]
    last_of_set = np.full(nsets, -1, dtype=np.int64)
    last_of_set[sid_all[hit]] = rows[hit]
    offs = _set_offsets(tr)
    parents_all: dict[int, list[int]] = {}
    parents_one: dict[int, list[int]] = {}
    for p, c, k in np.asarray(tr.set_edges).reshape(-1, 3).tolist():
        (parents_one if k == 1 else parents_all).setdefault(int(c), []).append(int(p))
    te = np.asarray(tr.task_edges, dtype=np.int64).reshape(-1, 2)
    te = te[np.argsort(te[:, 1], kind="stable")]
    names = {int(s["sid"]): str(s["name"]) for s in tr.sets}

    def parent_rows(r: int) -> list[int]:
        task, s = int(t["task"][r]), int(t["set"][r])
        out = [int(last_of_set[p]) for p in parents_all.get(s, ()) if last_of_set[p] >= 0]
        for p in parents_one.get(s, ()):
            pt = offs.get(p, 0) + task - offs.get(s, 0)
            if 0 <= pt < len(row_of) and row_of[pt] >= 0:
                out.append(int(row_of[pt]))
        a, b = np.searchsorted(te[:, 1], [task, task + 1])
        for pt in te[a:b, 0].tolist():
            if 0 <= pt < len(row_of) and row_of[pt] >= 0:
                out.append(int(row_of[pt]))
        return out

    cur = int(rows[np.argmax(ended[rows])])
    path = [cur]
    seen = {cur}
    while True:
        ps = parent_rows(cur)
        if not ps:
            break
        cur = max(ps, key=lambda r: ended[r])
        if cur in seen:  # a damaged trace with a cycle: stop rather than loop
            break
        seen.add(cur)
        path.append(cur)
    path.reverse()
    p = t[np.array(path)]
    dep = p["ready"][1:] - p["ended"][:-1]
    sets: list[str] = []
    for s in p["set"].tolist():
        nm = names.get(int(s), str(s))
        if not sets or sets[-1] != nm:
            sets.append(nm)
    return {"length": float(p["ended"][-1] - p["started"][0]),
            "busy": float(np.sum(p["ended"] - p["started"])),
            "dependency_wait": float(np.nansum(np.maximum(dep, 0.0))),
            "queue_wait": float(np.nansum(p["started"][1:] - p["ready"][1:])),
            "tasks": len(path), "sets": sets, "task_ids": p["task"].tolist()}


def _model_inputs(tr: Trace) -> tuple[Any, Any] | None:
    """The workflow and machine of a trace, rebuilt from its tables (``None`` when the
    trace lacks what the model needs)."""
    from .resources import WorkerSpec
    from .workflow import Workflow

    try:
        wf = Workflow(str(tr.attrs.get("workflow", "trace")))
        for st in sorted(tr.sets, key=lambda x: int(x["sid"])):
            wf.add_set(str(st["name"]), int(st["n"]), str(st.get("kernel") or "noop"),
                       ranks=int(st.get("ranks", 1)), cores=int(st.get("cores", 1)),
                       gpus=int(st.get("gpus", 0)),
                       duration=float(st.get("duration", 0.0) or 0.0))
        wf.set_deps = [(int(p), int(c), int(k))
                       for p, c, k in np.asarray(tr.set_edges).reshape(-1, 3).tolist()]
        wf.task_edges = [(int(a), int(b))
                         for a, b in np.asarray(tr.task_edges).reshape(-1, 2).tolist()]
        workers = [WorkerSpec(int(w["rank"]), int(w.get("node", 0)), str(w.get("host", "")),
                              int(w.get("cores", 0)), int(w.get("gpus", 0)))
                   for w in tr.workers]
        if not workers or wf.find_cycle():
            return None
        return wf, workers
    except Exception:  # an odd or partial trace: fall back to the plain longest path
        return None


def model_critical_path(tr: Trace) -> dict[str, Any]:
    """The model's critical path (``paper-reference.md``) for the trace's workflow and
    machine: the longest path of effective set durations d(s), where a set whose tasks
    do not all fit the run's workers at once takes ceil(n / fit) waves of its
    ``duration`` estimate. Task edges are lifted to their sets.

    Returns:
        ``length`` (seconds), ``sets`` (the path's set names) and ``waves`` (per set
        on the path, 1 when it fits at once).
    """
    names = {int(s["sid"]): str(s["name"]) for s in tr.sets}
    if not names:
        return {"length": 0.0, "sets": [], "waves": []}
    inputs = _model_inputs(tr)
    if inputs is not None:
        from . import model as mdl

        wf, workers = inputs
        try:
            d, waves = mdl.effective_durations(wf, workers)
        except Exception:  # a set fits no node of this machine: plain estimates
            d, waves = [s.duration for s in wf.sets], [1] * len(wf.sets)
        length, path = mdl.critical_path(wf, d)
        return {"length": float(length), "sets": [names[s] for s in path],
                "waves": [int(waves[s]) for s in path]}
    dur = {int(s["sid"]): float(s.get("duration", 0.0) or 0.0) for s in tr.sets}
    edges = {(int(p), int(c)) for p, c, _k in np.asarray(tr.set_edges).reshape(-1, 3).tolist()}
    children: dict[int, list[int]] = {}
    indeg = dict.fromkeys(dur, 0)
    for p, c in edges:
        if p in dur and c in dur:
            children.setdefault(p, []).append(c)
            indeg[c] += 1
    best = dict(dur)
    prev: dict[int, int] = {}
    stack = [s for s, dg in indeg.items() if dg == 0]
    while stack:  # Kahn's order: each set's best path is final when popped
        s = stack.pop()
        for c in children.get(s, ()):
            if best[s] + dur[c] > best[c]:
                best[c] = best[s] + dur[c]
                prev[c] = s
            indeg[c] -= 1
            if not indeg[c]:
                stack.append(c)
    end = max(best, key=lambda s: best[s])
    path = [end]
    while path[-1] in prev:
        path.append(prev[path[-1]])
    return {"length": best[end], "sets": [names[s] for s in reversed(path)],
            "waves": [1] * len(path)}


# ====================================================================== summaries
def resumed_count(attrs: dict[str, Any]) -> int:
    """How many tasks a run resumed from an earlier trace counted done without running
    them (0 for a run that is no resume): ``resumed_done`` as the run ended, else, for
    a resumed run killed before its end, the ``resumed_recorded`` ids it started from."""
    n = attrs.get("resumed_done", attrs.get("resumed_recorded"))
    try:
        return max(int(n or 0), 0)
    except (TypeError, ValueError):
        return 0


def summarize(tr: Trace) -> dict[str, Any]:
    """The headline numbers of one run (JSON-serialisable; no per-row arrays).

    Raises:
        TraceError: the task table lacks a field analysis needs.
    """
    check(tr)
    t = tr.tasks
    ms = makespan(t)
    cores, gpus = totals(tr)
    ndone = int(np.sum(t["status"] == DONE))
    st = t["status"].astype(np.int64)
    if len(st) and int(st.min()) < 0:
        raise TraceError(f"{tr.path}: negative status in the task table")
    bc = np.bincount(st)
    status_counts = {int(k): int(bc[k]) for k in np.nonzero(bc)[0]}
    conc = concurrency(tr)
    cp = critical_path(tr)
    cp.pop("task_ids")
    return {
        "trace": tr.path,
        "run": tr.run,
        "workflow": tr.attrs.get("workflow"),
        "mode": tr.mode,
        "simulated": tr.simulated,
        "partial": tr.partial,
        "resumed": resumed_count(tr.attrs),
        "resumed_from": tr.attrs.get("resumed_from"),
        "makespan": ms,
        "tasks": ndone,
        "rows": int(len(t)),
        "throughput": ndone / ms if ms > 0 else 0.0,
        "utilization": utilization(t, cores, gpus, ms),
        "resources": {"cores": cores, "gpus": gpus, "workers": len(tr.workers)},
        "status": {STATUS_NAMES[k] if 0 <= k < len(STATUS_NAMES) else str(k): v
                   for k, v in status_counts.items()},
        "concurrency": {"max_running": int(conc["running"].max()) if len(conc["times"]) else 0,
                        "max_waiting": int(conc["waiting"].max()) if len(conc["times"]) else 0},
        "overheads": overheads(t),
        "critical_path": cp,
        "model_critical_path": model_critical_path(tr),
        "failures": failures(tr),
        "sets": per_set(tr),
    }


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Run ``b`` against baseline ``a``: I = 1 - T_b / T_a, speed-up, utilization change.

    A resumed run (``summarize``'s ``resumed`` > 0) ran only what an earlier trace did
    not record done, so its makespan does not cover the workflow: with such a run on
    either side, I and the speed-up are NaN and ``note`` says why (None otherwise).
    """
    ta, tb = a["makespan"], b["makespan"]
    note = "; ".join(_resumed_note(s) for s in (b, a) if s.get("resumed")) or None
    return {
        "baseline": a["trace"], "other": b["trace"],
        "improvement": 1.0 - tb / ta if ta > 0 and note is None else float("nan"),
        "speedup": ta / tb if tb > 0 and note is None else float("nan"),
        "utilization_change": {k: b["utilization"][k] - a["utilization"][k]
                               for k in ("cpu", "gpu")},
        "note": note,
    }


def _resumed_note(s: dict[str, Any]) -> str:
    src = f" ({s['resumed_from']})" if s.get("resumed_from") else ""
    return (f"{s['trace']} is a resume that counted {s['resumed']} task(s) done from an "
            f"earlier trace{src}, so its makespan does not cover the workflow")


def analyze_paths(paths: Sequence[str], run: int = -1) -> list[dict[str, Any]]:
    """:func:`summarize` each trace file."""
    return [summarize(load(p, run)) for p in paths]


def format_summary(s: dict[str, Any]) -> str:
    """Human-readable lines for one summary."""
    u = s["utilization"]
    part = "  [PARTIAL: run did not end cleanly]" if s["partial"] else ""
    if s.get("resumed"):
        part += f"  [RESUMED: {s['resumed']} task(s) counted done from an earlier trace]"
    sim = "  (simulated)" if s["simulated"] else ""
    lines = [
        f"trace       {s['trace']} (run {s['run']}){part}",
        f"workflow    {s['workflow']}  mode {s['mode']}{sim}",
        f"makespan    {s['makespan']:.3f} s",
        f"tasks       {s['tasks']} done of {s['rows']} attempt rows  {s['status']}",
        f"throughput  {s['throughput']:.4g} tasks/s",
        f"utilization cpu {100 * u['cpu']:.1f} %  gpu {100 * u['gpu']:.1f} %  "
        f"({s['resources']['cores']} cores, {s['resources']['gpus']} GPUs)",
    ]
    if "concurrency" in s:
        c, o = s["concurrency"], s["overheads"]
        cp, mcp, f = s["critical_path"], s["model_critical_path"], s["failures"]
        lines += [
            f"concurrency max {c['max_running']} running, max {c['max_waiting']} ready waiting",
            "overheads   mean / p95 / max (s): "
            + ", ".join(f"{k} {o[k]['mean']:.4g} / {o[k]['p95']:.4g} / {o[k]['max']:.4g}"
                        for k in ("queue", "launch", "report")),
            f"crit. path  realised {cp['length']:.4g} s over {cp['tasks']} task(s) "
            f"[{' > '.join(cp['sets'])}]: busy {cp['busy']:.4g} s, dependency wait "
            f"{cp['dependency_wait']:.4g} s, queue wait {cp['queue_wait']:.4g} s",
            f"            model {mcp['length']:.4g} s [{' > '.join(mcp['sets'])}]",
            f"failures    {f['failed_attempts']} failed attempt(s), {f['retries']} retry row(s), "
            f"{f['failed_tasks']} task(s) never succeeded, {f['unrecorded']} without a row"
            + (f"  {f['errors']}" if f["errors"] else ""),
        ]
    lines.append("per set     name: tasks, duration mean ± std [min, max] (s), "
                 "queue wait mean / max (s)")
    for p in s["sets"]:
        fail = f", {p['failed']} failed" if p.get("failed") else ""
        lines.append(f"  {p['set']}: {p['tasks']}, {p['mean']:.4g} ± {p.get('std', 0):.3g} "
                     f"[{p.get('min', 0):.4g}, {p.get('max', 0):.4g}], "
                     f"{p['wait']:.4g} / {p.get('wait_max', 0):.4g}{fail}")
    return "\n".join(lines)


def format_comparison(sums: Sequence[dict[str, Any]]) -> str:
    """Runs side by side, each later one against the first (the baseline).

    Columns: makespan, throughput, CPU and GPU utilization per run; then I, the
    speed-up and the utilization change of each run against the baseline.
    """
    base = sums[0]
    w = max(12, *(len(str(s["mode"])) + 2 for s in sums))
    head = f"{'':<22}" + "".join(f"{str(s['mode']):>{w}}" for s in sums)
    rows = [head,
            f"{'makespan (s)':<22}" + "".join(f"{s['makespan']:>{w}.4g}" for s in sums),
            f"{'throughput (tasks/s)':<22}" + "".join(f"{s['throughput']:>{w}.4g}" for s in sums),
            f"{'CPU utilization (%)':<22}"
            + "".join(f"{100 * s['utilization']['cpu']:>{w}.1f}" for s in sums),
            f"{'GPU utilization (%)':<22}"
            + "".join(f"{100 * s['utilization']['gpu']:>{w}.1f}" for s in sums)]
    comps = [compare(base, s) for s in sums[1:]]
    dash = f"{'—':>{w}}"
    # no I or speed-up against a resume: "—" as for the baseline (the note says why)
    rows += [f"{'improvement I (%)':<22}" + dash
             + "".join(dash if c["note"] else f"{100 * c['improvement']:>{w}.1f}"
                       for c in comps),
             f"{'speed-up':<22}" + dash
             + "".join(dash if c["note"] else f"{c['speedup']:>{w}.3f}" for c in comps),
             f"{'CPU util. change (pt)':<22}" + dash
             + "".join(f"{100 * c['utilization_change']['cpu']:>+{w}.1f}" for c in comps),
             f"{'GPU util. change (pt)':<22}" + dash
             + "".join(f"{100 * c['utilization_change']['gpu']:>+{w}.1f}" for c in comps)]
    rows.append("runs: " + "; ".join(f"{s['mode']} = {s['trace']}" for s in sums)
                + "  (I = 1 - T/T_baseline, baseline first)")
    return "\n".join(rows)


def to_dataframe(tr: Trace) -> Any:
    """The task table as a :class:`pandas.DataFrame` (see :mod:`mpiwf.export`)."""
    from .export import to_dataframe as _df

    return _df(tr)

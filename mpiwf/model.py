"""The asynchronicity model: T_seq, T_async, I, structural DOA and the critical path.

Definitions (``../shared/paper-reference.md``, Pascuzzi et al., JSSPP 2023):

* effective duration of a set: d(s) = t if all its tasks fit the machine at once,
  else ceil(n / fit) * t (waves); ``fit`` is found by the real scheduler's placement;
* T_seq = sum over stages of max d(s) in the stage (a barrier after every stage);
* T_async = the longest path of d(s) through the dependencies (the critical path);
  when concurrent sets compete for the same resources a list-scheduling simulation
  on the same scheduler gives the resource-aware bound instead;
* I = 1 - T_async / T_seq;
* structural DOA: the sets a barrier delays without need, i.e. those whose direct
  parents do not cover the whole stage before them.

This module never imports mpi4py.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from .resources import WorkerSpec
from .workflow import TaskSet, Workflow


@dataclasses.dataclass
class ModelResult:
    """What the model predicts for one workflow on one machine.

    Attributes:
        t_seq: sequential makespan (barrier per stage): the formula, or the
            list-scheduling simulation when sets of one stage compete and it is longer.
        t_seq_stages: the formula: sum over stages of the longest d(s).
        t_async: asynchronous makespan: the resource-aware bound when a machine is
            given and contention makes it longer than the path, else the path.
        t_async_path: length of the critical path of effective durations.
        t_async_list: list-scheduling simulation (async, critical-path order), or
            ``None`` without a machine.
        t_seq_list: list-scheduling simulation of the sequential mode, or ``None``.
        improvement: I = 1 - t_async / t_seq.
        speedup: t_seq / t_async.
        doa: number of sets a barrier delays without need.
        doa_sets: their names.
        critical_path: set names along the critical path, source first.
        stages: per stage, the set names.
        levels: DAG level of each set, by name.
        effective: d(s) of each set, by name.
        waves: ceil(n / fit) of each set, by name.
        contended: the resource-aware async bound exceeds the critical path.
    """

    t_seq: float
    t_seq_stages: float
    t_async: float
    t_async_path: float
    t_async_list: float | None
    t_seq_list: float | None
    improvement: float
    speedup: float
    doa: int
    doa_sets: list[str]
    critical_path: list[str]
    stages: list[list[str]]
    levels: dict[str, int]
    effective: dict[str, float]
    waves: dict[str, int]
    contended: bool

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON output)."""
        return dataclasses.asdict(self)


def fit_counts(wf: Workflow, workers: Sequence[WorkerSpec]) -> list[int]:
    """Per set, how many of its tasks the machine holds at once (0: none fits).

    Found by the real scheduler: a one-set workflow with the set's request is placed
    on the empty machine; results are cached per request.
    """
    from .errors import RunError
    from .scheduler import Scheduler

    cache: dict[tuple[int, int, int], int] = {}
    out = []
    for ts in wf.sets:
        key = ts.request
        if key not in cache:
            probe = Workflow("fit")
            bound = sum(1 for _ in workers) + 1
            probe.add_set("probe", bound, cores=ts.cores, gpus=ts.gpus, ranks=ts.ranks)
            try:
                s = Scheduler(probe, workers)
            except RunError:
                cache[key] = 0
                continue
            s.start()
            cache[key] = len(s.schedule())
        out.append(cache[key])
    return out


def effective_durations(wf: Workflow, workers: Sequence[WorkerSpec] | None = None
                        ) -> tuple[list[float], list[int]]:
    """d(s) and the number of waves of every set.

    Args:
        wf: the workflow (``duration`` of each set is t).
        workers: the machine; ``None`` assumes every set fits at once.

    Raises:
        SpecError: a set fits nowhere on the machine.
    """
    from .errors import SpecError

    fits = fit_counts(wf, workers) if workers is not None else [0] * len(wf.sets)
    d: list[float] = []
    waves: list[int] = []
    for ts, f in zip(wf.sets, fits):
        if workers is None:
            w = 1
        elif f <= 0:
            raise SpecError(f"sets.{ts.name}", "no task of this set fits the machine")
        else:
            w = math.ceil(ts.n / f)
        waves.append(w)
        d.append(w * ts.duration)
    return d, waves


def critical_path(wf: Workflow, d: Sequence[float]) -> tuple[float, list[int]]:
    """Longest path of ``d`` through the set graph: (length, set ids source first)."""
    children, parents = wf.set_graph()
    order = wf.topo_order()
    best = [0.0] * len(wf.sets)
    prev = [-1] * len(wf.sets)
    for s in order:
        p = max(parents[s], key=lambda q: best[q], default=-1)
        best[s] = d[s] + (best[p] if p >= 0 else 0.0)
        prev[s] = p
    if not order:
        return 0.0, []
    end = max(range(len(wf.sets)), key=lambda s: best[s])
    path = []
    s = end
    while s >= 0:
        path.append(s)
        s = prev[s]
    return best[end], path[::-1]


def sequential_makespan(wf: Workflow, d: Sequence[float]) -> float:
    """T_seq: per stage the longest effective duration, summed over stages."""
    st = wf.stages()
    longest: dict[int, float] = {}
    for s, k in enumerate(st):
        longest[k] = max(longest.get(k, 0.0), d[s])
    return sum(longest.values())


def structural_doa(wf: Workflow) -> list[int]:
    """Sets a stage barrier delays without need: stage > 0 and their direct parents do
    not cover every set of the stage before."""
    st = wf.stages()
    _, parents = wf.set_graph()
    by_stage: dict[int, set[int]] = {}
    for s, k in enumerate(st):
        by_stage.setdefault(k, set()).add(s)
    out = []
    for s, k in enumerate(st):
        if k == 0:
            continue
        if not by_stage.get(k - 1, set()) <= set(parents[s]):
            out.append(s)
    return out


def model(wf: Workflow, workers: Sequence[WorkerSpec] | None = None,
          simulate_bound: bool = True) -> ModelResult:
    """Evaluate the model of ``wf`` on a machine.

    Args:
        wf: the workflow (set durations are the per-task times t).
        workers: the machine (e.g. :func:`mpiwf.layouts.workers`); ``None`` means
            unlimited resources (no waves, no contention).
        simulate_bound: with a machine, also run the list-scheduling bounds.

    Returns:
        The :class:`ModelResult`.
    """
    d, waves = effective_durations(wf, workers)
    t_stages = sequential_makespan(wf, d)
    t_path, path = critical_path(wf, d)
    t_list = t_seq_list = None
    if workers is not None and simulate_bound:
        from .simulate import simulate

        fixed = [ts.duration for ts in wf.sets]

        def dur(tid: int, sets: list[TaskSet] = wf.sets) -> float:
            return fixed[wf.set_of(tid).sid]

        t_list = simulate(wf, workers, "async", durations=dur).makespan
        t_seq_list = simulate(wf, workers, "sequential", durations=dur).makespan
    eps = 1e-9 * max(1.0, t_path)
    contended = t_list is not None and t_list > t_path + eps
    t_async = t_list if (contended and t_list is not None) else t_path
    t_seq = max(t_stages, t_seq_list) if t_seq_list is not None else t_stages
    names = [ts.name for ts in wf.sets]
    st = wf.stages()
    stages: list[list[str]] = [[] for _ in range(max(st) + 1)] if st else []
    for s, k in enumerate(st):
        stages[k].append(names[s])
    lev = wf.levels()
    doa = structural_doa(wf)
    return ModelResult(
        t_seq=t_seq, t_seq_stages=t_stages, t_async=t_async, t_async_path=t_path,
        t_async_list=t_list, t_seq_list=t_seq_list,
        improvement=1.0 - t_async / t_seq if t_seq > 0 else 0.0,
        speedup=t_seq / t_async if t_async > 0 else 1.0,
        doa=len(doa), doa_sets=[names[s] for s in doa],
        critical_path=[names[s] for s in path], stages=stages,
        levels={names[s]: lev[s] for s in range(len(names))},
        effective={names[s]: d[s] for s in range(len(names))},
        waves={names[s]: waves[s] for s in range(len(names))}, contended=contended)

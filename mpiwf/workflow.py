"""Workflows: task sets, their dependencies and stage order, validated on construction.

A workflow is a DAG of *task sets*. A set is ``n`` alike tasks (one kernel, one
request of ranks, cores and GPUs, one duration estimate). Task ids are dense
integers: set ``s`` owns ids ``offset .. offset + n - 1``, so every per-task table in
mpiwf is an array indexed by task id.

Dependencies come in three kinds:

* ``all``  - set-to-set: every task of the child waits for every task of the parent;
* ``one``  - one-to-one: task ``i`` of the child waits for task ``i`` of the parent
  (both sets must have the same ``n``);
* task-level edges between single tasks (``Workflow.add_edge``).

The *stage order* is the order a pipeline-of-stages system would run the sets in;
by default the DAG levels. This module never imports mpi4py.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .errors import SpecError

#: Largest number of tasks a workflow may hold (a guard against absurd counts).
MAX_TASKS = 100_000_000
_NAME = re.compile(r"^[A-Za-z0-9_.:+-][A-Za-z0-9_.:+\- ]*$")
_TASK_REF = re.compile(r"^(?P<set>.+?)\[(?P<index>\d+)\]$")

DEP_ALL = 0
DEP_ONE = 1
DEP_KINDS = {"all": DEP_ALL, "one": DEP_ONE}


@dataclasses.dataclass
class TaskSet:
    """``n`` alike tasks.

    Attributes:
        name: unique name in the workflow.
        n: number of tasks.
        kernel: registry name (``sleep``) or ``module:function``.
        args: positional arguments of the kernel (the same for every task).
        kwargs: keyword arguments of the kernel.
        ranks: MPI ranks one task runs on (a sub-communicator is made when > 1).
        cores: cores one task holds.
        gpus: GPUs one task holds.
        duration: estimated seconds per task (critical-path priority, model,
            simulator); 0 means unknown.
        duration_dist: optional distribution of durations for the simulator, e.g.
            ``{"dist": "normal", "std": 0.1}`` (see :mod:`mpiwf.simulate`).
        stage: explicit stage index, or ``None`` for the DAG level.
        retries: times a failed task is tried again.
        timeout: seconds after which a task counts as failed (``None``: never).
        isolate: run each task in a child process (for timeouts of Python code).
        inputs: pass the parents' return values to the kernel as ``inputs=[...]``.
        lookahead: seconds of work expected to depend on this set that is not in the
            DAG yet (an adaptive driver adds it later); added to its critical-path
            priority, not to its duration.
        sid: index of the set in the workflow (assigned).
        offset: id of the set's first task (assigned).
    """

    name: str
    n: int = 1
    kernel: str = "noop"
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    ranks: int = 1
    cores: int = 1
    gpus: int = 0
    duration: float = 0.0
    duration_dist: dict[str, Any] | None = None
    stage: int | None = None
    retries: int = 0
    timeout: float | None = None
    isolate: bool = False
    inputs: bool = False
    lookahead: float = 0.0
    sid: int = -1
    offset: int = -1

    @property
    def request(self) -> tuple[int, int, int]:
        """``(ranks, cores, gpus)`` of one task."""
        return (self.ranks, self.cores, self.gpus)

    def task_ids(self) -> range:
        """Ids of this set's tasks."""
        return range(self.offset, self.offset + self.n)


def _check_int(path: str, value: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(path, f"must be a whole number, got {value!r}")
    if value < lo:
        raise SpecError(path, f"must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise SpecError(path, f"must be <= {hi}, got {value}")
    return value


def _check_float(path: str, value: Any, lo: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(path, f"must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < lo:
        raise SpecError(path, f"must be a finite number >= {lo}, got {value!r}")
    return v


#: duration_dist forms: each one's parameters (the simulator's draws, simulate.py)
_DISTS = {"normal": ("std",), "uniform": ("low", "high"), "exponential": (),
          "lognormal": ("sigma",)}


def _check_dist(path: str, d: Any, duration: float) -> dict[str, Any]:
    """A ``duration_dist`` mapping: a known ``dist`` (default normal), only its own
    parameters, each a finite number >= 0 (uniform: ``low <= high``)."""
    if not isinstance(d, dict):
        raise SpecError(path, "must be a mapping")
    kind = d.get("dist", "normal")
    if kind not in _DISTS:
        raise SpecError(f"{path}.dist", f"unknown distribution {kind!r} (one of "
                        f"{', '.join(_DISTS)})")
    for key in d:
        if key != "dist" and key not in _DISTS[kind]:
            raise SpecError(f"{path}.{key}", f"not a parameter of {kind!r} (those are: "
                            f"{', '.join(_DISTS[kind]) or 'none'})")
    out: dict[str, Any] = {"dist": kind}
    for key in _DISTS[kind]:
        if key in d:
            out[key] = _check_float(f"{path}.{key}", d[key])
    if kind == "uniform" and out.get("low", 0.0) > out.get("high", duration):
        raise SpecError(path, f"low {out.get('low', 0.0)} is above high "
                        f"{out.get('high', duration)}")
    return out


class Workflow:
    """A DAG of task sets.

    Build it with :meth:`add_set` and :meth:`add_dependency` (or load a spec with
    :func:`mpiwf.spec.load`), then :meth:`validate`. Sets may be added while a run is
    going on (adaptive workflows); ids of existing tasks never change.

    Example:
        >>> wf = Workflow("demo")
        >>> sim = wf.add_set("sim", n=4, kernel="sleep", args=(0.1,))
        >>> agg = wf.add_set("agg", kernel="noop", after=["sim"])
        >>> wf.ntasks
        5
    """

    def __init__(self, name: str = "workflow") -> None:
        self.name = name
        self.sets: list[TaskSet] = []
        self.by_name: dict[str, TaskSet] = {}
        #: (parent sid, child sid, kind) for set-level dependencies.
        self.set_deps: list[tuple[int, int, int]] = []
        #: (parent task id, child task id) for task-level edges.
        self.task_edges: list[tuple[int, int]] = []
        #: Explicit stage order (lists of set names) or ``None`` for DAG levels.
        self.stage_order: list[list[str]] | None = None
        self.ntasks = 0
        self._offsets: list[int] = []

    # ------------------------------------------------------------------ building
    def add_set(
        self,
        name: str,
        n: int = 1,
        kernel: str = "noop",
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        ranks: int = 1,
        cores: int = 1,
        gpus: int = 0,
        duration: float | None = None,
        duration_dist: dict[str, Any] | None = None,
        stage: int | None = None,
        retries: int = 0,
        timeout: float | None = None,
        isolate: bool = False,
        inputs: bool = False,
        after: Iterable[str] = (),
        after_each: Iterable[str] = (),
        path: str | None = None,
    ) -> TaskSet:
        """Add a task set and its dependencies on sets already present.

        Args:
            name: unique name.
            n: number of tasks.
            kernel: registry name or ``module:function``.
            args, kwargs: kernel arguments.
            ranks, cores, gpus: request of one task.
            duration: estimate in seconds; by default the first argument of the
                built-in ``sleep``/``spin`` kernels, else 0.
            duration_dist, stage, retries, timeout, isolate, inputs: see
                :class:`TaskSet`.
            after: sets every task of this set waits for (all-to-all).
            after_each: sets of the same size whose task ``i`` this set's task ``i``
                waits for (one-to-one).
            path: field path used in error messages (the spec loader sets it).

        Returns:
            The new :class:`TaskSet`.

        Raises:
            SpecError: a field is invalid; the message names it.
        """
        p = path if path is not None else f"sets.{name}"
        if not isinstance(name, str) or not name or not _NAME.match(name) \
                or name != name.strip():
            raise SpecError(f"{p}.name", f"invalid set name {name!r} (ASCII letters, digits, "
                            "'_.:+-' and inner spaces)")
        if name in self.by_name:
            raise SpecError(f"{p}.name", f"duplicate set name {name!r}")
        n = _check_int(f"{p}.n", n, 1, MAX_TASKS)
        if self.ntasks + n > MAX_TASKS:
            raise SpecError(f"{p}.n", f"workflow would hold more than {MAX_TASKS} tasks")
        ranks = _check_int(f"{p}.ranks", ranks, 1, 1_000_000)
        cores = _check_int(f"{p}.cores", cores, 0, 1_000_000)
        gpus = _check_int(f"{p}.gpus", gpus, 0, 100_000)
        if cores + gpus < 1:
            raise SpecError(f"{p}.cores", "a task must hold at least one core or one GPU")
        if not isinstance(kernel, str) or not kernel:
            raise SpecError(f"{p}.kernel", f"must be a kernel name, got {kernel!r}")
        if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
            raise SpecError(f"{p}.args", f"must be a list, got {args!r}")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise SpecError(f"{p}.kwargs", f"must be a mapping, got {kwargs!r}")
        if duration is None:
            duration = 0.0
            if kernel in ("sleep", "spin") and args and isinstance(args[0], (int, float)) \
                    and not isinstance(args[0], bool):
                duration = float(args[0])
        duration = _check_float(f"{p}.duration", duration)
        if stage is not None:
            stage = _check_int(f"{p}.stage", stage, 0, 1_000_000)
        retries = _check_int(f"{p}.retries", retries, 0, 1000)
        if timeout is not None:
            timeout = _check_float(f"{p}.timeout", timeout)
            if timeout == 0:
                raise SpecError(f"{p}.timeout", "must be > 0")
        if duration_dist is not None:
            duration_dist = _check_dist(f"{p}.duration_dist", duration_dist, duration)
        after = list(after)
        after_each = list(after_each)
        for field, refs in (("after", after), ("after_each", after_each)):
            for i, ref in enumerate(refs):
                if not isinstance(ref, str):
                    raise SpecError(f"{p}.{field}[{i}]", f"must be a set name, got {ref!r}")
                if ref not in self.by_name:
                    raise SpecError(f"{p}.{field}[{i}]", f"unknown set {ref!r}"
                                    + (" (a set cannot wait for itself)" if ref == name
                                       else " (sets must be declared before their "
                                       "dependents)"))
                if field == "after_each" and self.by_name[ref].n != n:
                    raise SpecError(f"{p}.after_each[{i}]", f"one-to-one dependency on "
                                    f"{ref!r} needs the same n ({self.by_name[ref].n} != {n})")
        ts = TaskSet(name=name, n=n, kernel=kernel, args=tuple(args), kwargs=dict(kwargs or {}),
                     ranks=ranks, cores=cores, gpus=gpus, duration=duration,
                     duration_dist=duration_dist, stage=stage, retries=retries,
                     timeout=timeout, isolate=bool(isolate), inputs=bool(inputs),
                     sid=len(self.sets), offset=self.ntasks)
        self.sets.append(ts)
        self.by_name[name] = ts
        self._offsets.append(ts.offset)
        self.ntasks += n
        for ref in after:
            self.set_deps.append((self.by_name[ref].sid, ts.sid, DEP_ALL))
        for ref in after_each:
            self.set_deps.append((self.by_name[ref].sid, ts.sid, DEP_ONE))
        return ts

    def add_dependency(self, parent: str, child: str, kind: str = "all") -> None:
        """Make set ``child`` wait for set ``parent`` (``kind`` ``all`` or ``one``).

        Raises:
            SpecError: unknown set, unknown kind, sizes differ for ``one``, or the edge
                closes a cycle.
        """
        if kind not in DEP_KINDS:
            raise SpecError("deps.kind", f"unknown dependency kind {kind!r} (all or one)")
        for ref in (parent, child):
            if ref not in self.by_name:
                raise SpecError("deps", f"unknown set {ref!r}")
        a, b = self.by_name[parent], self.by_name[child]
        if kind == "one" and a.n != b.n:
            raise SpecError("deps", f"one-to-one dependency {parent!r} -> {child!r} needs the "
                            f"same n ({a.n} != {b.n})")
        self.set_deps.append((a.sid, b.sid, DEP_KINDS[kind]))
        cyc = self.find_cycle()
        if cyc:
            self.set_deps.pop()
            raise SpecError("deps", "dependency cycle: " + " -> ".join(cyc))

    def add_edge(self, parent: str | int, child: str | int) -> None:
        """A task-level edge; tasks are ids or names (``set`` or ``set[i]``)."""
        a, b = self.task_id(parent), self.task_id(child)
        if a == b:
            raise SpecError("edges", f"task {self.task_name(a)!r} cannot wait for itself")
        self.task_edges.append((a, b))

    def set_stage_order(self, stages: Sequence[Sequence[str]]) -> None:
        """Declare the stage order (every set exactly once); checked by :meth:`validate`."""
        self.stage_order = [list(s) for s in stages]

    # ------------------------------------------------------------------ lookups
    def set_of(self, tid: int) -> TaskSet:
        """The set a task id belongs to."""
        return self.sets[bisect.bisect_right(self._offsets, tid) - 1]

    def task_name(self, tid: int) -> str:
        """``set`` for a set of one task, else ``set[i]``."""
        ts = self.set_of(tid)
        return ts.name if ts.n == 1 else f"{ts.name}[{tid - ts.offset}]"

    def task_id(self, ref: str | int) -> int:
        """The id of a task given as id, ``set`` (n = 1) or ``set[i]``.

        Raises:
            SpecError: no such task.
        """
        if isinstance(ref, int) and not isinstance(ref, bool):
            if 0 <= ref < self.ntasks:
                return ref
            raise SpecError("edges", f"no task with id {ref}")
        if not isinstance(ref, str):
            raise SpecError("edges", f"a task is named 'set' or 'set[i]', got {ref!r}")
        if ref in self.by_name:
            ts = self.by_name[ref]
            if ts.n != 1:
                raise SpecError("edges", f"set {ref!r} has {ts.n} tasks: name one as "
                                f"'{ref}[i]'")
            return ts.offset
        m = _TASK_REF.match(ref)
        if m and m.group("set") in self.by_name:
            ts = self.by_name[m.group("set")]
            i = int(m.group("index"))
            if i < ts.n:
                return ts.offset + i
            raise SpecError("edges", f"task {ref!r}: set {ts.name!r} has only {ts.n} tasks")
        raise SpecError("edges", f"unknown task {ref!r}")

    # ------------------------------------------------------------------ structure
    def set_graph(self) -> tuple[list[list[int]], list[list[int]]]:
        """Children and parents of every set (set deps and task edges projected)."""
        ns = len(self.sets)
        children: list[set[int]] = [set() for _ in range(ns)]
        parents: list[set[int]] = [set() for _ in range(ns)]
        for a, b, _k in self.set_deps:
            children[a].add(b)
            parents[b].add(a)
        for ta, tb in self.task_edges:
            a, b = self.set_of(ta).sid, self.set_of(tb).sid
            if a != b:
                children[a].add(b)
                parents[b].add(a)
        return [sorted(c) for c in children], [sorted(p) for p in parents]

    def find_cycle(self) -> list[str] | None:
        """Names along one dependency cycle (closed: first == last), or ``None``."""
        if any(self.set_of(ta).sid == self.set_of(tb).sid for ta, tb in self.task_edges):
            # edges inside one set: check the task graph itself
            adj: dict[int, list[int]] = {}
            for ta, tb in self.task_edges:
                adj.setdefault(ta, []).append(tb)
            cyc = _cycle(list(adj), lambda t: adj.get(t, []))
            if cyc:
                return [self.task_name(t) for t in cyc]
        children, _ = self.set_graph()
        cyc = _cycle(range(len(self.sets)), lambda s: children[s])
        return [self.sets[s].name for s in cyc] if cyc else None

    def topo_order(self) -> list[int]:
        """Set ids in a topological order (parents first)."""
        children, parents = self.set_graph()
        indeg = [len(p) for p in parents]
        order = [s for s in range(len(self.sets)) if indeg[s] == 0]
        i = 0
        while i < len(order):
            for c in children[order[i]]:
                indeg[c] -= 1
                if indeg[c] == 0:
                    order.append(c)
            i += 1
        if len(order) != len(self.sets):
            cyc = self.find_cycle() or []
            raise SpecError("deps", "dependency cycle: " + " -> ".join(cyc))
        return order

    def levels(self) -> list[int]:
        """DAG level of every set: the longest edge count from a source."""
        _, parents = self.set_graph()
        lev = [0] * len(self.sets)
        for s in self.topo_order():
            lev[s] = max((lev[p] + 1 for p in parents[s]), default=0)
        return lev

    def stages(self) -> list[int]:
        """Stage index of every set: the declared order, explicit ``stage`` fields, or
        the DAG level (in that order of precedence), renumbered densely from 0."""
        if self.stage_order is not None:
            st = [-1] * len(self.sets)
            for k, names in enumerate(self.stage_order):
                for nm in names:
                    st[self.by_name[nm].sid] = k
            # sets added after the order was declared go after their parents
            lev = self.levels()
            _, parents = self.set_graph()
            for s in self.topo_order():
                if st[s] < 0:
                    st[s] = max([st[p] + 1 for p in parents[s]] + [lev[s]])
            return st
        lev = self.levels()
        raw = [ts.stage if ts.stage is not None else lev[ts.sid] for ts in self.sets]
        dense = {v: i for i, v in enumerate(sorted(set(raw)))}
        return [dense[v] for v in raw]

    def bottom_levels(self) -> list[float]:
        """Critical-path priority of every set: its duration plus the longest chain of
        durations after it (the "upward rank"), or its ``lookahead`` if longer."""
        children, _ = self.set_graph()
        bl = [0.0] * len(self.sets)
        for s in reversed(self.topo_order()):
            ts = self.sets[s]
            bl[s] = ts.duration + max([bl[c] for c in children[s]] + [ts.lookahead])
        return bl

    # ------------------------------------------------------------------ checks
    def validate(self, capacity: Sequence[tuple[int, int, int]] | None = None,
                 check_kernels: bool = True) -> Workflow:
        """Check the whole workflow before any launch.

        Args:
            capacity: per node ``(workers, cores, gpus)`` of the machine it will run
                on; every request must fit at least one node (multi-rank tasks may
                span nodes). ``None`` skips the check.
            check_kernels: resolve every kernel reference.

        Returns:
            ``self``, for chaining.

        Raises:
            SpecError: the first problem found, naming its field.
        """
        if not self.sets:
            raise SpecError("sets", "the workflow has no task sets")
        cyc = self.find_cycle()
        if cyc:
            raise SpecError("deps", "dependency cycle: " + " -> ".join(cyc))
        if self.stage_order is not None:
            seen: dict[str, int] = {}
            for k, names in enumerate(self.stage_order):
                if not names:
                    raise SpecError(f"stages[{k}]", "empty stage")
                for nm in names:
                    if nm not in self.by_name:
                        raise SpecError(f"stages[{k}]", f"unknown set {nm!r}")
                    if nm in seen:
                        raise SpecError(f"stages[{k}]", f"set {nm!r} is already in "
                                        f"stages[{seen[nm]}]")
                    seen[nm] = k
            missing = [ts.name for ts in self.sets if ts.name not in seen]
            if missing:
                raise SpecError("stages", f"sets missing from the stage order: {missing}")
        st = self.stages()
        children, _ = self.set_graph()
        for a in range(len(self.sets)):
            for b in children[a]:
                if st[a] > st[b]:
                    raise SpecError("stages", f"set {self.sets[b].name!r} is staged before "
                                    f"{self.sets[a].name!r}, which it depends on")
        if check_kernels:
            from .kernels import resolve
            for ts in self.sets:
                resolve(ts.kernel, path=f"sets.{ts.name}.kernel")
        if capacity is not None:
            check_fits(self.sets, capacity)
        return self

    def scaled(self, factor: float) -> Workflow:
        """Scale every duration estimate and the seconds of ``sleep``/``spin`` tasks."""
        if not factor > 0:
            raise SpecError("time_scale", f"must be > 0, got {factor}")
        from .kernels import scalable
        for ts in self.sets:
            ts.duration *= factor
            if scalable(ts.kernel) and ts.args and isinstance(ts.args[0], (int, float)):
                ts.args = (ts.args[0] * factor, *ts.args[1:])
        return self

    def describe(self) -> list[dict[str, Any]]:
        """One plain dict per set (for traces and JSON output)."""
        st = self.stages()
        lev = self.levels()
        return [dict(sid=ts.sid, name=ts.name, n=ts.n, kernel=ts.kernel, ranks=ts.ranks,
                     cores=ts.cores, gpus=ts.gpus, duration=ts.duration, stage=st[ts.sid],
                     level=lev[ts.sid], offset=ts.offset) for ts in self.sets]


def _cycle(roots: Iterable[int], children: Callable[[int], Sequence[int]]) -> list[int] | None:
    """One cycle of a directed graph (closed: first == last) by iterative DFS, or ``None``."""
    color: dict[int, int] = {}  # 1 on the current path, 2 finished
    for root in roots:
        if color.get(root):
            continue
        stack = [(root, 0)]
        path: list[int] = []
        while stack:
            node, i = stack.pop()
            if i == 0:
                color[node] = 1
                path.append(node)
            kids = children(node)
            if i < len(kids):
                stack.append((node, i + 1))
                c = kids[i]
                if color.get(c) == 1:
                    return path[path.index(c):] + [c]
                if not color.get(c):
                    stack.append((c, 0))
            else:
                color[node] = 2
                path.pop()
    return None


def check_fits(sets: Iterable[TaskSet], capacity: Sequence[tuple[int, int, int]]) -> None:
    """Raise :class:`SpecError` for a set whose request no node can ever satisfy.

    Args:
        sets: the sets to check.
        capacity: per node ``(workers, cores, gpus)``.
    """
    if not capacity:
        raise SpecError("layout", "the machine has no workers")
    for ts in sets:
        r, c, g = ts.request
        if any(w >= r and cc >= c and gg >= g for w, cc, gg in capacity):
            continue
        if r > 1 and sum(w for w, _, _ in capacity) >= r \
                and sum(cc for _, cc, _ in capacity) >= c and sum(gg for _, _, gg in capacity) >= g:
            continue  # a multi-rank task may span nodes
        best = max(capacity, key=lambda t: (t[2], t[1], t[0]))
        raise SpecError(f"sets.{ts.name}", f"asks for ranks={r} cores={c} gpus={g} but the "
                        f"largest node has {best[0]} workers, {best[1]} cores, {best[2]} GPUs")

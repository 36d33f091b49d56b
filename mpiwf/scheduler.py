"""The asynchronicity scheduler: a pure state machine (no MPI, no clock).

Events in (:meth:`Scheduler.task_done`, :meth:`~Scheduler.task_failed`,
:meth:`~Scheduler.worker_lost`, :meth:`~Scheduler.tasks_added`), decisions out
(:meth:`Scheduler.schedule` returns ``(task, gang)`` pairs). The master drives it in
real time and the simulator on a virtual clock; both set :attr:`Scheduler.now`
before an event so the scheduler can stamp when tasks became ready.

Policy:

* **Asynchronicity** is the stage *window*: 0 = async (only dependencies
  constrain), 1 = sequential (a stage starts when the previous one has wholly
  finished), K = at most K consecutive stages in flight (``doa=K``).
* **Order**: ready work is taken by critical-path priority (the set's duration plus
  the longest chain of durations after it), first-ready first among equals. A task
  that cannot be placed yet does not block smaller ones that can (backfilling
  without reservation).
* **Placement**: a task's gang is found on one node: GPU workers for its GPUs, then
  CPU-only workers for its cores, then the cores of GPU workers if still short
  (CPU work prefers CPU-only workers, so GPUs stay free for GPU work). *Short* tasks
  (one worker, estimate <= ``short_task``) may be prefetched: a worker holds up to
  ``1 + prefetch`` of them, or, with ``batch`` > ``prefetch``, up to ``lookahead``
  seconds of them (at most ``1 + batch``); a set without an estimate (duration 0)
  at most ``1 + UNKNOWN_BATCH``, as its tasks may well be long.

Every event's cost is independent of the DAG size: dependencies are counted per set
(``all``) or per task (``one`` and task edges), ready work is kept as id ranges per
set in a heap per request class, and the resource ledger is kept per node.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .errors import RunError
from .resources import WorkerSpec
from .workflow import DEP_ALL, DEP_ONE, Workflow

# Task states (one byte each).
PENDING, READY, DISPATCHED, RUNNING, DONE, FAILED, SKIPPED, CANCELLED = range(8)
_DISPATCHED = bytes((DISPATCHED,))
_DONE = bytes((DONE,))
STATE_NAMES = ("pending", "ready", "dispatched", "running", "done", "failed", "skipped",
               "cancelled")
TERMINAL = frozenset((DONE, FAILED, SKIPPED, CANCELLED))
#: Deepest window of a short set with no duration estimate (see Scheduler's ``batch``).
UNKNOWN_BATCH = 256

#: The only legal task-state transitions.
TRANSITIONS: frozenset[tuple[int, int]] = frozenset({
    (PENDING, READY), (PENDING, SKIPPED), (PENDING, CANCELLED),
    (READY, DISPATCHED), (READY, CANCELLED),
    (DISPATCHED, RUNNING), (DISPATCHED, READY), (DISPATCHED, CANCELLED),
    (RUNNING, DONE), (RUNNING, FAILED), (RUNNING, READY), (RUNNING, CANCELLED),
})
_ALLOWED = [[(a, b) in TRANSITIONS for b in range(8)] for a in range(8)]


class TransitionError(RunError):
    """An illegal task-state transition (a bug in the driver or the scheduler)."""


class Scheduler:
    """Ready queues, resource ledger and policy for one workflow on one set of workers.

    Args:
        workflow: the (validated) workflow; sets may be added later, see
            :meth:`tasks_added`.
        workers: the workers; decisions name them by index in this sequence.
        window: 0 async, 1 sequential, K for ``doa=K``.
        prefetch: extra short tasks a busy worker may hold.
        short_task: estimate (s) up to which a one-worker task is *short*.
        validate: check every invariant after every event (slow; tests).
        batch: when larger than ``prefetch``, a worker may hold up to ``1 + batch``
            short tasks of a set whose estimate is tiny: as many as ``lookahead``
            seconds of its work (never fewer than ``1 + prefetch``). Null and
            microsecond tasks then travel many per message. 0 turns this off. A
            set with no estimate (duration 0) gets at most ``UNKNOWN_BATCH``: one
            worker holding a deep window of tasks that turn out long would run the
            whole tail alone.
        lookahead: seconds of queued short work a worker may hold (see ``batch``).

    Attributes:
        now: the driver's clock, stamped into :attr:`ready_at`.
        ready_at: per task, the time it became ready (0.0 before).
    """

    def __init__(self, workflow: Workflow, workers: Sequence[WorkerSpec], window: int = 0,
                 prefetch: int = 0, short_task: float = 0.0, validate: bool = False,
                 batch: int = 0, lookahead: float = 1e-3) -> None:
        if window < 0:
            raise ValueError("window must be >= 0")
        if not workers:
            raise RunError("no workers to schedule on")
        self.wf = workflow
        self.workers = list(workers)
        self.window = window
        self.prefetch = prefetch
        self.cap = 1 + prefetch         # largest per-worker window of any class
        self.batch = batch
        self.lookahead = lookahead
        self.short_task = short_task
        self.validate = validate
        self.now = 0.0
        # ---- per task
        self.state = bytearray()
        self.npend: list[int] = []
        self.ready_at = np.empty(0)
        #: set by a driver that records ready times as runs (a flat ``array('d')``
        #: of first task, end, time triples, appended to at each stamp), or None
        self.ready_log: Any = None
        #: attempt number of each task's current try (absent: 0). A retry and a re-run
        #: after a lost worker both take a new number, so a late report of the old try
        #: is told apart from the new one's
        self.attempts: dict[int, int] = {}
        #: attempts not charged to the task's retries (re-runs after a lost worker)
        self.uncharged: dict[int, int] = {}
        self.running: dict[int, tuple[int, ...]] = {}
        # ---- per set
        self.s_n: list[int] = []
        self.s_off: list[int] = []
        self.s_stage: list[int] = []
        self.s_prio: list[float] = []
        self.s_cls: list[int] = []
        self.s_wait: list[int] = []     # unfinished all-to-all parent sets
        self.s_left: list[int] = []     # non-terminal tasks
        self.s_taskdeps: list[bool] = []
        self.s_dead: list[bool] = []    # a task failed: all-to-all children are skipped
        self.s_queued: list[bool] = []
        self.s_ready: list[deque[list[int]]] = []
        self.s_children_all: list[list[int]] = []
        self.s_children_one: list[list[int]] = []
        self.s_retries: list[int] = []
        self.edge_children: dict[int, list[int]] = {}
        # ---- request classes: (ranks, cores, gpus, short) -> index
        self.cls_key: list[tuple[int, int, int, bool]] = []
        self.cls_index: dict[tuple[int, int, int, bool, int], int] = {}
        self.cls_heap: list[list[tuple[float, int, int]]] = []
        self.cls_cap: list[int] = []    # per class: most tasks a worker may hold
        self.seq = 0
        # ---- stages
        self.stage_left: list[int] = []
        self.stage_lo = 0
        self.held: dict[int, list[tuple[int, int, int]]] = {}
        # ---- resume: tasks recorded done not counted done yet (not ready yet), the
        # ready ones waiting to be counted, and how many have been (see mark_done)
        self.resume_left: set[int] = set()
        self.n_resumed = 0
        self._resuming = False
        self._resume_queue: deque[int] = deque()
        # ---- ledger
        nodes = sorted({w.node for w in self.workers})
        self.node_ids = nodes
        nidx = {nd: i for i, nd in enumerate(nodes)}
        self.w_node = [nidx[w.node] for w in self.workers]
        self.w_cores = [w.cores for w in self.workers]
        self.w_gpus = [w.gpus for w in self.workers]
        self.w_kind = [1 if w.gpus else 0 for w in self.workers]
        self.load = [0] * len(self.workers)
        self.short_mode = [False] * len(self.workers)
        self.w_cap = [0] * len(self.workers)  # window of a worker in short mode
        self.lost = [False] * len(self.workers)
        self.n_lost = 0
        nn = len(nodes)
        self.idle_cpu: list[list[int]] = [[] for _ in range(nn)]
        self.idle_gpu: list[list[int]] = [[] for _ in range(nn)]
        self.free_cores = [0] * nn
        self.free_gpus = [0] * nn
        self.free_count = [0] * nn
        self.idle_nodes: dict[int, None] = {}
        # the nodes of idle_nodes with free cores, in idle_nodes' order ((seq, node),
        # seq from when the node joined idle_nodes): a task that needs cores looks only
        # at these (on GPU nodes whose cores are all busy, idle_nodes holds every node
        # with an idle GPU worker, and a scan of them all per placement was quadratic)
        self._node_seq = [0] * nn
        self._seq_next = 0
        self.core_nodes: list[tuple[int, int]] = []
        self.room: list[dict[int, None]] = [{}, {}]
        for w in reversed(range(len(self.workers))):
            self._to_idle(w)
        self.max_single = (max(self.w_cores), max(self.w_gpus))
        # ---- counters
        self.ntasks = 0
        self.n_ready = 0
        self.n_terminal = 0
        self.n_done = 0
        self.n_failed = 0
        self.n_skipped = 0
        self.n_cancelled = 0
        self._edges_seen = 0
        self._started = False
        self._sid_lo = self._sid_hi = self._sid_last = 0
        self._add_sets(range(len(workflow.sets)))

    # ================================================================== helpers
    def _to_idle(self, w: int) -> None:
        nd = self.w_node[w]
        (self.idle_gpu if self.w_gpus[w] else self.idle_cpu)[nd].append(w)
        had = self.free_cores[nd]
        self.free_cores[nd] += self.w_cores[w]
        self.free_gpus[nd] += self.w_gpus[w]
        self.free_count[nd] += 1
        if self.free_count[nd] == 1:
            self.idle_nodes[nd] = None
            self._node_seq[nd] = self._seq_next
            self._seq_next += 1
        if not had and self.free_cores[nd]:
            bisect.insort(self.core_nodes, (self._node_seq[nd], nd))

    def _take_idle(self, w: int) -> None:
        nd = self.w_node[w]
        had = self.free_cores[nd]
        self.free_cores[nd] -= self.w_cores[w]
        self.free_gpus[nd] -= self.w_gpus[w]
        self.free_count[nd] -= 1
        if had and not self.free_cores[nd]:
            cn = self.core_nodes
            del cn[bisect.bisect_left(cn, (self._node_seq[nd], nd))]
        if self.free_count[nd] == 0:
            del self.idle_nodes[nd]

    def _class_of(self, ts: Any) -> int:
        r, c, g = ts.ranks, ts.cores, ts.gpus
        short = (self.prefetch > 0 and r == 1 and ts.duration <= self.short_task
                 and any(wc >= c and wg >= g for wc, wg in zip(self.w_cores, self.w_gpus)))
        cap = 1 + self.prefetch if short else 1
        if short and self.batch > self.prefetch:
            d = ts.duration
            deep = (min(self.batch, UNKNOWN_BATCH) if d <= 0
                    else min(self.batch, int(self.lookahead / d)))
            cap = 1 + max(self.prefetch, deep)
        k = self.cls_index.get((r, c, g, short, cap))
        if k is None:
            k = len(self.cls_key)
            self.cls_index[(r, c, g, short, cap)] = k
            self.cls_key.append((r, c, g, short))
            self.cls_heap.append([])
            self.cls_cap.append(cap)
            self.cap = max(self.cap, cap)
        return k

    def _set_state(self, tid: int, new: int) -> None:
        old = self.state[tid]
        if not _ALLOWED[old][new]:
            raise TransitionError(
                f"task {self.wf.task_name(tid)} (id {tid}): illegal transition "
                f"{STATE_NAMES[old]} -> {STATE_NAMES[new]} (attempt {self.attempts.get(tid, 0)})")
        self.state[tid] = new

    # ================================================================== structure
    def _add_sets(self, sids: Iterable[int]) -> None:
        wf = self.wf
        new = list(sids)
        if not new:
            return
        stages = wf.stages()
        prio = wf.bottom_levels()
        first_tid = self.ntasks
        for sid in new:
            ts = wf.sets[sid]
            st = max(stages[sid], self.stage_lo) if self._started else stages[sid]
            self.s_n.append(ts.n)
            self.s_off.append(ts.offset)
            self.s_stage.append(st)
            self.s_prio.append(prio[sid])
            self.s_cls.append(self._class_of(ts))
            self.s_wait.append(0)
            self.s_left.append(ts.n)
            self.s_taskdeps.append(False)
            self.s_dead.append(False)
            self.s_queued.append(False)
            self.s_ready.append(deque())
            self.s_children_all.append([])
            self.s_children_one.append([])
            self.s_retries.append(ts.retries)
            while len(self.stage_left) <= st:
                self.stage_left.append(0)
            self.stage_left[st] += ts.n
            self.ntasks += ts.n
        # priorities of existing sets may change when sets are added
        changed = False
        for sid in range(len(self.s_prio)):
            changed = changed or self.s_prio[sid] != prio[sid]
            self.s_prio[sid] = prio[sid]
        if changed:  # a queued set's heap entry still holds the priority it was pushed with
            for h in self.cls_heap:
                h[:] = [(-self.s_prio[sid], seq, sid) for _p, seq, sid in h]
                heapq.heapify(h)
        total = self.ntasks
        self.state.extend(bytes(total - first_tid))
        if self.npend:
            self.npend.extend(itertools.repeat(0, total - first_tid))
        else:  # one allocation, no temporary list (4 ms at 10^6 tasks)
            self.npend = [0] * total
        if len(self.ready_at) < total:
            grown = np.zeros(max(total, 2 * len(self.ready_at)))  # zero pages: no cost up front
            grown[:len(self.ready_at)] = self.ready_at
            self.ready_at = grown
        newset = set(new)
        dead_new: list[int] = []
        for a, b, kind in wf.set_deps:
            if b not in newset:
                continue
            if kind == DEP_ALL:
                self.s_children_all[a].append(b)
                if self.s_dead[a]:
                    dead_new.append(b)
                elif self.s_left[a] > 0:
                    self.s_wait[b] += 1
            else:
                self.s_children_one[a].append(b)
                self.s_taskdeps[b] = True
                oa, ob = self.s_off[a], self.s_off[b]
                for i in range(self.s_n[b]):
                    st_a = self.state[oa + i]
                    if st_a != DONE:
                        self.npend[ob + i] += 1
        failed_edges: list[tuple[int, int]] = []
        for ta, tb in wf.task_edges[self._edges_seen:]:
            self.edge_children.setdefault(ta, []).append(tb)
            self.s_taskdeps[wf.set_of(tb).sid] = True
            if self.state[ta] != DONE:
                self.npend[tb] += 1
                if self.state[ta] in (FAILED, SKIPPED, CANCELLED):
                    failed_edges.append((ta, tb))  # its parent will never be done
        self._edges_seen = len(wf.task_edges)
        if self._started:
            self._release_new(new, dead_new, failed_edges)

    def _release_new(self, new: list[int], dead_new: list[int],
                     failed_edges: list[tuple[int, int]]) -> None:
        for sid in dead_new:
            self._skip_set(sid)
        # one-to-one parents or edges that already failed
        for sid in new:
            for a, b, kind in self.wf.set_deps:
                if b == sid and kind == DEP_ONE:
                    oa, ob = self.s_off[a], self.s_off[b]
                    for i in range(self.s_n[b]):
                        if self.state[oa + i] in (FAILED, SKIPPED, CANCELLED) \
                                and self.state[ob + i] == PENDING:
                            self._skip_task(ob + i)
        for _ta, tb in failed_edges:
            if self.state[tb] == PENDING:
                self._skip_task(tb)
        for sid in new:
            if self.s_wait[sid] == 0 and not (self.s_dead[sid] and sid in dead_new):
                self._release_set(sid)
        self._advance_stages()

    # ================================================================== events
    def start(self) -> None:
        """Make the source tasks ready; call once before the first :meth:`schedule`."""
        if self._started:
            return
        self._started = True
        for sid in range(len(self.s_n)):
            if self.s_wait[sid] == 0:
                self._release_set(sid)
        self._advance_stages()
        if self._resume_queue:
            self._drain_resume()
        self._check()

    def tasks_added(self, sids: Iterable[int] | None = None) -> None:
        """Take sets added to the workflow since the last call (adaptive workflows).

        Args:
            sids: the new set ids; by default every set the scheduler has not seen.
        """
        if sids is None:
            sids = range(len(self.s_n), len(self.wf.sets))
        sids = [s for s in sids if s >= len(self.s_n)]
        if sids and sids != list(range(len(self.s_n), len(self.s_n) + len(sids))):
            raise ValueError("sets must be added in order")
        if not sids and len(self.wf.task_edges) > self._edges_seen:
            raise ValueError("task edges can only be added together with their sets")
        self._add_sets(sids)
        if self._resume_queue:
            self._drain_resume()
        self._check()

    def schedule(self) -> list[tuple[int, tuple[int, ...]]]:
        """Place as much ready work as the free workers allow.

        Returns:
            ``(task id, gang)`` pairs; ``gang[0]`` is the leader that runs the task,
            the others are held for it. Each task is now ``dispatched``.
        """
        return [(t, g) for lo, hi, g in self.schedule_runs() for t in range(lo, hi)]

    def schedule_runs(self) -> list[tuple[int, int, tuple[int, ...]]]:
        """:meth:`schedule` in runs: ``(lo, hi, gang)`` places tasks ``lo..hi-1`` (of
        one set) on ``gang``. Short tasks go to a worker several at a time (its fair
        share of the ready tasks, up to its window), so rank 0's cost is per run,
        not per task."""
        out: list[tuple[int, int, tuple[int, ...]]] = []
        if not self.n_ready:
            return out
        heaps = self.cls_heap
        blocked: set[int] = set()
        # a worker's share of the ready tasks (short tasks are placed a share at a
        # time, so a few ready tasks still spread over the workers)
        share = max(1, self.n_ready // max(1, len(self.workers) - self.n_lost))
        while self.n_ready:
            best = -1
            bkey: tuple[float, int, int] | None = None
            for c, h in enumerate(heaps):
                if h and c not in blocked and (bkey is None or h[0] < bkey) and self._fits(c):
                    best, bkey = c, h[0]
            if best < 0 or bkey is None:
                break
            sid = bkey[2]
            rq = self.s_ready[sid]
            short = self.cls_key[best][3]
            place, place_short = self._place, self._place_short
            running, state, validate = self.running, self.state, self.validate
            taken = 0
            while rq:
                rng = rq[0]
                tid = rng[0]
                if short:
                    placed = place_short(best, min(rng[1] - tid, share))
                    if placed is None:
                        blocked.add(best)
                        break
                    gang, m = placed
                else:
                    one = place(best)
                    if one is None:
                        blocked.add(best)
                        break
                    gang, m = one, 1
                end = tid + m
                rng[0] = end
                if end == rng[1]:
                    rq.popleft()
                if validate:
                    for t in range(tid, end):
                        self._set_state(t, DISPATCHED)
                        running[t] = gang
                elif m == 1:  # ready ranges hold only READY tasks (validate checks it)
                    state[tid] = DISPATCHED
                    running[tid] = gang
                else:
                    state[tid:end] = _DISPATCHED * m
                    running.update(dict.fromkeys(range(tid, end), gang))
                out.append((tid, end, gang))
                taken += m
            self.n_ready -= taken
            if not rq:
                heapq.heappop(heaps[best])
                self.s_queued[sid] = False
        self._check()
        return out

    def task_started(self, tid: int) -> None:
        """The worker began the task (optional; :meth:`task_done` implies it)."""
        if self.state[tid] == DISPATCHED:
            self._set_state(tid, RUNNING)

    def task_done(self, tid: int) -> None:
        """The task ended successfully: free its gang and release its dependents."""
        st = self.state[tid]
        if (st == DISPATCHED or st == RUNNING) and not self.validate:
            self.state[tid] = DONE  # both edges are legal: skip the table (hot path)
        else:
            if st == DISPATCHED:
                self._set_state(tid, RUNNING)
            self._set_state(tid, DONE)
        self._free(tid)
        self.n_done += 1
        sid = self._sid(tid)
        for c in self.s_children_one[sid]:
            ct = self.s_off[c] + (tid - self.s_off[sid])
            self.npend[ct] -= 1
            if self.npend[ct] == 0 and self.s_wait[c] == 0 and self.state[ct] == PENDING:
                self._eligible(c, ct, ct + 1)
        kids = self.edge_children.get(tid) if self.edge_children else None
        if kids:
            for ct in kids:
                self.npend[ct] -= 1
                c = self._sid(ct)
                if self.npend[ct] == 0 and self.s_wait[c] == 0 and self.state[ct] == PENDING:
                    self._eligible(c, ct, ct + 1)
        self._terminal(sid)
        if self._resume_queue:
            self._drain_resume()
        if self.validate:
            self._check()

    def tasks_done(self, tids: Sequence[int], w: int) -> bool:
        """Many successful tasks at once, all of one set and all run on worker ``w``
        alone: the same as :meth:`task_done` for each, in one step (one results
        message of null tasks is 64 of them).

        Returns:
            ``False``, with nothing changed, when the fast path does not apply (the
            tasks span sets, have per-task edges, one is not running on ``w`` alone,
            or ``validate`` is on); call :meth:`task_done` for each then.
        """
        n = len(tids)
        if not n or self.validate or self.edge_children:
            return False
        lo, hi = min(tids), max(tids)
        sid = self._sid(lo)
        if not hi < self._sid_hi:
            return False
        if len(set(tids)) != n:
            return False  # a duplicate would be freed twice
        get, pop, state = self.running.get, self.running.pop, self.state
        if hi - lo + 1 == n:
            # distinct ids filling lo..hi (a run sent as one, the common case): checked
            # and updated by C loops, not a Python step per task
            seg = state[lo:hi + 1]
            if seg.count(DISPATCHED) + seg.count(RUNNING) != n or \
                    list(map(get, range(lo, hi + 1))).count((w,)) != n:
                return False
            deque(map(pop, range(lo, hi + 1)), 0)
            state[lo:hi + 1] = _DONE * n
        else:
            for t in tids:
                g = get(t)
                if g is None or len(g) != 1 or g[0] != w or (state[t] != DISPATCHED
                                                             and state[t] != RUNNING):
                    return False
            for t in tids:
                pop(t)
                state[t] = DONE
        if not self.lost[w]:
            self._unload(w, n)
        self.n_done += n
        # one-to-one dependents, released in the order task_done would release them
        # (contiguous ones join one ready range, as _push_ready joins them anyway)
        npend, off = self.npend, self.s_off[sid]
        for c in self.s_children_one[sid]:
            delta = self.s_off[c] - off
            wait = self.s_wait[c]
            run_a = run_b = -1
            for t in tids:
                ct = t + delta
                left = npend[ct] - 1
                npend[ct] = left
                if left == 0 and wait == 0 and state[ct] == PENDING:
                    if ct == run_b:
                        run_b += 1
                        continue
                    if run_a >= 0:
                        self._eligible(c, run_a, run_b)
                    run_a, run_b = ct, ct + 1
            if run_a >= 0:
                self._eligible(c, run_a, run_b)
        self._terminal(sid, n)
        if self._resume_queue:
            self._drain_resume()
        return True

    def task_failed(self, tid: int) -> bool:
        """The task raised, timed out or was lost for good.

        Returns:
            ``True`` if it was queued again (its set has retries left), ``False`` if
            it failed for good (its dependents are then skipped).
        """
        if self.state[tid] == DISPATCHED:
            self._set_state(tid, RUNNING)
        self._free(tid)
        sid = self._sid(tid)
        att = self.attempts.get(tid, 0)
        if att - self.uncharged.get(tid, 0) < self.s_retries[sid]:
            self.attempts[tid] = att + 1
            self._set_state(tid, READY)
            self._push_ready(sid, tid, tid + 1, stamp=True)
            self._check()
            return True
        self._set_state(tid, FAILED)
        self.n_failed += 1
        self._fail_dependents(tid, sid)
        self._terminal(sid)
        if self._resume_queue:
            self._drain_resume()
        self._check()
        return False

    def requeue(self, tid: int) -> None:
        """Put a dispatched or running task back in the ready queue (its worker was
        lost). It runs again as a new attempt (a late report of the lost one is then
        ignored), not charged to the set's retries."""
        self.attempts[tid] = self.attempts.get(tid, 0) + 1
        self.uncharged[tid] = self.uncharged.get(tid, 0) + 1
        self._free(tid)
        self._set_state(tid, READY)
        self._push_ready(self._sid(tid), tid, tid + 1, stamp=True)
        self._check()

    def worker_lost(self, w: int) -> list[int]:
        """Remove worker ``w`` for good; its tasks go back to the ready queue.

        Returns:
            The ids of the re-queued tasks.
        """
        if self.lost[w]:
            return []
        hit = [t for t, g in self.running.items() if w in g]
        for t in hit:
            self.requeue(t)
        self.lost[w] = True
        self.n_lost += 1
        nd = self.w_node[w]
        lst = (self.idle_gpu if self.w_gpus[w] else self.idle_cpu)[nd]
        if w in lst:
            lst.remove(w)
            self._take_idle(w)
        self.room[self.w_kind[w]].pop(w, None)
        self._check()
        return hit

    def unplaceable(self) -> list[int]:
        """Sets with unfinished tasks that no node of the remaining workers can hold."""
        cap: dict[int, list[int]] = {}
        for w in range(len(self.workers)):
            if not self.lost[w]:
                tot = cap.setdefault(self.w_node[w], [0, 0, 0])
                tot[0] += 1
                tot[1] += self.w_cores[w]
                tot[2] += self.w_gpus[w]
        out = []
        for sid in range(len(self.s_n)):
            if self.s_left[sid] == 0:
                continue
            r, c, g, _ = self.cls_key[self.s_cls[sid]]
            if r == 1:  # one worker must hold it all
                if not any(not self.lost[w] and self.w_cores[w] >= c and self.w_gpus[w] >= g
                           for w in range(len(self.workers))):
                    out.append(sid)
            elif not any(a >= r and b >= c and d >= g for a, b, d in cap.values()):
                out.append(sid)
        return out

    def fail_set(self, sid: int) -> list[int]:
        """Give up on the pending and ready tasks of a set (e.g. it cannot be placed
        any more): they are cancelled and their dependents skipped.

        Returns:
            The cancelled task ids.
        """
        out = []
        for tid in range(self.s_off[sid], self.s_off[sid] + self.s_n[sid]):
            st = self.state[tid]
            if st in (PENDING, READY):
                if st == READY:
                    self._unready(sid, tid)
                self._set_state(tid, CANCELLED)
                self.n_cancelled += 1
                out.append(tid)
                self._fail_dependents(tid, sid)
                self._terminal(sid)
        if self._resume_queue:
            self._drain_resume()
        self._check()
        return out

    def cancel_all(self) -> list[int]:
        """Cancel every pending and ready task (stop dispatching); running ones are
        left to the driver.

        Returns:
            The cancelled task ids.
        """
        out = []
        for sid in range(len(self.s_n)):
            rq = self.s_ready[sid]
            rq.clear()
            self.s_queued[sid] = False
        for h in self.cls_heap:
            h.clear()
        self.n_ready = 0
        self.held.clear()
        for tid in range(self.ntasks):
            if self.state[tid] in (PENDING, READY):
                self.state[tid] = CANCELLED
                self.n_cancelled += 1
                out.append(tid)
                sid = self._sid(tid)
                self.s_left[sid] -= 1
                self.stage_left[self.s_stage[sid]] -= 1
                self.n_terminal += 1
        self._check()
        return out

    def mark_done(self, tids: Iterable[int]) -> int:
        """Count tasks as done without running them (resuming from a trace). Each is
        counted done once it is ready, before anything can dispatch it, so its
        dependents are released in order: at once if it is ready now, else when it
        becomes ready (its stage opens in ``sequential`` or ``doa=K`` mode, or a
        parent that runs again ends). ``resume_left`` holds those not counted yet;
        ``n_resumed`` counts those counted so far.

        Returns:
            How many were counted done now.
        """
        left = self.resume_left
        left.update(t for t in tids if 0 <= t < self.ntasks)
        before = self.n_resumed
        for sid, rq in enumerate(self.s_ready):
            if rq:
                self._take_recorded(sid)
        self._drain_resume()
        return self.n_resumed - before

    def _take_recorded(self, sid: int) -> None:
        """Take the recorded tasks out of set ``sid``'s ready ranges (in one pass over
        them: one at a time would cost a pass each) and queue them to be counted."""
        rq, left = self.s_ready[sid], self.resume_left
        keep: list[list[int]] = []
        taken: list[int] = []
        for a, b in rq:
            run = a
            for t in range(a, b):
                if t in left:
                    if run < t:
                        keep.append([run, t])
                    taken.append(t)
                    run = t + 1
            if run < b:
                keep.append([run, b])
        if not taken:
            return
        rq.clear()
        rq.extend(keep)
        self.n_ready -= len(taken)
        if not rq:
            self._unqueue(sid)
        for t in sorted(taken):
            self._to_resume(t)

    def _to_resume(self, tid: int) -> None:
        """A ready recorded task: dispatched to no worker, counted done by
        :meth:`_drain_resume` once the event that made it ready is complete."""
        self._set_state(tid, DISPATCHED)
        self.running[tid] = ()
        self._resume_queue.append(tid)

    def _eligible_resumed(self, sid: int, a: int, b: int) -> None:
        """:meth:`_eligible` on a resume: the recorded tasks of a..b-1 never join the
        ready ranges; the others are pushed as usual."""
        left = self.resume_left
        run = a
        for t in range(a, b + 1):
            if t == b or t in left:
                if run < t:
                    for u in range(run, t):
                        self._set_state(u, READY)
                    self._push_ready(sid, run, t, stamp=True)
                if t < b:
                    self.ready_at[t] = self.now
                    self._set_state(t, READY)
                    self._to_resume(t)
                run = t + 1

    def _drain_resume(self) -> None:
        if self._resuming:  # called back through task_done: the loop below goes on
            return
        self._resuming = True
        q, left, state, running = self._resume_queue, self.resume_left, self.state, \
            self.running
        try:
            while q:
                tid = q.popleft()
                if tid in left and state[tid] == DISPATCHED and running.get(tid) == ():
                    left.discard(tid)
                    self.task_done(tid)  # may queue the children it makes ready
                    self.n_resumed += 1
        finally:
            self._resuming = False

    def cancel_running(self, tid: int) -> None:
        """Record a dispatched or running task as cancelled (e.g. on shutdown)."""
        self._free(tid)
        self._set_state(tid, CANCELLED)
        self.n_cancelled += 1
        self._terminal(self._sid(tid))
        if self._resume_queue:
            self._drain_resume()

    # ================================================================== queries
    @property
    def finished(self) -> bool:
        """Every task is done, failed, skipped or cancelled."""
        return self.n_terminal == self.ntasks

    @property
    def n_running(self) -> int:
        """Tasks dispatched or running."""
        return len(self.running)

    def stalled(self) -> bool:
        """Nothing runs and nothing can be dispatched, yet tasks remain (a bug, or a
        machine that lost the workers some task needs)."""
        return not self.finished and not self.running and not self.schedule_possible()

    def held_cores(self, cores: int, gang: Sequence[int]) -> int:
        """The cores a task asking for ``cores`` holds on ``gang``: a multi-rank task
        holds its workers' cores whole (at least those it asked for)."""
        if len(gang) < 2:
            return cores
        return max(cores, sum(self.w_cores[m] for m in gang))

    def schedule_possible(self) -> bool:
        """Some ready task fits the free workers now."""
        return any(h and self._fits(c) for c, h in enumerate(self.cls_heap))

    def set_of(self, tid: int) -> int:
        """Set id of a task."""
        return self._sid(tid)

    def counts(self) -> dict[str, int]:
        """Number of tasks in each state."""
        arr = np.frombuffer(bytes(self.state), dtype=np.uint8)
        bc = np.bincount(arr, minlength=8)
        return {STATE_NAMES[i]: int(bc[i]) for i in range(8)}

    # ================================================================== internals
    def _sid(self, tid: int) -> int:
        # consecutive events mostly hit one set: remember its id range (sets are
        # only appended, so a range never changes)
        if self._sid_lo <= tid < self._sid_hi:
            return self._sid_last
        ts = self.wf.set_of(tid)
        self._sid_lo, self._sid_hi, self._sid_last = ts.offset, ts.offset + ts.n, ts.sid
        return ts.sid

    def _free(self, tid: int) -> None:
        gang = self.running.pop(tid, None)
        if gang is None:
            raise TransitionError(f"task {self.wf.task_name(tid)} (id {tid}) is not running")
        for w in gang:
            if not self.lost[w]:
                self._unload(w, 1)

    def _unload(self, w: int, k: int) -> None:
        """Worker ``w`` finished ``k`` of its tasks: idle when it holds none, back in
        the room queue when its window has room again."""
        ld = self.load[w] - k
        self.load[w] = ld
        if ld == 0:
            if self.short_mode[w]:
                self.short_mode[w] = False
                self.room[self.w_kind[w]].pop(w, None)
            self._to_idle(w)
        elif self.short_mode[w] and ld < self.w_cap[w]:
            self.room[self.w_kind[w]][w] = None

    def _fits(self, c: int) -> bool:
        r, cores, gpus, short = self.cls_key[c]
        # a task needing cores fits only nodes with free cores (see core_nodes)
        nodes = (nd for _, nd in self.core_nodes) if cores > 0 else self.idle_nodes
        if short:
            if self.idle_nodes:
                for nd in nodes:
                    if self.free_gpus[nd] >= gpus and self.free_cores[nd] >= cores:
                        return True
            room = self.room[1 if gpus else 0] if gpus else self.room[0] or self.room[1]
            return bool(room)
        for nd in nodes:
            if self.free_count[nd] >= r and self.free_cores[nd] >= cores \
                    and self.free_gpus[nd] >= gpus:
                return True
        if r > 1:  # a multi-rank task may span nodes (see _place_multinode)
            fc = fcores = fg = 0
            for nd in self.idle_nodes:
                fc += self.free_count[nd]
                fcores += self.free_cores[nd]
                fg += self.free_gpus[nd]
            return fc >= r and fcores >= cores and fg >= gpus
        return False

    def _place_short(self, c: int, want: int = 1) -> tuple[tuple[int, ...], int] | None:
        """Place up to ``want`` short tasks of class ``c`` on one worker: the gang and
        how many it took (at least 1), or None."""
        _, cores, gpus, _ = self.cls_key[c]
        capc = self.cls_cap[c]
        wc, wg, load = self.w_cores, self.w_gpus, self.load
        # CPU work: idle CPU worker, then a CPU worker with room, then GPU workers.
        order = ((1, True), (1, False)) if gpus else \
            ((0, True), (0, False), (1, True), (1, False))
        for kind, idle in order:
            if idle:
                for nd in self.idle_nodes:
                    lst = (self.idle_gpu if kind else self.idle_cpu)[nd]
                    if lst and wc[lst[-1]] >= cores and wg[lst[-1]] >= gpus:
                        w = lst.pop()
                        self._take_idle(w)
                        return (w,), self._fill_idle(w, kind, capc, want)
                    break  # fast path: the first node with idle workers only
            else:
                room = self.room[kind]
                for w in room:
                    if wc[w] >= cores and wg[w] >= gpus and load[w] < capc:
                        return (w,), self._fill_room(w, room, capc, want)
                    break
        # slow path: any idle worker of any node that covers the request (a request
        # for cores: of a node with free cores, in the same order)
        for nd in ([nd for _, nd in self.core_nodes] if cores > 0 else list(self.idle_nodes)):
            for lst in ((self.idle_gpu[nd],) if gpus else (self.idle_cpu[nd], self.idle_gpu[nd])):
                for i in range(len(lst) - 1, -1, -1):
                    w = lst[i]
                    if wc[w] >= cores and wg[w] >= gpus:
                        lst.pop(i)
                        self._take_idle(w)
                        return (w,), self._fill_idle(w, self.w_kind[w], capc, want)
        for kind in ((1,) if gpus else (0, 1)):
            room = self.room[kind]
            for w in room:
                if wc[w] >= cores and wg[w] >= gpus and load[w] < capc:
                    return (w,), self._fill_room(w, room, capc, want)
        return None

    def _fill_idle(self, w: int, kind: int, capc: int, want: int) -> int:
        """An idle worker takes up to ``want`` short tasks (its window ``capc``)."""
        m = min(want, capc)
        self.load[w] = m
        self.w_cap[w] = capc
        if capc > 1:
            self.short_mode[w] = True
            if m < capc:
                self.room[kind][w] = None
        return m

    def _fill_room(self, w: int, room: dict[int, None], capc: int, want: int) -> int:
        """A worker with room takes up to ``want`` more, then goes to the back of the
        room queue (round robin) if it still has room."""
        load, w_cap = self.load, self.w_cap
        if capc < w_cap[w]:
            w_cap[w] = capc
        m = max(1, min(want, w_cap[w] - load[w]))
        ld = load[w] + m
        load[w] = ld
        del room[w]
        if ld < w_cap[w]:
            room[w] = None
        return m

    def _place(self, c: int) -> tuple[int, ...] | None:
        r, cores, gpus, _ = self.cls_key[c]
        wc, wg = self.w_cores, self.w_gpus
        # nodes with free cores, in the order of idle_nodes (for a task needing none,
        # every idle node); the loop returns right after the one change it makes
        nodes = (nd for _, nd in self.core_nodes) if cores > 0 else self.idle_nodes
        for nd in nodes:
            if self.free_count[nd] < r or self.free_cores[nd] < cores \
                    or self.free_gpus[nd] < gpus:
                continue
            gl, cl = self.idle_gpu[nd], self.idle_cpu[nd]
            gang: list[int] = []
            cc = gg = 0
            while gg < gpus and gl:
                w = gl.pop()
                gang.append(w)
                cc += wc[w]
                gg += wg[w]
            while (cc < cores or len(gang) < r) and cl:
                w = cl.pop()
                gang.append(w)
                cc += wc[w]
            while (cc < cores or len(gang) < r) and gl:
                w = gl.pop()
                gang.append(w)
                cc += wc[w]
                gg += wg[w]
            if cc < cores or gg < gpus or len(gang) < r:
                for w in reversed(gang):
                    (gl if wg[w] else cl).append(w)
                continue
            for w in gang:
                self._take_idle(w)
                self.load[w] = 1
            return tuple(gang)
        if r > 1:
            return self._place_multinode(r, cores, gpus)
        return None

    def _place_multinode(self, r: int, cores: int, gpus: int) -> tuple[int, ...] | None:
        """A multi-rank task that fits no single node may span nodes."""
        if sum(self.free_count[nd] for nd in self.idle_nodes) < r:
            return None
        gang: list[int] = []
        cc = gg = 0
        nodes = list(self.idle_nodes)
        # the single-node policy across nodes: GPU workers for the GPUs, then
        # CPU-only workers, then the cores of GPU workers (GPUs stay free for GPU work)
        for nd in nodes:
            for w in self.idle_gpu[nd]:
                if gg >= gpus:
                    break
                gang.append(w)
                cc += self.w_cores[w]
                gg += self.w_gpus[w]
        taken = set(gang)
        for pool in (self.idle_cpu, self.idle_gpu):
            for nd in nodes:
                for w in pool[nd]:
                    if len(gang) >= r and cc >= cores:
                        break
                    if w in taken:
                        continue
                    gang.append(w)
                    cc += self.w_cores[w]
                    gg += self.w_gpus[w]
        if len(gang) < r or cc < cores or gg < gpus:
            return None
        for w in gang:
            nd = self.w_node[w]
            (self.idle_gpu if self.w_gpus[w] else self.idle_cpu)[nd].remove(w)
            self._take_idle(w)
            self.load[w] = 1
        return tuple(gang)

    def _eligible(self, sid: int, a: int, b: int) -> None:
        """Tasks a..b-1 of set sid have their dependencies done."""
        st = self.s_stage[sid]
        if self.window and st >= self.stage_lo + self.window:
            hs = self.held.setdefault(st, [])
            if hs and hs[-1][0] == sid and hs[-1][2] == a:
                hs[-1] = (sid, hs[-1][1], b)  # contiguous: one range
            else:
                hs.append((sid, a, b))
            return
        left = self.resume_left
        if left and (any(t in left for t in range(a, b)) if b - a <= len(left)
                     else any(a <= t < b for t in left)):
            self._eligible_resumed(sid, a, b)  # a resumed run: recorded tasks never run
            return
        if self.validate:
            for tid in range(a, b):
                self._set_state(tid, READY)
        else:  # callers only pass pending tasks: no need to check each transition
            self.state[a:b] = bytes((READY,)) * (b - a)
        self._push_ready(sid, a, b, stamp=True)

    def _push_ready(self, sid: int, a: int, b: int, stamp: bool) -> None:
        if stamp:
            self.ready_at[a:b] = self.now
            if self.ready_log is not None:
                self.ready_log.extend((a, b, self.now))
        rq = self.s_ready[sid]
        if rq and rq[-1][1] == a:
            rq[-1][1] = b  # contiguous with the last range: one longer run to place
        else:
            rq.append([a, b])
        self.n_ready += b - a
        if not self.s_queued[sid]:
            self.s_queued[sid] = True
            heapq.heappush(self.cls_heap[self.s_cls[sid]], (-self.s_prio[sid], self.seq, sid))
            self.seq += 1

    def _unqueue(self, sid: int) -> None:
        """Set ``sid`` has no ready range left: out of its class heap."""
        if self.s_queued[sid]:
            h = self.cls_heap[self.s_cls[sid]]
            h[:] = [e for e in h if e[2] != sid]
            heapq.heapify(h)
            self.s_queued[sid] = False

    def _unready(self, sid: int, tid: int) -> None:
        rq = self.s_ready[sid]
        for rng in list(rq):
            if rng[0] <= tid < rng[1]:
                rq.remove(rng)
                if rng[0] < tid:
                    rq.append([rng[0], tid])
                if tid + 1 < rng[1]:
                    rq.append([tid + 1, rng[1]])
                self.n_ready -= 1
                break
        if not rq:
            self._unqueue(sid)

    def _release_set(self, sid: int) -> None:
        """All all-to-all parents of ``sid`` are done: its pending tasks whose own
        parents are done become ready. (A set that lost a task to a failed one-to-one
        parent still runs its other tasks; a set skipped whole has none pending.)"""
        a, n = self.s_off[sid], self.s_n[sid]
        if not self.s_taskdeps[sid]:
            if self.state[a:a + n].count(PENDING) == n:
                self._eligible(sid, a, a + n)
                return
        npend, state = self.npend, self.state
        run = -1
        for tid in range(a, a + n):
            ok = npend[tid] == 0 and state[tid] == PENDING
            if ok and run < 0:
                run = tid
            elif not ok and run >= 0:
                self._eligible(sid, run, tid)
                run = -1
        if run >= 0:
            self._eligible(sid, run, a + n)

    def _terminal(self, sid: int, n: int = 1) -> None:
        self.n_terminal += n
        self.s_left[sid] -= n
        st = self.s_stage[sid]
        self.stage_left[st] -= n
        if self.s_left[sid] == 0 and not self.s_dead[sid]:
            for c in self.s_children_all[sid]:
                self.s_wait[c] -= 1
                if self.s_wait[c] == 0:
                    self._release_set(c)
        if st == self.stage_lo and self.stage_left[st] == 0:
            self._advance_stages()

    def _advance_stages(self) -> None:
        old_hi = self.stage_lo + self.window if self.window else None
        while self.stage_lo < len(self.stage_left) and self.stage_left[self.stage_lo] == 0:
            self.stage_lo += 1
        if old_hi is None or not self.held:
            return
        new_hi = self.stage_lo + self.window
        for st in sorted(k for k in self.held if k < new_hi):
            for sid, a, b in self.held.pop(st):
                if self.state[a:b].count(PENDING) == b - a:
                    self._eligible(sid, a, b)
                else:
                    for tid in range(a, b):
                        if self.state[tid] == PENDING:
                            self._eligible(sid, tid, tid + 1)

    def _fail_dependents(self, tid: int, sid: int) -> None:
        if not self.s_dead[sid]:
            self.s_dead[sid] = True
            for c in self.s_children_all[sid]:
                self._skip_set(c)
        for c in self.s_children_one[sid]:
            ct = self.s_off[c] + (tid - self.s_off[sid])
            if self.state[ct] == PENDING:
                self._skip_task(ct)
        for ct in self.edge_children.get(tid, ()):
            if self.state[ct] == PENDING:
                self._skip_task(ct)

    def _skip_set(self, sid: int) -> None:
        if self.s_dead[sid] and self.s_left[sid] == 0:
            return
        a = self.s_off[sid]
        for tid in range(a, a + self.s_n[sid]):
            if self.state[tid] == PENDING:
                self._skip_task(tid)

    def _skip_task(self, tid: int) -> None:
        self._set_state(tid, SKIPPED)
        self.n_skipped += 1
        sid = self._sid(tid)
        self._fail_dependents(tid, sid)
        self._terminal(sid)

    # ================================================================== invariants
    def _check(self) -> None:
        if not self.validate:
            return
        check_invariants(self)


def check_invariants(s: Scheduler) -> None:
    """Raise ``AssertionError`` when the scheduler's bookkeeping disagrees with itself."""
    counts = s.counts()
    assert counts["ready"] == s.n_ready, (counts, s.n_ready)
    assert counts["done"] == s.n_done
    assert counts["failed"] == s.n_failed
    assert counts["skipped"] == s.n_skipped
    assert counts["cancelled"] == s.n_cancelled
    assert s.n_terminal == s.n_done + s.n_failed + s.n_skipped + s.n_cancelled
    assert counts["dispatched"] + counts["running"] == len(s.running)
    nready = 0
    for sid, rq in enumerate(s.s_ready):
        for a, b in rq:
            assert a < b
            assert all(s.state[t] == READY for t in range(a, b)), (sid, a, b)
            assert s.s_off[sid] <= a and b <= s.s_off[sid] + s.s_n[sid]
            nready += b - a
        assert bool(rq) == s.s_queued[sid] or not rq
    assert nready == s.n_ready
    for sid in range(len(s.s_n)):
        a = s.s_off[sid]
        left = sum(1 for t in range(a, a + s.s_n[sid]) if s.state[t] not in TERMINAL)
        assert left == s.s_left[sid], (sid, left, s.s_left[sid])
    load = [0] * len(s.workers)
    for tid, gang in s.running.items():
        assert s.state[tid] in (DISPATCHED, RUNNING)
        for w in gang:
            load[w] += 1
    for w in range(len(s.workers)):
        if not s.lost[w]:
            assert load[w] == s.load[w], (w, load[w], s.load[w])
            assert load[w] <= s.cap
            if s.short_mode[w]:
                assert load[w] <= s.w_cap[w], (w, load[w], s.w_cap[w])
    for nd in range(len(s.node_ids)):
        idle = s.idle_cpu[nd] + s.idle_gpu[nd]
        assert len(set(idle)) == len(idle)
        assert all(s.load[w] == 0 and not s.lost[w] for w in idle)
        assert s.free_count[nd] == len(idle)
        assert s.free_cores[nd] == sum(s.w_cores[w] for w in idle)
        assert s.free_gpus[nd] == sum(s.w_gpus[w] for w in idle)
        assert (nd in s.idle_nodes) == (len(idle) > 0)
    # core_nodes: the idle nodes with free cores, in idle_nodes' order
    assert [nd for _, nd in s.core_nodes] == [nd for nd in s.idle_nodes if s.free_cores[nd]]
    assert s.core_nodes == sorted(s.core_nodes)
    for gang in s.running.values():
        if len(gang) > 1:
            assert all(s.load[w] == 1 or s.lost[w] for w in gang)

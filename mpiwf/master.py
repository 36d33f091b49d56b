"""Rank 0: drive the scheduler in real time and move messages; nothing else.

The loop: ask the scheduler for decisions, send each worker its tasks in one
nonblocking message (set definitions go once per worker), take results as they
come, turn them into scheduler events and trace rows, and wait politely when there
is nothing to do. Completion callbacks may add task sets while the run goes on.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .comm import Backoff, Endpoint
from .config import Config
from .errors import RunError
from .protocol import PLAIN_COLUMNS, STATUS_CANCELLED, STATUS_OK, STATUS_TIMEOUT, Tag, setdef
from .resources import WorkerSpec
from .scheduler import CANCELLED, DONE, FAILED, SKIPPED, Scheduler
from .trace import BATCH_DTYPE, LOG_DTYPE, ROWS_PER_FLUSH, DoneBlock
from .workflow import DEP_ALL, DEP_ONE, Workflow

log = logging.getLogger("mpiwf.master")


STATUS_TIMEDOUT = 8  # trace status of an attempt that ran past its timeout
STATUS_LOST = 9  # trace status of an attempt whose worker rank died
#: Seconds rank 0 must have been idle before it writes pending trace rows at once.
IDLE_FLUSH = 0.002
#: ...unless IDLE_FLUSH_MANY results or more wait and the last flush is younger than
#: IDLE_FLUSH_GAP seconds: a flood of tiny tasks.
IDLE_FLUSH_GAP = 0.1
IDLE_FLUSH_MANY = 4096


def _alive(pid: int) -> bool:
    """Whether process ``pid`` (on this host) exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    except OSError:  # no /proc (not Linux): fall back to a signal-0 probe
        try:
            import os

            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except OSError:
            return True


@dataclasses.dataclass
class TaskEvent:
    """What a completion callback is told.

    Attributes:
        task: task id.
        name: task name.
        set: set name.
        ok: it succeeded.
        value: its return value (``None`` on failure).
        error: ``(type, message, traceback, rank, host)`` on failure.
        final: no retry follows.
        time: rank 0's clock, seconds since the run started.
    """

    task: int
    name: str
    set: str
    ok: bool
    value: Any
    error: Any
    final: bool
    time: float


@dataclasses.dataclass
class RunSummary:
    """The outcome of a run."""

    makespan: float
    tasks: int
    done: int
    failed: int
    skipped: int
    cancelled: int
    wall: float
    results: dict[int, Any]
    stop_reason: str = ""
    lost: tuple[int, ...] = ()
    failures: tuple[tuple[str, str, str, int], ...] = ()

    @property
    def ok(self) -> bool:
        """Every task succeeded."""
        return self.failed == 0 and self.skipped == 0 and self.cancelled == 0


class _Grow:
    """A float64 per-task array that grows with the workflow, 0.0 where never set.

    Zeros, not NaN: a large zeroed array is mapped zero pages, so a run of 10^6
    tasks pays for a page when its tasks first touch it, not 8 MB of faults and
    writes before the first dispatch (12 ms here, while every worker waits)."""

    def __init__(self, n: int) -> None:
        self.a = np.zeros(max(n, 16))

    def ensure(self, n: int) -> None:
        if n > len(self.a):
            b = np.zeros(max(n, 2 * len(self.a)))
            b[:len(self.a)] = self.a
            self.a = b


def _build_done(tid_a: Any, start_a: Any, dur_a: Any, meta_a: Any, logs: tuple[Any, Any],
                dispatched: np.ndarray, rank_arr: np.ndarray, t0: float,
                trace_t0: float) -> DoneBlock:
    """The ``done`` entries (a DoneBlock) of buffered successful first attempts: the
    task, start and duration columns as they arrived (written as they are), the
    ``batches`` rows of the four numbers kept per results message (entries,
    received, worker index, its clock offset), the dispatch and ready logs (flat
    ``array('d')`` triples: first task, end, time; ready times on the epoch clock)
    and the entries' span. Only per-message and per-run work: nothing per task.
    ``trace_t0``: the trace's ``start_time``."""
    tid = np.frombuffer(tid_a, dtype=np.int64)
    start = np.frombuffer(start_a, dtype=np.float64)
    dur = np.frombuffer(dur_a, dtype=np.float64)
    meta = np.frombuffer(meta_a, dtype=np.float64).reshape(-1, 4)
    counts = meta[:, 0].astype(np.int64)
    batches = np.empty(len(meta), dtype=BATCH_DTYPE)
    batches["n"] = counts
    batches["received"] = meta[:, 1]
    batches["worker"] = rank_arr[meta[:, 2].astype(np.int64)]
    # load() counts the start from the trace's start_time; the other times count
    # from t0 (the same unless a driver gave the master another clock)
    batches["offset"] = meta[:, 3] + (t0 - trace_t0)
    out = []
    for log, shift in zip(logs, (0.0, t0)):
        flat = np.frombuffer(log, dtype=np.float64).reshape(-1, 3)
        rows = np.empty(len(flat), dtype=LOG_DTYPE)
        rows["first"] = flat[:, 0]
        rows["end"] = flat[:, 1]
        rows["time"] = flat[:, 2] - shift
        out.append(rows)
    span = (float("inf"), float("-inf"))
    if len(meta):
        # the first entry of a message started first, its last ended last (a worker
        # runs them one after the other); the same clamps as load() applies
        last = np.cumsum(counts) - 1
        first = last - counts + 1
        base = meta[:, 3] + t0
        s0 = np.fmax(start[first] - base, np.take(dispatched, tid[first]) - t0)
        e0 = np.minimum(s0 + dur[first], meta[:, 1])
        s1 = np.fmax(start[last] - base, np.take(dispatched, tid[last]) - t0)
        e1 = np.minimum(s1 + dur[last], meta[:, 1])
        span = (float(np.minimum(s0, e0).min()), float(max(e0.max(), e1.max())))
    return DoneBlock(tid, start, dur, batches, out[0], out[1], span)


class Master:
    """The master of one run.

    Args:
        workflow: the validated workflow.
        config: run settings.
        endpoint: transport to the workers.
        workers: the workers (their ranks are the endpoints' ranks).
        trace: an open :class:`~mpiwf.trace.TraceWriter`, or ``None``.
        start_time: epoch seconds the run's clock starts at.
        callbacks: completion callbacks ``f(event: TaskEvent) -> None``.
        clock_offsets: per worker, its clock minus rank 0's (seconds).
    """

    def __init__(self, workflow: Workflow, config: Config, endpoint: Endpoint,
                 workers: Sequence[WorkerSpec], trace: Any = None,
                 start_time: float | None = None,
                 callbacks: Sequence[Callable[[TaskEvent], None]] = (),
                 clock_offsets: Sequence[float] | None = None,
                 skip_done: set[int] | None = None) -> None:
        self.wf = workflow
        self.cfg = config
        self.ep = endpoint
        self.workers = list(workers)
        self.trace = trace
        if start_time is None:  # the trace's clock, which its stored times count from
            start_time = getattr(trace, "start_time", None)
        self.t0 = time.time() if start_time is None else start_time
        self.callbacks = list(callbacks)
        self.offsets = list(clock_offsets or [0.0] * len(self.workers))
        self.sched = Scheduler(workflow, self.workers, window=config.window,
                               prefetch=config.prefetch, short_task=config.short_task,
                               validate=config.validate, batch=config.batch,
                               lookahead=config.lookahead)
        #: runs of tasks sent (first, end, time since t0) and made ready (epoch time),
        #: for the trace's done group: flat triples, handed over at every flush
        self._dlog: array | None = array("d") if trace is not None else None
        self.sched.ready_log = array("d") if trace is not None else None
        self.rank_of = [w.rank for w in self.workers]
        self.w_of_rank = {w.rank: i for i, w in enumerate(self.workers)}
        self.node_of = [w.node for w in self.workers]
        self.sent_sets: list[set[int]] = [set() for _ in self.workers]
        #: per task: when its set was added to the run (since t0; 0.0 for the
        #: workflow's own sets) and when it was last dispatched (epoch)
        self.created = _Grow(workflow.ntasks)
        self.dispatched = _Grow(workflow.ntasks)
        self.results: dict[int, Any] = {}
        self.keep: list[bool] = []
        self.skip_done = skip_done or set()
        self.backoff = Backoff(config.poll_spin, config.poll_max_sleep, config.poll_hot)
        self.byes: dict[int, Any] = {}
        #: live ranks that did not answer the STOP of :meth:`shutdown` in time
        self.silent: list[int] = []
        #: ranks sent their STOP (by :meth:`run` with ``stop_at_end``, or shutdown)
        self.stopped: set[int] = set()
        #: :meth:`run` STOPs the workers as soon as its loop ends, before the trace's
        #: last flush, so they leave their loops while rank 0 writes (a driver that
        #: calls :meth:`shutdown` right after the run sets it)
        self.stop_at_end = False
        self.gang_reports: dict[tuple[int, int], list[Any]] = {}
        self.stop_requested = False
        self.stop_reason = ""
        #: called once per loop turn; while it returns True the run stays open even
        #: with every task finished (a driver may still add sets: mpiwf.futures)
        self.pump: Callable[[], bool] | None = None
        # rows of successful single-rank attempts, kept as the columns they arrived
        # in until the trace flushes (see _keep_batch and _flush_rows)
        self._b_n: int = 0
        self._b_j: int = 0
        #: buffer sets a writer thread has finished with (see _flush_rows)
        self._free_bufs: queue.SimpleQueue[tuple[np.ndarray, ...]] = queue.SimpleQueue()
        #: entries handed to the trace so far; in a flush for size (_size_flush), the
        #: entries kept for the next one
        self._handed = 0
        self._aligned = False
        self._left: tuple[Any, int, int, np.ndarray] | None = None
        self._new_batch_buffers()
        self._rank_arr = np.asarray(self.rank_of, dtype=np.int32)
        if trace is not None:
            trace.pre_flush = self._flush_rows
            if not getattr(trace, "started", True):  # deferred: these sets are the run's own
                trace.nsets_at_start = len(workflow.sets)
        sink = getattr(endpoint, "sink_raw", None)
        if sink is not None:  # plain results are received straight into the buffers
            sink(Tag.RESULTS_RAW, PLAIN_COLUMNS, self._reserve)
        self.fail_fast = False
        self.force_stop = False
        self.drain_timeout = 30.0  # after a stop, wait this long for running tasks
        self._stop_at = 0.0
        self.local_pids: dict[int, int] = {}
        self.liveness_interval = 0.5
        self.lost_ranks: list[int] = []
        self.failures: list[tuple[str, str, str, int]] = []
        self._cancel_sent = False
        self._usr1 = False
        self.heartbeat_timeout = 0.0  # > 0: workers send heartbeats; silence means lost
        self.last_beat: dict[int, float] = {}
        self._last_check = 0.0
        self._update_keep()

    # ------------------------------------------------------------------ helpers
    def _update_keep(self) -> None:
        """Which sets' results must be kept (a child set wants them as inputs), and the
        parents of every input-taking set and task, indexed once so building a task's
        inputs does not scan the whole DAG."""
        wf = self.wf
        self.keep = [False] * len(wf.sets)
        self._in_sets: dict[int, list[tuple[int, int]]] = {}
        self._in_edges: dict[int, list[int]] = {}
        for a, b, kind in wf.set_deps:
            if wf.sets[b].inputs:
                self.keep[a] = True
                self._in_sets.setdefault(b, []).append((a, kind))
        for ta, tb in wf.task_edges:
            if wf.set_of(tb).inputs:
                self.keep[wf.set_of(ta).sid] = True
                self._in_edges.setdefault(tb, []).append(ta)

    def _inputs(self, tid: int) -> list[Any]:
        """The parents' values of a task whose set takes ``inputs``: every task of each
        all-to-all parent set in id order, then one-to-one parents, then task edges."""
        ts = self.wf.set_of(tid)
        res = self.results
        out: list[Any] = []
        i = tid - ts.offset
        for a, kind in self._in_sets.get(ts.sid, ()):
            pa = self.wf.sets[a]
            if kind == DEP_ALL:
                out.extend(res.get(t) for t in pa.task_ids())
            elif kind == DEP_ONE:
                out.append(res.get(pa.offset + i))
        for ta in self._in_edges.get(tid, ()):
            out.append(res.get(ta))
        return out

    def now(self) -> float:
        """Rank 0's clock, seconds since the run started."""
        return time.time() - self.t0

    def request_stop(self, reason: str, force: bool = False) -> None:
        """Stop dispatching (signal, walltime, fail-fast): queued tasks are cancelled,
        running ones drained; with ``force`` running ones are recorded cancelled and
        the loop ends at once (safe to call from a signal handler or another thread:
        it only sets flags)."""
        if not self.stop_requested:
            self._stop_at = time.monotonic()
            self.stop_requested = True
            self.stop_reason = reason
            log.warning("stopping: %s", reason)
        if force and not self.force_stop:
            self.force_stop = True
            log.warning("not waiting for running tasks: %s", reason)

    def notice_usr1(self) -> None:
        """SIGUSR1 arrived. MPICH's Hydra sends it to the surviving ranks when a process
        of the job died; batch systems send it before the walltime. The next idle poll
        checks the workers: if one is found dead it is handled as lost, otherwise the
        signal means "stop" (signal-handler safe: only sets a flag)."""
        self._usr1 = True
        self._last_check = 0.0

    # ------------------------------------------------------------------ liveness
    def _check_workers(self) -> None:
        """Idle-time liveness check (never on the per-message path): a worker rank on
        rank 0's host whose process is gone (or a zombie) is lost; its tasks are
        re-queued on the others and nothing is sent to it again."""
        found = False
        if self._usr1 and self.trace is not None:
            self.trace.flush()  # Hydra's failure notice: the kill may follow at once
        for rank in self.ep.failed:  # reported by the MPI library itself (ULFM)
            w = self.w_of_rank.get(rank)
            if w is not None and not self.sched.lost[w]:
                found = True
                self.worker_lost(w, f"the MPI library reports rank {rank} failed")
        for rank, pid in self.local_pids.items():
            w = self.w_of_rank[rank]
            if not self.sched.lost[w] and not _alive(pid):
                found = True
                self.worker_lost(w, f"process {pid} of rank {rank} is gone")
        if self.heartbeat_timeout:
            now = time.monotonic()
            for rank, seen in self.last_beat.items():
                w = self.w_of_rank[rank]
                if not self.sched.lost[w] and now - seen > self.heartbeat_timeout \
                        and not self._gang_heard(w, now):
                    found = True
                    self.worker_lost(w, f"no heartbeat from rank {rank} for "
                                     f"{now - seen:.1f} s (hung or unreachable)")
        if self._usr1:
            self._usr1 = False
            if not found:
                self.request_stop("received SIGUSR1")

    def _gang_heard(self, w: int, now: float) -> bool:
        """A silent worker in a running multi-rank task is waiting in the task's
        collective (where a heartbeat thread may not get through) while a member still
        in the task, one that has not reported, is heard from within the heartbeat
        timeout: it is not taken for hung. Members that reported (or the extra workers
        of a one-rank task, which run nothing) vouch for no one; once every member
        still in the task is silent that long, they are lost."""
        beat, rank_of, limit = self.last_beat, self.rank_of, self.heartbeat_timeout
        attempts, wf = self.sched.attempts, self.wf
        for tid, gang in self.sched.running.items():
            if len(gang) < 2 or w not in gang or wf.set_of(tid).ranks < 2:
                continue
            st = self.gang_reports.get((tid, attempts.get(tid, 0)))
            done = st[3] if st is not None else ()
            if any(m != w and rank_of[m] not in done
                   and now - beat.get(rank_of[m], -1e300) <= limit for m in gang):
                return True
        return False

    def worker_lost(self, w: int, why: str) -> list[int]:
        """Mark worker ``w`` lost: its tasks are re-queued (trace status ``lost``)."""
        rank = self.rank_of[w]
        running = {t: g for t, g in self.sched.running.items() if w in g}
        attempts = self.sched.attempts
        tried = {t: attempts.get(t, 0) for t in running}  # the lost attempts' numbers
        # and their ready times, before the re-queue stamps the next attempt's
        ready = {t: self.sched.ready_at[t] for t in running}
        now = time.time()
        self.sched.now = now  # the next attempts are ready from now on
        hit = self.sched.worker_lost(w)
        self.lost_ranks.append(rank)
        log.error("worker rank %d lost (%s); re-queued %d task(s)", rank, why, len(hit))
        for tid in hit:
            ts = self.wf.set_of(tid)
            gang = running.get(tid) or (w,)
            att = tried.get(tid, 0)
            # a gang's partial reports belong to the lost attempt
            self.gang_reports.pop((tid, att), None)
            d = self.dispatched.a[tid] - self.t0
            if self.trace is not None:
                self.trace.add((tid, ts.sid, tid - ts.offset, att, STATUS_LOST,
                                self.rank_of[gang[0]], len(gang), self.node_of[gang[0]],
                                self.sched.held_cores(ts.cores, gang), ts.gpus,
                                self.created.a[tid],
                                ready.get(tid, self.sched.ready_at[tid]) - self.t0, d, d,
                                now - self.t0,
                                now - self.t0))
                self.trace.add_error(tid, att, rank, self.workers[w].host, "WorkerLost",
                                     why, "")
        # sets that no remaining worker (or node) can hold are given up, not waited for
        for sid in self.sched.unplaceable():
            gone = self.sched.fail_set(sid)
            if gone:
                name = self.wf.sets[sid].name
                log.error("set %s: no remaining worker can hold its tasks; %d task(s) "
                          "cancelled", name, len(gone))
                if len(self.failures) < 100:
                    self.failures.append((name, "Unplaceable", f"{len(gone)} task(s) "
                                          f"cancelled after rank {rank} was lost", rank))
        if self.trace is not None:
            self.trace.flush()
        return hit

    # ------------------------------------------------------------------ dispatch
    def _dispatch(self) -> int:
        runs = self.sched.schedule_runs()
        if not runs:
            return 0
        now = time.time()
        disp = self.dispatched.a
        # per worker: the sets its tasks belong to, and the task messages
        per: dict[int, tuple[set[int], list[Any]]] = {}
        wf = self.wf
        attempts = self.sched.attempts
        lo = hi = 0
        ts: Any = None
        plain = False
        count = 0
        dlog = self._dlog
        rel = now - self.t0
        for a, b, gang in runs:
            count += b - a
            if dlog is not None:
                dlog.extend((a, b, rel))
            if not lo <= a < hi:  # the tasks of a run are of one set
                ts = wf.set_of(a)
                lo, hi = ts.offset, ts.offset + ts.n
                plain = not ts.inputs and ts.ranks == 1
            if b - a == 1:
                disp[a] = now
            else:
                disp[a:b] = now
            if plain:
                # the common case travels as bare ids (see protocol.TaskMsg)
                ent = per.get(gang[0])
                if ent is None:
                    per[gang[0]] = ent = (set(), [])
                ent[0].add(ts.sid)
                if not attempts:
                    ent[1].extend(range(a, b))
                    continue
                for tid in range(a, b):
                    att = attempts.get(tid, 0)
                    ent[1].append((tid, att, None, None) if att else tid)
                continue
            ranks = tuple(self.rank_of[w] for w in gang) if ts.ranks > 1 else None
            targets = gang if ranks is not None else gang[:1]
            for tid in range(a, b):
                inputs = self._inputs(tid) if ts.inputs else None
                msg = (tid, attempts.get(tid, 0), ranks, inputs)
                for w in targets:
                    ent = per.get(w)
                    if ent is None:
                        per[w] = ent = (set(), [])
                    ent[0].add(ts.sid)
                    ent[1].append(msg)
        for w, (sids, msgs) in per.items():
            sent = self.sent_sets[w]
            new = sids - sent
            defs = []
            if new:
                sent |= new
                defs = [setdef(wf.sets[sid]) for sid in sorted(new)]
            self.ep.send(self.rank_of[w], Tag.TASKS, (defs, msgs))
        return count

    # ------------------------------------------------------------------ results
    def _reserve(self, col: int) -> tuple[Any, int]:
        """Room for a plain results message of ``col`` bytes a column (the
        endpoint's raw sink): where its columns land, at the end of the buffered
        ones, and the stride between the tid, start and duration buffers. They
        count as buffered only once :meth:`_on_raw` accepts them."""
        self._room(col // 8)
        return self._v_cols[8 * self._b_n:], 8 * self._cap

    def _on_raw(self, src: int, col: int) -> None:
        """A plain results message, already in the buffers past the buffered entries
        (see :meth:`_reserve`): the common case is one scheduler step and four
        numbers for the trace; anything else goes the way of a Results batch."""
        n = self._b_n
        m = n + col // 8
        tids = self._v_tid[n:m]
        sched = self.sched
        now = time.time()
        sched.now = now
        w = self.w_of_rank.get(src, 0)
        if not self.callbacks and not sched.attempts and sched.tasks_done(tids, w):
            if self.trace is not None:
                j = self._b_j
                v = self._v_meta
                v[j] = m - n
                v[j + 1] = now - self.t0
                v[j + 2] = w
                v[j + 3] = self.offsets[w]
                self._b_n, self._b_j = m, j + 4
                if m >= ROWS_PER_FLUSH:
                    self._size_flush()
            return
        # a gang member's report, a late copy, callbacks to call: copied out first (a
        # callback may flush the trace, which reuses the buffers)
        k = m - n
        self._on_results(src, (array("q", tids), array("i", bytes(4 * k)),
                               array("b", bytes(k)), array("d", self._v_start[n:m]),
                               array("d", self._v_dur[n:m]), None, None))

    def _on_results(self, src: int, batch: Any) -> None:
        """One RESULTS message: a Results batch in columns (see protocol)."""
        tids, atts, stats, starts, durs, values, errors = batch
        now = time.time()
        sched = self.sched
        sched.now = now
        t0 = self.t0
        w_src = self.w_of_rank.get(src, 0)
        off = self.offsets[w_src]
        created, disp = self.created.a, self.dispatched.a
        ready_at = sched.ready_at
        wf = self.wf
        trace = self.trace
        recv = now - t0
        callbacks = self.callbacks
        nsets = len(wf.sets)
        running = sched.running
        attempts = sched.attempts
        task_done = sched.task_done
        keep = self.keep
        # Successful single-rank first attempts are recorded as the batch's own
        # columns, handed to the trace's ``done`` group in one piece below (completed
        # at flush: done is final, so their created/ready/dispatched times cannot
        # change any more). Every other position is listed in `other`: a late copy
        # (not recorded) or a row built one by one (retries, failures, cancels, gangs).
        if (not callbacks and values is None and errors is None and not attempts
                and not any(stats) and not any(atts) and sched.tasks_done(tids, w_src)):
            # the common case in one step: first attempts, all successful, no values,
            # one set, run on this worker alone (Scheduler.tasks_done checks the rest)
            if trace is not None:
                self._keep_batch(tids, starts, durs, None, recv, w_src, off)
            return
        other: list[int] | None = None
        lo = hi = 0
        ts: Any = None
        i = -1
        try:
            for tid in tids:
                i += 1
                gang = running.get(tid)
                attempt = atts[i]
                if gang is None or attempt != attempts.get(tid, 0):
                    if other is None:
                        other = []
                    other.append(i)
                    continue  # a late copy of a re-queued task: its new run counts
                if not lo <= tid < hi:  # results mostly come in runs of one set
                    ts = wf.set_of(tid)
                    lo, hi = ts.offset, ts.offset + ts.n
                status = stats[i]
                value = values[i] if values is not None else None
                if status == STATUS_OK and len(gang) == 1 and not attempt:
                    task_done(tid)
                    if value is not None and keep[ts.sid]:
                        self.results[tid] = value
                    if callbacks:
                        ev = TaskEvent(tid, wf.task_name(tid), ts.name, True, value, None, True,
                                       recv)
                        for cb in callbacks:
                            cb(ev)
                    continue
                if other is None:
                    other = []
                other.append(i)
                started, dur = starts[i], durs[i]
                err = errors[i] if errors is not None else None
                o = off
                if ts.ranks > 1 and len(gang) > 1:
                    merged = self._gang_report(src, gang, tid, attempt,
                                               (status, started, dur, value, err))
                    if merged is None:
                        continue  # other members of the gang have not reported yet
                    status, started, dur, value, err = merged
                    o = self.offsets[gang[0]]
                # before a retry re-stamps this task's ready time
                rdy, d = ready_at[tid] - t0, disp[tid] - t0
                if status == STATUS_OK:
                    code = DONE
                    sched.task_done(tid)
                    if keep[ts.sid] and value is not None:
                        self.results[tid] = value
                    final = True
                elif status == STATUS_CANCELLED:
                    code = CANCELLED
                    sched.cancel_running(tid)
                    final = True
                else:
                    code = STATUS_TIMEDOUT if status == STATUS_TIMEOUT else FAILED
                    final = not sched.task_failed(tid)
                    if trace is not None and err is not None:
                        trace.add_error(tid, attempt, err[3], err[4], err[0], err[1], err[2])
                    if final and len(self.failures) < 100:
                        self.failures.append((wf.task_name(tid), err[0] if err else "?",
                                              err[1] if err else "", err[3] if err else -1))
                    if final and self.fail_fast:
                        self.request_stop(f"--fail-fast: task {wf.task_name(tid)} failed")
                    if err is not None:
                        log.warning("task %s failed on rank %s (%s: %s)%s", wf.task_name(tid),
                                    err[3], err[0], err[1], "" if final else "; retrying")
                if trace is not None:
                    s = started - o - t0
                    if s < d:
                        s = d
                    e = s + dur
                    if e > recv:
                        e = recv
                        if s > e:
                            s = e
                    w = gang[0]
                    trace.add((tid, ts.sid, tid - ts.offset, attempt, code, self.rank_of[w],
                               len(gang), self.node_of[w], self.sched.held_cores(ts.cores, gang),
                               ts.gpus, created[tid], rdy, d,
                               s, e, recv))
                if callbacks:
                    ev = TaskEvent(tid, wf.task_name(tid), ts.name, code == DONE, value, err,
                                   final, recv)
                    for cb in callbacks:
                        cb(ev)
        except BaseException:
            # a callback (or a bug) raised part-way: the rows of the tasks already
            # marked done must still reach the trace, or a resume would run them again
            if trace is not None and i >= 0:
                stop = i + 1 if sched.state[tids[i]] == DONE and (
                    other is None or i not in other) else i
                self._keep_batch(tids[:stop], starts[:stop], durs[:stop],
                                 [k for k in other if k < stop] if other else None,
                                 recv, w_src, off)
            raise
        if trace is not None:
            self._keep_batch(tids, starts, durs, other, recv, w_src, off)
        if len(wf.sets) > nsets:
            self._sets_added(nsets)

    def _keep_batch(self, tids: Any, starts: Any, durs: Any, other: list[int] | None,
                    recv: float, w: int, off: float) -> None:
        """Buffer the successful single-rank first attempts of a batch for the trace:
        all but the positions in ``other`` (usually none): three memory copies into
        buffers that are reused from flush to flush (growing arrays, or holding on to
        each message's own arrays, measured three to four times slower: fresh memory
        costs a page fault per 4 KiB here), and four numbers per message."""
        if not len(tids):
            return
        if other is not None:
            if len(other) == len(tids):
                return
            skip = set(other)
            pick = [i for i in range(len(tids)) if i not in skip]
            tids = array("q", [tids[i] for i in pick])
            starts = array("d", [starts[i] for i in pick])
            durs = array("d", [durs[i] for i in pick])
        k = len(tids)
        self._room(k)
        n, j = self._b_n, self._b_j
        m = n + k
        try:
            self._v_tid[n:m] = tids
            self._v_start[n:m] = starts
            self._v_dur[n:m] = durs
        except (TypeError, ValueError, NotImplementedError):  # not array.array columns
            self._b_tid[n:m] = tids
            self._b_start[n:m] = starts
            self._b_dur[n:m] = durs
        v = self._v_meta
        v[j] = k
        v[j + 1] = recv
        v[j + 2] = w
        v[j + 3] = off
        self._b_n, self._b_j = m, j + 4
        if m >= ROWS_PER_FLUSH and self.trace is not None:
            self._size_flush()

    def _trace_t0(self) -> float:
        """The trace's ``start_time`` (the master's t0 when the trace has none)."""
        t = getattr(self.trace, "start_time", None)
        return self.t0 if t is None else float(t)

    def _room(self, k: int) -> None:
        """Make room for ``k`` more buffered entries (and their message's four numbers):
        a flush hands full buffers over; a batch larger than the buffers gets larger
        ones."""
        if self._b_n + k > self._cap or self._b_j + 4 > len(self._b_meta):
            if self.trace is not None and self._b_n:
                self._size_flush()
                if self._b_n + k > self._cap or self._b_j + 4 > len(self._b_meta):
                    self.trace.flush(wait=False, tail=False)  # the kept rest too
            if k > self._cap:
                self._new_batch_buffers(k)

    def _size_flush(self) -> None:
        """A flush because the buffers are full: hand over the entries that end on a
        chunk boundary of the trace's ``done`` columns, so the trace writes whole
        chunks straight from them (a chunk begun by the last flush would be completed
        by copying, three columns of 512 KiB per flush); the rest (usually part of
        one message) moves to the front of the buffers and goes next time."""
        self._aligned = True
        try:
            self.trace.flush(wait=False, tail=False)
            left, self._left = self._left, None
        finally:
            self._aligned = False
            self._left = None
        if left is not None:
            (cols, meta), cut, n, rest = left
            k, cap = n - cut, len(cols) // PLAIN_COLUMNS
            dst = self._bufs[0]
            for c in range(PLAIN_COLUMNS):  # the same array without a writer thread
                dst[c * self._cap:c * self._cap + k] = cols[c * cap + cut:c * cap + n]
            self._b_meta[:len(rest)] = rest
            self._b_n, self._b_j = k, len(rest)

    def _flush_rows(self) -> None:
        """Hand the buffered successful first attempts to the trace as a ``done``
        block, with the dispatch and ready logs since the last flush (all of them:
        every task handed over was sent and made ready before). Without a writer
        thread the block is built and written within this flush, straight from the
        buffers, which are then reused; a writer thread gets the whole buffer set and
        gives it back once written. A flush for size hands over only the entries up
        to a chunk boundary (see :meth:`_size_flush`)."""
        n, j = self._b_n, self._b_j
        if self.trace is None:
            return
        if not n:
            if self._dlog or self.sched.ready_log:  # tasks sent or made ready, none done
                logs = (self._dlog, self.sched.ready_log)
                self._dlog, self.sched.ready_log = array("d"), array("d")
                self.trace.add_done(_build_done(self._b_tid[:0], self._b_start[:0],
                                                self._b_dur[:0], self._b_meta[:0], logs,
                                                self.dispatched.a, self._rank_arr, self.t0,
                                                self._trace_t0()))
            return
        meta = self._b_meta[:j]
        chunk = getattr(self.trace, "done_chunk", 0) if self._aligned else 0
        cut = n - (self._handed + n) % chunk if chunk else n
        if 0 < cut < n:  # see _size_flush: the message holding entry cut is split
            ends = np.cumsum(meta[0::4])
            i = int(np.searchsorted(ends, cut))
            rest = meta[4 * i:].copy()
            rest[0] = ends[i] - cut
            if ends[i] > cut:
                meta = meta[:4 * i + 4].copy()
                meta[4 * i] -= rest[0]
            else:
                rest = rest[4:]
                meta = meta[:4 * i + 4]
            self._left = (self._bufs, cut, n, rest)
        else:
            cut = n
        self._handed += cut
        cols = (self._b_tid[:cut], self._b_start[:cut], self._b_dur[:cut], meta)
        logs = (self._dlog, self.sched.ready_log)
        self._dlog, self.sched.ready_log = array("d"), array("d")
        # the array as it is now (a later growth allocates a new one)
        disp, rank_arr, t0, tt0 = self.dispatched.a, self._rank_arr, self.t0, self._trace_t0()
        self._b_n = self._b_j = 0
        if getattr(self.trace, "background", False):
            # the writer thread writes these buffers as they are and hands them back
            # once written; rank 0 goes on with a spare set (no copy, no fresh memory
            # on the hot path)
            held, free = self._bufs, self._free_bufs
            try:
                self._use_buffers(free.get_nowait())
            except queue.Empty:
                self._new_batch_buffers()
            self.trace.add_done(lambda: _build_done(*cols, logs, disp, rank_arr, t0, tt0),
                                lambda: free.put(held))
            return
        self.trace.add_done(_build_done(*cols, logs, disp, rank_arr, t0, tt0))

    def _new_batch_buffers(self, least: int = 0) -> None:
        """Buffers for ROWS_PER_FLUSH buffered tasks (or ``least``): one array holding
        the task id, start and duration columns one after the other (a plain
        results message is received into all three at once), and one for the four
        numbers of each message."""
        cap = max(ROWS_PER_FLUSH + 1024, least)
        cols = np.empty(PLAIN_COLUMNS * cap, dtype=np.float64)
        #: per buffered message: entries, received, worker index, its clock offset
        meta = np.empty(4 * 8192, dtype=np.float64)
        self._use_buffers((cols, meta))

    def _use_buffers(self, bufs: tuple[np.ndarray, ...]) -> None:
        """Buffer the next batches in ``bufs`` (columns, meta), from empty; the
        memoryviews take ``array.array`` columns in one copy each."""
        self._bufs = bufs
        cols, self._b_meta = bufs
        cap = self._cap = len(cols) // PLAIN_COLUMNS
        self._b_tid = cols[:cap].view(np.int64)
        self._b_start = cols[cap:2 * cap]
        self._b_dur = cols[2 * cap:3 * cap]
        self._v_cols: Any = memoryview(cols.data).cast("B")
        self._v_tid: Any = self._v_cols[:8 * cap].cast("q")
        self._v_start: Any = self._v_cols[8 * cap:16 * cap].cast("d")
        self._v_dur: Any = self._v_cols[16 * cap:24 * cap].cast("d")
        self._v_meta: Any = memoryview(self._b_meta.data)
        self._b_n = 0  # buffered tasks
        self._b_j = 0  # used numbers of _b_meta

    def _gang_report(self, src: int, gang: tuple[int, ...], tid: int, attempt: int,
                     rep: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """Merge the reports of a multi-rank task's members; ``None`` until all are in.

        The task ends when every member reported: the leader's value and timings,
        failed with the first member error if the leader succeeded but a member did not.
        """
        key = (tid, attempt)
        st = self.gang_reports.get(key)
        if st is None:
            # left, leader's report, first error, the ranks that reported
            st = self.gang_reports[key] = [len(gang), None, None, set()]
        st[0] -= 1
        st[3].add(src)
        if src == self.rank_of[gang[0]]:
            st[1] = rep
        elif rep[0] != STATUS_OK and st[2] is None:
            st[2] = rep
        if st[0] > 0:
            return None
        del self.gang_reports[key]
        lead = st[1] if st[1] is not None else st[2]
        if lead[0] == STATUS_OK and st[2] is not None:
            bad = st[2]
            return (bad[0], lead[1], lead[2], None, bad[4])
        return tuple(lead)

    def _sets_added(self, nsets: int) -> None:
        n = self.wf.ntasks
        self.created.ensure(n)
        self.dispatched.ensure(n)
        first = self.wf.sets[nsets].offset
        now = time.time()
        self.sched.now = now  # tasks made ready now are not stamped before their creation
        self.created.a[first:n] = now - self.t0
        self.sched.tasks_added()
        kept = self.keep
        self._update_keep()
        if self.trace is not None:
            self.trace.sets_added(created=now - self.t0)
            self.trace.set_attr("ntasks", n)
        self._refuse_lost_inputs(nsets, kept)

    def _refuse_lost_inputs(self, nsets: int, kept: list[bool]) -> None:
        """Sets added from ``nsets`` on that take ``inputs`` from tasks that finished
        before they were added, whose values no set wanted then (rank 0 keeps a value
        only while some set takes it as an input), or that a resume counted done from
        a trace (which holds no values): they would get ``None`` in place of
        those values, so they are given up (cancelled, with a failure that says why)
        rather than run on wrong inputs."""
        wf, state, skip = self.wf, self.sched.state, self.skip_done

        def dropped(t: int, a: int) -> bool:  # done, its value not here (or from a trace)
            return state[t] == DONE and (not (a < len(kept) and kept[a]) or t in skip)

        for sid in range(nsets, len(wf.sets)):
            ts = wf.sets[sid]
            if not ts.inputs:
                continue
            lost: list[int] = [a for a, _ in self._in_sets.get(sid, ())
                               if any(dropped(t, a) for t in wf.sets[a].task_ids())]
            for tid in ts.task_ids():
                for ta in self._in_edges.get(tid, ()):
                    a = wf.set_of(ta).sid
                    if a not in lost and dropped(ta, a):
                        lost.append(a)
            if not lost:
                continue
            names = ", ".join(wf.sets[a].name for a in lost)
            why = (f"takes inputs from set(s) {names}, whose tasks finished before it was "
                   "added and whose values were not kept; add it before they finish "
                   "(or pass the values it needs as arguments)")
            gone = self.sched.fail_set(sid)
            log.error("set %s %s; %d task(s) cancelled", ts.name, why, len(gone))
            if len(self.failures) < 100:
                self.failures.append((ts.name, "InputsNotKept", why, 0))

    def add_sets_now(self) -> None:
        """Tell the run about sets added to the workflow outside a callback."""
        nsets = len(self.sched.s_n)
        if len(self.wf.sets) > nsets:
            self._sets_added(nsets)

    # ------------------------------------------------------------------ loop
    def _progress(self, last: float, start: float) -> float:
        iv = self.cfg.progress_interval
        if not iv:
            return last
        now = time.monotonic()
        if now - last < iv:
            return last
        s = self.sched
        total = s.ntasks
        elapsed = now - start
        rate = s.n_terminal / elapsed if elapsed > 0 else 0.0
        eta = (total - s.n_terminal) / rate if rate > 0 else float("nan")
        line = (f"mpiwf: {s.n_done}/{total} done, {s.n_running} running, {s.n_failed} failed, "
                f"{elapsed:.0f}s elapsed, ETA {eta:.0f}s")
        if sys.stderr.isatty():
            sys.stderr.write("\r" + line + "   ")
            sys.stderr.flush()
        else:
            log.info(line)
        return now

    def run(self) -> RunSummary:
        """Run the workflow to the end (or to a requested stop)."""
        sched = self.sched
        ep = self.ep
        backoff = self.backoff
        trace = self.trace
        start = time.monotonic()
        last_progress = start
        sched.now = time.time()
        sched.start()
        if self.skip_done:
            self._skip_recorded()
        pump = self.pump
        held = False
        if trace is not None and not getattr(trace, "started", True):
            # a deferred trace (TraceWriter(defer=True)): its run group is laid out
            # once the first tasks are out, while the workers run them
            if not self.stop_requested:
                self._dispatch()
            trace.start()
        while True:
            if pump is not None:
                held = pump()
            if sched.finished and not held:
                break
            if self.stop_requested:
                self._stop_dispatching()
                if not sched.running:
                    break
                if not self.force_stop and \
                        time.monotonic() - self._stop_at > self.drain_timeout:
                    self.request_stop(f"running tasks not drained within {self.drain_timeout:g} s",
                                      force=True)
                if self.force_stop:
                    for tid in list(sched.running):
                        sched.cancel_running(tid)
                    break
            else:
                self._dispatch()
            msg = ep.poll()
            if msg is None:
                if not sched.running:
                    if sched.finished and not held:
                        break
                    if self._dispatch():
                        continue
                    if self.stop_requested:
                        break
                    if held and sched.finished:
                        backoff.wait()  # the driver may still add work
                        continue
                    raise RunError("stalled: tasks remain but none can run on the available "
                                   f"workers ({sched.counts()})")
                if trace is not None:
                    # Idle: write finished rows now, so a job killed from outside (a dead
                    # rank takes the whole MPICH job down) loses at most ~IDLE_FLUSH of
                    # results. Not during a flood of tiny tasks (IDLE_FLUSH_MANY results
                    # since a flush younger than IDLE_FLUSH_GAP): on an oversubscribed
                    # node rank 0 is idle this long several times a second while its
                    # workers wait for a core, and each such flush writes the done
                    # columns' last chunk padded (1.5 MiB) for the next one to complete
                    # by a copy; a flood flushes every 65,536 results anyway, or
                    # trace_flush seconds. One clock read.
                    now = time.perf_counter()
                    if backoff.idle_for(now) >= IDLE_FLUSH and (
                            self._b_n < IDLE_FLUSH_MANY
                            or now - trace.last_flush >= IDLE_FLUSH_GAP) and (
                            self._b_n or trace.rows or trace.errors or trace.tail_pending):
                        trace.flush()
                    elif now - trace.last_flush >= trace.flush_interval:
                        trace.maybe_flush()
                if self.local_pids or self._usr1 or self.ep.failed or self.heartbeat_timeout:
                    t = time.monotonic()
                    if t - self._last_check >= self.liveness_interval:
                        self._last_check = t
                        self._check_workers()
                last_progress = self._progress(last_progress, start)
                backoff.wait()
                continue
            backoff.reset()
            src, tag, payload = msg
            if tag == Tag.RESULTS_RAW:
                self._on_raw(src, payload)
            elif tag == Tag.RESULTS:
                self._on_results(src, payload)
            elif tag == Tag.HEARTBEAT:
                self.last_beat[src] = time.monotonic()
            elif tag == Tag.BYE:
                self.byes[src] = payload
            else:
                raise RunError(f"unexpected message tag {tag} from rank {src}")
        if self.stop_at_end:
            # the STOPs first: the workers answer them (and wait at the closing
            # barrier, which wakes them within 0.2 ms) while the last flush is written,
            # instead of backing off to 1 ms sleeps behind it; nothing waits for the
            # BYEs before the flush (shutdown does)
            self._send_stops()
        if trace is not None:
            self._record_unrun()
            if self.skip_done:  # how many of the recorded ones were counted done
                trace.set_attr("resumed_done", self.sched.n_resumed)
            trace.flush()
        if self.cfg.progress_interval and sys.stderr.isatty():
            sys.stderr.write("\n")
        return self.summary(time.monotonic() - start)

    def _record_unrun(self) -> None:
        """Trace the ids of tasks that never ran (``skipped``: a parent failed for good;
        ``cancelled``: cancelled by a stop or a failure) as int64 datasets beside ``tasks``."""
        trace = self.trace
        if trace is None or not (self.sched.n_skipped or self.sched.n_cancelled):
            return
        trace.sync()
        if not getattr(trace, "started", True):  # a deferred run group not yet laid out
            trace.start()
        g = getattr(trace, "g", None)
        if g is None:
            return
        state = np.frombuffer(bytes(self.sched.state[:self.sched.ntasks]), dtype=np.uint8)
        for name, code in (("skipped", SKIPPED), ("cancelled", CANCELLED)):
            ids = np.flatnonzero(state == code).astype(np.int64)
            if name in g:
                del g[name]
            g.create_dataset(name, data=ids)

    def _skip_recorded(self) -> None:
        """Resume: tasks recorded done in an earlier run count as done now."""
        again = self._inputs_to_rerun(self.skip_done)
        if again:
            log.info("resume: %d task(s) recorded done run again: tasks still to run take "
                     "their values as inputs, and a trace holds no values", len(again))
        n = self.sched.mark_done(self.skip_done - again)
        wait = len(self.sched.resume_left)
        if wait:
            log.info("resume: %d task(s) already done; %d more once they are ready", n,
                     wait)
        else:
            log.info("resume: %d task(s) already done", n)

    def _inputs_to_rerun(self, skip: set[int]) -> set[int]:
        """Tasks recorded done whose values a task still to run takes as ``inputs``
        (and, in turn, the recorded parents such a task takes its own from): a trace
        holds no values, so they run again rather than hand on ``None``."""
        wf = self.wf
        need: list[int] = []
        for ts in wf.sets:
            if ts.inputs:
                need.extend(t for t in ts.task_ids() if t not in skip)
        again: set[int] = set()
        whole: set[int] = set()  # all-to-all parent sets already taken (once each)
        while need:
            tid = need.pop()
            ts = wf.set_of(tid)
            parents: list[int] = []
            for a, kind in self._in_sets.get(ts.sid, ()):
                pa = wf.sets[a]
                if kind == DEP_ALL:
                    if a not in whole:
                        whole.add(a)
                        parents.extend(pa.task_ids())
                elif kind == DEP_ONE:
                    parents.append(pa.offset + tid - ts.offset)
            parents.extend(self._in_edges.get(tid, ()))
            for p in parents:
                if p in skip and p not in again:
                    again.add(p)
                    if wf.set_of(p).inputs:
                        need.append(p)
        return again

    def _stop_dispatching(self) -> None:
        if not self._cancel_sent:  # workers drop their prefetched tasks (reported cancelled)
            self._cancel_sent = True
            if self.trace is not None:  # a launcher may kill us soon after its signal
                self.trace.flush()
            for w, r in enumerate(self.rank_of):
                if not self.sched.lost[w]:
                    self.ep.send(r, Tag.CANCEL, None)
        if self.sched.n_ready or self.sched.n_terminal + self.sched.n_running \
                < self.sched.ntasks:
            self.sched.cancel_all()

    def summary(self, wall: float) -> RunSummary:
        """The run's summary (from the scheduler's counters)."""
        s = self.sched
        return RunSummary(makespan=wall, tasks=s.ntasks, done=s.n_done, failed=s.n_failed,
                          skipped=s.n_skipped, cancelled=s.n_cancelled, wall=wall,
                          results=self.results, stop_reason=self.stop_reason,
                          lost=tuple(self.lost_ranks), failures=tuple(self.failures))

    def _send_stops(self) -> list[int]:
        """STOP every live worker not yet sent one; returns the live ranks."""
        live = [r for w, r in enumerate(self.rank_of) if not self.sched.lost[w]]
        for r in live:
            if r not in self.stopped:
                self.stopped.add(r)
                self.ep.send(r, Tag.STOP, None)
        return live

    def shutdown(self, timeout: float = 30.0) -> None:
        """STOP every worker and wait (bounded) for each BYE."""
        ep = self.ep
        live = self._send_stops()
        if self.force_stop:
            timeout = min(timeout, 2.0)  # busy workers will not answer in time
        deadline = time.monotonic() + timeout
        expect = set(live)
        backoff = Backoff(self.cfg.poll_spin, self.cfg.poll_max_sleep, self.cfg.poll_hot)
        while not expect.issubset(self.byes) and time.monotonic() < deadline:
            msg = ep.poll()
            if msg is None:
                backoff.wait()
                continue
            backoff.reset()
            src, tag, payload = msg
            if tag == Tag.BYE:
                self.byes[src] = payload
            elif tag == Tag.RESULTS and self.trace is not None:
                pass  # results of cancelled work after a stop: nothing to record
        missing = self.silent = sorted(expect - set(self.byes))
        if missing:
            log.warning("no goodbye from rank(s) %s within %.0f s", missing, timeout)
        if not self.lost_ranks and not missing:
            ep.flush()  # sends to a dead or busy rank may never complete

"""The worker loop: receive tasks, run kernels, time them, send results back.

A worker keeps a local queue (rank 0 may prefetch several short tasks), runs one
task at a time, and sends results in small batches: once the tasks run since the
last send took ``result_flush`` seconds, when its queue runs dry, when the batch is
full, or when the results (of at least 200 us of work) outnumber the tasks still
queued (so the queue is refilled before it runs dry). A kernel's exception is a
value (type, message, traceback, rank, host); it never ends the worker. Idle waiting
backs off politely (:class:`~mpiwf.comm.Backoff`).
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import socket
import time
import traceback
from typing import Any

from .comm import Backoff, Endpoint
from .context import TaskContext, set_context
from .kernels import resolve
from .protocol import (
    MAX_RESULT_BYTES,
    STATUS_CANCELLED,
    STATUS_ERROR,
    STATUS_OK,
    STATUS_TIMEOUT,
    Result,
    SetDef,
    Tag,
    TaskMsg,
    pack_plain,
    pack_results,
)
from .timeouts import TaskTimeout, call_with_timeout

log = logging.getLogger("mpiwf.worker")
_BIG = 1 << 62
#: kernel seconds after which results go early, once they outnumber the queued tasks
_EARLY = 200e-6


class Executor:
    """Runs tasks for one rank (used by worker ranks and by rank 0 in a 1-rank run).

    Args:
        rank: this rank.
        rundir: the run directory.
        gpus: GPU ids bound to this worker.
        virtual_gpu: those GPUs are virtual.
        comm_factory: ``f(gang_ranks) -> communicator`` for multi-rank tasks.
        interruptible: a ``KeyboardInterrupt`` out of a kernel ends the run (rank 0
            of a 1-rank run: Ctrl-C). ``False`` on a worker rank, which ignores
            SIGINT: there only a kernel raises it, and it is that task's error, as
            any other exception is, not the rank's silent end.
    """

    def __init__(self, rank: int = 0, rundir: str = ".", gpus: tuple[int, ...] = (),
                 virtual_gpu: bool = False, comm_factory: Any = None,
                 interruptible: bool = True) -> None:
        self.rank = rank
        self.interruptible = interruptible
        self.host = socket.gethostname()
        self.rundir = rundir
        self.gpus = gpus
        self.virtual_gpu = virtual_gpu
        self.comm_factory = comm_factory
        self.sets: dict[int, SetDef] = {}
        self.ntasks = 0
        self.busy = 0.0

    def define(self, defs: list[SetDef]) -> None:
        """Remember set definitions sent by rank 0."""
        for d in defs:
            self.sets[d[0]] = d

    def run_task(self, msg: TaskMsg, sid: int) -> Result:
        """Run one task and return its Result tuple (never raises for kernel errors)."""
        if isinstance(msg, int):  # a bare id: first attempt, one rank, no inputs
            tid, attempt, gang, inputs = msg, 0, None, None
        else:
            tid, attempt, gang, inputs = msg
        sdef = self.sets[sid]
        _sid, name, offset, n, kernel, args, kwargs, _timeout, _isolate, _ranks = sdef
        idx = tid - offset
        comm = None
        if gang is not None and self.comm_factory is not None:
            comm = self.comm_factory(gang)
        set_context(TaskContext(tid, name if n == 1 else f"{name}[{idx}]", name, idx, attempt,
                                self.rank, self.rundir, comm, self.gpus, self.virtual_gpu))
        value: Any = None
        err = None
        status = STATUS_OK
        started = time.time()
        t0 = time.perf_counter()
        try:
            fn = resolve(kernel)
            if _timeout is not None or _isolate:
                kw = kwargs if inputs is None else {**kwargs, "inputs": inputs}
                value = call_with_timeout(fn, args, kw, _timeout, _isolate, kernel)
            elif inputs is not None:
                value = fn(*args, inputs=inputs, **kwargs)
            else:
                value = fn(*args, **kwargs)
        except KeyboardInterrupt as exc:
            if self.interruptible:
                raise
            status = STATUS_ERROR
            err = ("KeyboardInterrupt", str(exc), traceback.format_exc(), self.rank, self.host)
            value = None
        except TaskTimeout as exc:
            status = STATUS_TIMEOUT
            err = ("TaskTimeout", str(exc), traceback.format_exc(), self.rank, self.host)
        except BaseException as exc:  # a task error is a value, never the rank's end
            status = STATUS_ERROR
            err = (type(exc).__name__, str(exc), traceback.format_exc(), self.rank, self.host)
            value = None
        dur = time.perf_counter() - t0
        set_context(None)
        if comm is not None:
            try:
                comm.Free()
            except Exception:  # pragma: no cover - best effort
                pass
        if value is not None and not (type(value) is float or type(value) is bool or (
                type(value) is int and -_BIG < value < _BIG)):  # small scalars: no check
            try:
                size = len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
            except Exception as exc:
                status, value = STATUS_ERROR, None
                err = ("UnpicklableResult", f"return value cannot be pickled: {exc}", "",
                       self.rank, self.host)
            else:
                if size > MAX_RESULT_BYTES:
                    status, value = STATUS_ERROR, None
                    err = ("ResultTooLarge", f"return value is {size} bytes (limit "
                           f"{MAX_RESULT_BYTES}); write bulk data to files in the run "
                           "directory", "", self.rank, self.host)
        self.ntasks += 1
        self.busy += dur
        return (tid, attempt, status, started, dur, value, err)

    def handle_inline(self, tag: int, payload: Any) -> list[tuple[int, Any]]:
        """Handle a message at once (1-rank runs): run every task, return replies."""
        if tag == Tag.TASKS:
            defs, tasks = payload
            self.define(defs)
            out = [self.run_task(m, self._sid_of(m if isinstance(m, int) else m[0]))
                   for m in tasks]
            if not out:
                return []
            raw = pack_plain(out)
            return [(Tag.RESULTS, pack_results(out)) if raw is None else
                    (Tag.RESULTS_RAW, raw)]
        if tag == Tag.STOP:
            return [(Tag.BYE, self.stats())]
        return []

    def _sid_of(self, tid: int) -> int:
        for sid, d in self.sets.items():
            if d[2] <= tid < d[2] + d[3]:
                return sid
        raise KeyError(f"task {tid} belongs to no known set")

    def stats(self) -> dict[str, Any]:
        """Tasks run and busy seconds."""
        return {"rank": self.rank, "tasks": self.ntasks, "busy": self.busy, "pid": os.getpid()}


class Worker:
    """The loop of a worker rank over an :class:`~mpiwf.comm.Endpoint`.

    Args:
        endpoint: its transport endpoint (rank 0 is the master).
        executor: runs the tasks.
        result_flush: send results once the kernels run since the last send took
            this long (seconds of their own durations, not of the wall clock).
        max_batch: send results when this many are waiting.
        backoff: idle waiting policy.
    """

    def __init__(self, endpoint: Endpoint, executor: Executor, result_flush: float = 0.002,
                 max_batch: int = 64, backoff: Backoff | None = None) -> None:
        self.ep = endpoint
        self.ex = executor
        self.result_flush = result_flush
        self.max_batch = max_batch
        self.backoff = backoff or Backoff()
        self.queue: collections.deque[tuple[TaskMsg, int]] = collections.deque()
        self.results: list[Result] = []
        self.last_send = time.perf_counter()

    def _send_results(self) -> None:
        if self.results:
            raw = pack_plain(self.results)
            if raw is not None:  # the common case: raw bytes, received in place
                self.ep.send_raw(0, Tag.RESULTS_RAW, raw)
            else:
                self.ep.send(0, Tag.RESULTS, pack_results(self.results))
            self.results = []
        self.last_send = time.perf_counter()

    def _accept(self, defs: list[SetDef], tasks: list[TaskMsg]) -> None:
        self.ex.define(defs)
        sets = self.ex.sets
        last: SetDef | None = None
        for m in tasks:
            tid = m if isinstance(m, int) else m[0]
            if last is None or not (last[2] <= tid < last[2] + last[3]):
                last = next(d for d in sets.values() if d[2] <= tid < d[2] + d[3])
            self.queue.append((m, last[0]))

    def run(self) -> dict[str, Any]:
        """Serve until STOP; returns the worker's statistics."""
        ep, q, backoff = self.ep, self.queue, self.backoff
        stopping = False
        while True:
            msg = ep.poll()
            if msg is not None:
                backoff.reset()
                _src, tag, payload = msg
                if tag == Tag.TASKS:
                    self._accept(*payload)
                elif tag == Tag.STOP:
                    stopping = True
                elif tag == Tag.CANCEL:
                    gangs: list[tuple[TaskMsg, int]] = []
                    while q:
                        m, sid = q.popleft()
                        if not isinstance(m, int) and m[2] is not None and len(m[2]) > 1:
                            # a multi-rank task runs all the same: another member may
                            # be in it already (the CANCEL reached it later), waiting
                            # for this one in its collective
                            gangs.append((m, sid))
                            continue
                        tid, att = (m, 0) if isinstance(m, int) else (m[0], m[1])
                        self.results.append((tid, att, STATUS_CANCELLED, time.time(), 0.0,
                                             None, None))
                    q.extend(gangs)
                    self._send_results()
                continue
            if q:
                # run queued tasks back to back until a batch of results is due (one
                # poll per batch, not per task: null tasks cost microseconds). Results
                # also go once they outnumber the tasks still queued, so rank 0 refills
                # the queue before it runs dry (no round-trip bubble per window), but
                # only after _EARLY seconds of work: null tasks keep full batches.
                # The time limit counts the kernels' own durations, not the wall clock:
                # on a loaded node a descheduled worker would otherwise send a message
                # per null task, and rank 0 drowns in messages.
                results, run_task, pop = self.results, self.ex.run_task, q.popleft
                cap, flush, rank = self.max_batch, self.result_flush, self.ex.rank
                spent = 0.0
                while q:
                    m, sid = pop()
                    r = run_task(m, sid)
                    if not isinstance(m, int) and m[2] is not None and m[2][0] != rank:
                        # a multi-rank task runs on its whole gang: every member reports
                        # its status, only the leader's value travels (rank 0 merges them)
                        r = (*r[:5], None, r[6])
                    results.append(r)
                    spent += r[4]
                    nr = len(results)
                    if nr >= cap or spent >= flush or (nr >= len(q) and spent >= _EARLY):
                        break
                self._send_results()
                continue
            if self.results:
                self._send_results()
            if stopping:
                stats = self.ex.stats()
                ep.send(0, Tag.BYE, stats)
                ep.flush()
                return stats
            backoff.wait()

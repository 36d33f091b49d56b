"""A futures-style driver on rank 0: ``submit`` tasks with dependencies while the run goes on.

A driver is a Python function ``main(ex)`` that runs on rank 0 in a thread of its own
while the master loop runs in the main thread::

    def main(ex: mpiwf.futures.Executor) -> float:
        sims = ex.submit("apps.deepdrivemd.kernels:md", 0, n=8, gpus=1)
        agg = ex.submit("apps.deepdrivemd.kernels:aggregate", 0, after=[sims])
        return agg.result()["n_frames"]

    value = mpiwf.futures.run(main, Config(), trace_path="t.h5")  # every rank calls it

Unlike ``mpi4py.futures``, each ``submit`` is a task set of the workflow: it has
dependencies (``after=[futures]``), a resource request (``ranks``, ``cores``,
``gpus``), a stage in sequential mode, and rows in the trace. ``submit`` only queues
the request: the master thread adds the set to the workflow at its next loop turn
(the scheduler's ``tasks_added``), so the workflow is only ever touched by one
thread. Results come back through the master's completion callbacks.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from .config import Config
from .errors import MpiwfError, RunError, SpecError
from .master import Master, TaskEvent
from .workflow import TaskSet, Workflow

T = TypeVar("T")

FIRST_COMPLETED = "FIRST_COMPLETED"
FIRST_EXCEPTION = "FIRST_EXCEPTION"
ALL_COMPLETED = "ALL_COMPLETED"


class TaskFailed(MpiwfError):
    """A submitted task failed, was skipped (a dependency failed) or was cancelled."""


_COMPLETIONS = itertools.count(1)


class Future:
    """The outcome of one :meth:`Executor.submit`: a set of ``n`` tasks.

    Attributes:
        name: the task set's name in the workflow (and the trace).
        n: number of tasks.
    """

    def __init__(self, ex: Executor, name: str, n: int) -> None:
        self._ex = ex
        self.name = name
        self.n = n
        self.sid = -1  # set id once the master has added it
        self._values: list[Any] = [None] * n
        self._left = n
        self._error: BaseException | None = None
        self._done = False
        self._order = 0  # completion order (set when done), for as_completed
        self._dead = False  # some task was skipped or cancelled (it sends no result)

    def __repr__(self) -> str:
        state = "pending" if not self._done else ("failed" if self._error else "done")
        return f"<Future {self.name} n={self.n} {state}>"

    def done(self) -> bool:
        """Every task of the set has ended (or the submit was refused)."""
        return self._done

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the set and return its value.

        Args:
            timeout: seconds to wait at most (``None``: no limit).

        Returns:
            The kernel's return value for ``n == 1``, else the list of the ``n`` values
            in task order.

        Raises:
            TaskFailed: a task failed, was skipped or cancelled.
            SpecError: the submit was refused (unknown kernel, request too large, ...).
            TimeoutError: not done within ``timeout``.
        """
        self._ex._wait_for(lambda: self._done, timeout)
        if self._error is not None:
            raise self._error
        return self._values[0] if self.n == 1 else list(self._values)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait for the set; its error, or ``None`` when every task succeeded."""
        self._ex._wait_for(lambda: self._done, timeout)
        return self._error

    def _settle(self, error: BaseException | None = None) -> None:
        # called with the executor's condition held
        if self._done:
            return
        if error is not None and self._error is None:
            self._error = error
        self._order = next(_COMPLETIONS)
        self._done = True
        self._ex._cv.notify_all()


@dataclasses.dataclass
class _Request:
    """A submit waiting for the master thread to add it."""

    future: Future
    kernel: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    after: list[Future]
    n: int
    ranks: int
    cores: int
    gpus: int
    duration: float | None
    retries: int
    timeout: float | None
    lookahead: float


class Executor:
    """Rank 0's handle on a running workflow; given to the driver function by :func:`run`.

    Args:
        workflow: the workflow the sets go into (normally empty; :func:`run` makes it).
        prefix: task-set names are ``<prefix><kernel-name>-<k>`` unless named.
    """

    def __init__(self, workflow: Workflow | None = None, prefix: str = "") -> None:
        self.wf = workflow if workflow is not None else Workflow("futures")
        self.prefix = prefix
        self._cv = threading.Condition()
        self._queue: list[_Request] = []
        self._by_name: dict[str, Future] = {}
        self._open: list[Future] = []   # added to the run, not yet settled
        self._counter = itertools.count()
        self._closed = False            # the run is over: submit is refused
        self._driver_done = False
        self._seen_dead = 0
        self.master: Master | None = None

    # ------------------------------------------------------------------ driver side
    def submit(self, kernel: str, *args: Any, after: Sequence[Future] = (), n: int = 1,
               ranks: int = 1, cores: int = 1, gpus: int = 0,
               duration: float | None = None, name: str | None = None,
               kwargs: dict[str, Any] | None = None,
               retries: int = 0, timeout: float | None = None,
               lookahead: float = 0.0) -> Future:
        """Add a set of ``n`` tasks running ``kernel(*args, **kwargs)`` to the run.

        Args:
            kernel: registry name (``sleep``) or ``module:function``.
            *args: positional arguments (picklable; the same for all ``n`` tasks: a
                kernel tells its tasks apart by ``mpiwf.context().index``).
            after: futures every task of this set waits for (all-to-all).
            n: number of tasks.
            ranks: MPI ranks per task.
            cores: cores per task.
            gpus: GPUs per task.
            duration: estimated seconds per task (critical-path priority, and whether
                its tasks are short enough to be queued on a busy worker). By default
                the first argument of ``sleep`` and ``spin``, else 0 (unknown: short),
                as in :meth:`mpiwf.workflow.Workflow.add_set`.
            name: the set's name (default ``<kernel>-<k>``); must be unique.
            kwargs: keyword arguments of the kernel.
            retries: times a failed task is tried again.
            timeout: seconds after which a task counts as failed.
            lookahead: seconds of work the driver expects to submit later that will
                depend on this set; the scheduler ranks the set (and its ancestors) as
                if that chain were already there, so the critical path is served first.

        Returns:
            A :class:`Future` for the set.

        Raises:
            RunError: the run has ended.
            SpecError: a bad argument (the name is taken, ``after`` holds a non-future);
                problems found when the master adds the set (unknown kernel, a request
                no node can hold) are raised by the future's ``result()`` instead.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise SpecError("n", f"must be an integer >= 1, got {n!r}")
        for i, f in enumerate(after):
            if not isinstance(f, Future) or f._ex is not self:
                raise SpecError(f"after[{i}]", "must be a Future of this executor")
        with self._cv:
            if self._closed:
                raise RunError("the run has ended: no more tasks can be submitted")
            k = next(self._counter)
            if name is None:
                short = kernel.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
                name = f"{self.prefix}{short}-{k}"
            if name in self._by_name:
                raise SpecError("name", f"a set named {name!r} was already submitted")
            fut = Future(self, name, n)
            self._by_name[name] = fut
            self._queue.append(_Request(future=fut, kernel=kernel, args=args,
                                        kwargs=dict(kwargs or {}), after=list(after), n=n,
                                        ranks=ranks, cores=cores, gpus=gpus, duration=duration,
                                        retries=retries, timeout=timeout,
                                        lookahead=float(lookahead)))
            self._cv.notify_all()
        return fut

    def _wait_for(self, pred: Callable[[], bool], timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while not pred():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError("futures not done in time")
                self._cv.wait(left if left is not None else 0.5)

    # ------------------------------------------------------------------ master side
    def _drain(self, capacity: Sequence[tuple[int, int, int]] | None,
               limit: int | None = None) -> int:
        """Add queued requests to the workflow (master thread). Returns sets added."""
        with self._cv:
            k = len(self._queue) if limit is None else limit
            reqs, self._queue = self._queue[:k], self._queue[k:]
            added = 0
            for r in reqs:
                fut = r.future
                try:
                    dead = [p for p in r.after if p._error is not None and p.sid < 0]
                    if dead:
                        raise TaskFailed(f"{fut.name}: dependency {dead[0].name!r} was refused")
                    if capacity is not None:
                        from .kernels import resolve
                        from .workflow import check_fits

                        resolve(r.kernel, path=f"{fut.name}.kernel")
                        check_fits([TaskSet(fut.name, r.n, r.kernel, ranks=r.ranks,
                                            cores=r.cores, gpus=r.gpus)], capacity)
                    ts = self.wf.add_set(fut.name, r.n, r.kernel, tuple(r.args), r.kwargs,
                                         after=[p.name for p in r.after], ranks=r.ranks,
                                         cores=r.cores, gpus=r.gpus, duration=r.duration,
                                         retries=r.retries, timeout=r.timeout)
                except MpiwfError as exc:
                    fut._settle(exc)
                    continue
                ts.lookahead = r.lookahead
                fut.sid = ts.sid
                self._open.append(fut)
                added += 1
            return added

    def _on_event(self, ev: TaskEvent) -> None:
        """Completion callback (master thread): record the value, settle the future."""
        if not ev.final:
            return
        with self._cv:
            fut = self._by_name.get(ev.set)
            if fut is None or fut._done:
                return
            ts = self.wf.by_name[ev.set]
            if ev.ok:
                fut._values[ev.task - ts.offset] = ev.value
            elif fut._error is None:
                e = ev.error
                msg = f"{ev.name}: {e[0]}: {e[1]} (rank {e[3]})" if e else f"{ev.name} failed"
                fut._error = TaskFailed(msg)
                if e:
                    fut._error.remote_traceback = e[2]  # type: ignore[attr-defined]
            fut._left -= 1
            if fut._left == 0:
                fut._settle()
            elif fut._dead and self.master is not None:
                self._settle_if_ended(fut)  # its other tasks were skipped: no events

    def _terminal(self, fut: Future) -> tuple[bool, int]:
        """(every task of the set has ended, how many were skipped or cancelled)."""
        from .scheduler import CANCELLED, SKIPPED, TERMINAL

        assert self.master is not None
        ts = self.wf.sets[fut.sid]
        states = self.master.sched.state[ts.offset:ts.offset + ts.n]
        return (all(x in TERMINAL for x in states),
                sum(1 for x in states if x in (SKIPPED, CANCELLED)))

    def _settle_if_ended(self, fut: Future) -> None:
        # called with the condition held, for a set some of whose tasks sent no result
        ended, gone = self._terminal(fut)
        if gone:
            fut._dead = True
        if ended:
            fut._settle(None if fut._error is not None else TaskFailed(
                f"{fut.name}: {gone} task(s) skipped or cancelled (a dependency failed, or "
                "the run stopped)"))

    def _settle_dead(self, sched: Any) -> None:
        """Settle futures whose tasks were skipped or cancelled (they send no result)."""
        dead = sched.n_skipped + sched.n_cancelled
        if dead == self._seen_dead:
            return
        self._seen_dead = dead
        with self._cv:
            for fut in self._open:
                if not fut._done:
                    self._settle_if_ended(fut)
            self._open = [f for f in self._open if not f._done]

    def pump(self) -> bool:
        """Master-loop hook: add queued sets; True while the driver may add more."""
        m = self.master
        if self._queue and m is not None:
            from .resources import capacity

            if self._drain(capacity(m.workers)):
                m.add_sets_now()
        if m is not None:
            self._settle_dead(m.sched)
        return not self._driver_done or bool(self._queue)

    def close(self, reason: str) -> None:
        """The run is over: refuse new submits, fail every unsettled future."""
        with self._cv:
            self._closed = True
            for r in self._queue:
                r.future._settle(RunError(f"{r.future.name}: not run ({reason})"))
            self._queue = []
            for fut in self._by_name.values():
                if not fut._done:
                    fut._settle(RunError(f"{fut.name}: not finished ({reason})"))


def as_completed(fs: Iterable[Future], timeout: float | None = None) -> Iterator[Future]:
    """Yield the futures as they complete (finished ones first).

    Args:
        fs: futures of one executor.
        timeout: seconds from the call after which ``TimeoutError`` is raised.

    Yields:
        Each future once, in the order they completed.
    """
    pending = list(dict.fromkeys(fs))
    if not pending:
        return
    ex = pending[0]._ex
    deadline = None if timeout is None else time.monotonic() + timeout
    while pending:
        with ex._cv:
            while True:
                ready = sorted((f for f in pending if f._done), key=lambda f: f._order)
                if ready:
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"{len(pending)} future(s) not done in time")
                ex._cv.wait(left if left is not None else 0.5)
        for f in ready:
            pending.remove(f)
            yield f


def wait(fs: Iterable[Future], timeout: float | None = None,
         return_when: str = ALL_COMPLETED) -> tuple[set[Future], set[Future]]:
    """Wait for futures, as :func:`concurrent.futures.wait` does.

    Args:
        fs: futures of one executor.
        timeout: seconds to wait at most (``None``: no limit); no error on expiry.
        return_when: ``ALL_COMPLETED``, ``FIRST_COMPLETED`` or ``FIRST_EXCEPTION``.

    Returns:
        ``(done, not_done)`` sets.
    """
    if return_when not in (ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION):
        raise ValueError(f"unknown return_when {return_when!r}")
    fs = set(fs)
    if not fs:
        return set(), set()
    ex = next(iter(fs))._ex

    def enough() -> bool:
        done = [f for f in fs if f._done]
        if len(done) == len(fs):
            return True
        if return_when == FIRST_COMPLETED:
            return bool(done)
        if return_when == FIRST_EXCEPTION:
            return any(f._error is not None for f in done)
        return False

    try:
        ex._wait_for(enough, timeout)
    except TimeoutError:
        pass
    done = {f for f in fs if f._done}
    return done, fs - done


def run(main: Callable[[Executor], T], config: Config | None = None, *,
        trace_path: str | None = None, comm: Any = None, layout: Any = None,
        attrs: dict[str, Any] | None = None, name: str = "futures") -> T | None:
    """Run a driver function on rank 0 while every other rank serves tasks.

    Every rank calls it (collective over ``comm``). On rank 0 ``main(ex)`` runs in a
    thread and grows the workflow through ``ex.submit``; the run ends when ``main`` has
    returned and every submitted task has ended. A 1-rank run executes the tasks on
    rank 0 itself.

    Args:
        main: the driver, ``main(ex: Executor) -> value``.
        config: run settings (mode, run directory, ...).
        trace_path: HDF5 trace to write (``None``: none).
        comm: the communicator (default ``COMM_WORLD``).
        layout: worker layout, as for :func:`mpiwf.runner.run`.
        attrs: extra run attributes for the trace.
        name: the workflow's name.

    Returns:
        ``main``'s return value on rank 0, ``None`` elsewhere.

    Raises:
        SpecError: the first submitted set does not fit the machine (on every rank).
        Exception: whatever ``main`` raised, re-raised on rank 0 after the run.
    """
    from mpi4py import MPI

    from .runner import run as run_workflow

    comm = MPI.COMM_WORLD if comm is None else comm
    rank = comm.Get_rank()
    if rank != 0:
        go = comm.bcast(None, root=0)
        if go:
            run_workflow(Workflow(name), config, comm=comm, layout=layout)
        return None
    ex = Executor(Workflow(name))
    out: dict[str, Any] = {}

    def driver() -> None:
        try:
            out["value"] = main(ex)
        except BaseException as exc:  # re-raised on rank 0's main thread
            out["error"] = exc
        finally:
            with ex._cv:
                ex._driver_done = True
                ex._cv.notify_all()

    th = threading.Thread(target=driver, name="mpiwf-driver", daemon=True)
    th.start()
    # the run starts with the first submitted sets (a workflow is never empty)
    with ex._cv:
        while not ex._queue and not ex._driver_done:
            ex._cv.wait(0.5)
        go = bool(ex._queue)
    comm.bcast(go, root=0)
    if go:
        # the first set starts the run (validated against the machine by the runner);
        # the master adds the rest, each checked on its own
        ex._drain(None, limit=1)

        def on_master(m: Master) -> None:
            ex.master = m
            m.pump = ex.pump

        try:
            run_workflow(ex.wf, config, trace_path=trace_path, comm=comm, layout=layout,
                         callbacks=[ex._on_event], attrs={"driver": "futures",
                                                          **(attrs or {})},
                         on_master=on_master)
        except BaseException as exc:
            ex.close(f"{type(exc).__name__}: {exc}")
            th.join(10)
            raise
        stop = ex.master.stop_reason if ex.master is not None else ""
        ex.close(stop or "the run ended")
    th.join()
    if "error" in out:
        raise out["error"]
    return out.get("value")

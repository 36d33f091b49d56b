"""Start a run on every rank: discovery, validation, then master (rank 0) or worker.

Every rank calls :func:`run` with the same arguments (as ``mpiexec -n N python -m
mpiwf run ...`` does). Rank 0 loads and checks the workflow against the machine the
workers found, tells every rank whether to go on, runs the master and writes the
trace; the other ranks serve tasks. A 1-rank run executes the tasks on rank 0.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from .comm import InlineEndpoint, MPIEndpoint
from .config import Config
from .errors import MpiwfError, RunError, SpecError
from .master import Master, RunSummary, TaskEvent
from .resources import WorkerSpec
from .worker import Executor, Worker
from .workflow import Workflow

log = logging.getLogger("mpiwf.run")

#: Exit status of a job that rank 0 aborts after closing the trace (lost worker, forced stop).
EXIT_ABORTED = 4

WorkflowSource = Workflow | Callable[[], Workflow]
Layout = Callable[[list[dict[str, Any]]], list[WorkerSpec]]


def default_layout(infos: list[dict[str, Any]]) -> list[WorkerSpec]:
    """One core per worker rank, no GPUs; nodes numbered by host, in rank order.

    ``infos`` holds one dict per rank (rank 0 first); with one rank, rank 0 itself
    is the only worker.
    """
    nodes: dict[str, int] = {}
    for inf in infos:
        nodes.setdefault(inf["host"], len(nodes))
    ranks = infos[1:] if len(infos) > 1 else infos
    return [WorkerSpec(rank=i["rank"], node=nodes[i["host"]], host=i["host"],
                       cores=int(i.get("cores", 1)), gpus=len(i.get("gpu_ids", ())),
                       core_ids=tuple(i.get("core_ids", ())), gpu_ids=tuple(i.get("gpu_ids", ())),
                       virtual_gpu=bool(i.get("virtual_gpu", False)))
            for i in ranks]


def _local_info(rank: int) -> dict[str, Any]:
    try:
        from mpi4py import MPI

        host = MPI.Get_processor_name()
    except Exception:  # pragma: no cover
        host = socket.gethostname()
    return {"rank": rank, "host": host, "pid": os.getpid(), "cores": 1, "gpu_ids": (),
            "core_ids": (), "virtual_gpu": False}


def mpi_versions() -> dict[str, str]:
    """mpi4py and MPI library versions (imports mpi4py)."""
    import mpi4py
    from mpi4py import MPI

    lib = MPI.Get_library_version().replace("\x00", "").strip().splitlines()[0]  # Open MPI: NULs
    return {"mpi4py": mpi4py.__version__, "mpi_library": lib,
            "mpi_standard": ".".join(map(str, MPI.Get_version()))}


def run(workflow: WorkflowSource, config: Config | None = None, *, trace_path: str | None = None,
        comm: Any = None, layout: Layout | None = None,
        callbacks: Sequence[Callable[[TaskEvent], None]] = (), resume: str | None = None,
        attrs: dict[str, Any] | None = None,
        on_master: Callable[[Master], None] | None = None,
        bind: Any = None) -> RunSummary | None:
    """Run a workflow on every rank of ``comm`` (default ``COMM_WORLD``).

    Args:
        workflow: the workflow, or a function that builds it (called on rank 0 only,
            so a spec is read once and its errors are reported once).
        config: run settings (default :class:`Config`).
        trace_path: HDF5 trace to write (``None``: no trace).
        comm: the communicator (it is duplicated; the original is untouched).
        layout: maps the ranks' discovery dicts to :class:`WorkerSpec`
            (default: :func:`mpiwf.binding.plan` with ``bind``).
        callbacks: completion callbacks on rank 0 (they may add sets).
        resume: a trace whose tasks recorded done are not run again; the new run is
            appended to it when it is also ``trace_path``.
        attrs: extra run attributes for the trace.
        on_master: called with the :class:`Master` before its loop starts (rank 0).
        bind: a :class:`mpiwf.binding.Layout` (binding strategy and declared
            machine); default: strategy ``auto``, the machine as discovered.

    Returns:
        The :class:`RunSummary` on rank 0, ``None`` on the other ranks.

    Raises:
        SpecError: the workflow does not fit the machine (on every rank, so all of
            them can exit cleanly).
        RunError: the run could not go on.
    """
    from mpi4py import MPI

    cfg = config or Config()
    comm = MPI.COMM_WORLD if comm is None else comm
    ep = MPIEndpoint(comm)
    rank, size = ep.rank, ep.size
    from . import binding

    info = binding.discover(ep.comm)
    infos = ep.comm.gather(info, root=0)
    # clock offsets: each rank's clock minus rank 0's (latency is microseconds)
    t_master = ep.comm.bcast(time.time() if rank == 0 else None, root=0)
    skews = ep.comm.gather(time.time() - t_master, root=0)
    state: Any = None
    master: Master | None = None
    trace = None
    if rank == 0:
        try:
            wf = workflow() if callable(workflow) and not isinstance(workflow, Workflow) \
                else workflow
            assert isinstance(wf, Workflow)
            workers = layout(infos) if layout is not None else binding.plan(infos, bind)
            from .resources import capacity

            wf.validate(capacity(workers))
            try:
                os.makedirs(cfg.rundir, exist_ok=True)
            except OSError as exc:
                raise SpecError("--rundir", f"cannot create {cfg.rundir!r} "
                                f"({exc.strerror})") from None
            skip: set[int] = set()
            if resume:
                from .trace import done_tasks

                skip = done_tasks(resume)
            offsets = [0.0 if w.host == infos[0]["host"] else float(skews[w.rank])
                       for w in workers]
            t0 = time.time()
            if trace_path:
                from .batchenv import collect as batch_env
                from .trace import TraceWriter, versions

                run_attrs = {"mode": cfg.mode, "command": " ".join(sys.argv), "ranks": size,
                             "simulated": False, "host": infos[0]["host"],
                             "batch": batch_env(),
                             "config": cfg.__dict__, "rundir": os.path.abspath(cfg.rundir),
                             "binding": binding.layout_dict(bind),
                             **versions(), **mpi_versions(), **(attrs or {})}
                if resume:
                    run_attrs["resumed_from"] = os.path.abspath(resume)
                    # the ids the file records done; rank 0 adds resumed_done (how
                    # many of them were counted done) as the run ends
                    run_attrs["resumed_recorded"] = len(skip)
                extra = [{"pid": infos[w.rank]["pid"], "clock_offset": offsets[i]}
                         for i, w in enumerate(workers)]
                trace = TraceWriter(trace_path, wf, workers, run_attrs, start_time=t0,
                                    append=bool(resume and os.path.abspath(resume)
                                                == os.path.abspath(trace_path)),
                                    flush_interval=cfg.trace_flush, worker_extra=extra,
                                    background=_trace_thread(cfg, infos), defer=True)
            state = ("ok", workers)
        except MpiwfError as exc:
            state = ("error", exc)
        except Exception as exc:  # a bug: report it on every rank, never hang
            state = ("error", RunError(f"{type(exc).__name__}: {exc}"))
    if size > 1:
        # the workers wait politely while rank 0 builds the workflow and opens the trace
        ep.barrier(_backoff(cfg, start=True))
        verdict = ep.comm.bcast(state if rank == 0 else None, root=0)
        if rank != 0:
            state = verdict
    if state[0] == "error":
        ep.close()
        raise state[1]
    mine = next((w for w in state[1] if w.rank == rank), None)
    if mine is not None:
        binding.apply(mine)  # once, before any task (and before CuPy starts)
    gpus, virt = (mine.gpu_ids, mine.virtual_gpu) if mine is not None else ((), False)
    if rank != 0:
        ex = Executor(rank, cfg.rundir, gpus=gpus, virtual_gpu=virt,
                      comm_factory=_gang_comm_factory(ep), interruptible=False)
        # A batch system or mpiexec signals every rank; rank 0 alone decides how the run
        # ends (it drains, STOPs the workers and flushes), so workers ignore the signals.
        old_sig = _ignore_signals()
        beat = _Heartbeat(ep, cfg.heartbeat) if cfg.heartbeat > 0 else None
        try:
            Worker(ep, ex, result_flush=cfg.result_flush, max_batch=cfg.result_batch,
                   backoff=_backoff(cfg)).run()
        finally:
            if beat is not None:
                beat.stop()
            _restore_signals(old_sig)
            binding.release()
        ep.barrier(_backoff(cfg, start=True))  # politely, while rank 0 closes the trace
        ep.close()
        return None
    if size == 1:
        ex0 = Executor(0, cfg.rundir, gpus=gpus, virtual_gpu=virt, comm_factory=None)
        endpoint: Any = InlineEndpoint(ex0.handle_inline)
    else:
        endpoint = ep
    old: dict[int, Any] = {}
    try:
        master = Master(wf, cfg, endpoint, workers, trace, start_time=t0,
                        callbacks=callbacks, clock_offsets=offsets, skip_done=skip)
        if size > 1:  # idle-time liveness check of the worker processes on rank 0's host
            master.local_pids = {w.rank: int(infos[w.rank]["pid"]) for w in workers
                                 if infos[w.rank]["host"] == infos[0]["host"]}
            if cfg.heartbeat > 0 and _thread_multiple():
                master.heartbeat_timeout = cfg.heartbeat_timeout
                now = time.monotonic()
                master.last_beat = {w.rank: now for w in workers}
        master.stop_at_end = True  # shutdown() follows the run at once
        if on_master is not None:
            on_master(master)
        old = _install_signals(master)
        summary = master.run()
    except BaseException as exc:
        # flush what finished, then take the job down (the workers wait for tasks or a
        # STOP that will not come, ignoring signals): never a silent hang
        if trace is not None:
            try:
                trace.close(complete=False, error=f"{type(exc).__name__}: {exc}")
            except Exception:  # pragma: no cover - best effort
                pass
        if size > 1:
            _abort_job(ep, exc)
        _close_quietly(ep)  # one rank: nothing to take down; its communicators go
        raise
    finally:
        _restore_signals(old)
        binding.release()
    try:
        master.shutdown()
    except BaseException as exc:  # the workers may not all be stopped: end the job
        if size > 1:
            _abort_job(ep, exc)
        _close_quietly(ep)
        raise
    failure: BaseException | None = None
    if trace is not None:
        try:
            trace.close(complete=not master.stop_requested and not master.lost_ranks,
                        makespan=trace.makespan,
                        done=summary.done, failed=summary.failed, skipped=summary.skipped,
                        cancelled=summary.cancelled, stop_reason=master.stop_reason,
                        lost_ranks=json.dumps(master.lost_ranks))
        except BaseException as exc:  # raised after the closing barrier: the stopped
            failure = exc             # workers wait there for rank 0
    if size > 1 and (master.lost_ranks or master.force_stop or master.silent):
        # A dead rank (or one still busy in a kernel, or one that never answered the
        # STOP) makes MPI_Finalize hang or fail (measured: MPICH, and Open MPI 5 even
        # with ULFM after acknowledging the failure), and the closing barrier below
        # with it: the trace is closed, so end the job here, loudly and non-zero.
        why = (f"worker rank(s) {master.lost_ranks} lost" if master.lost_ranks
               else f"stopped ({master.stop_reason}) with tasks still running"
               if master.force_stop else f"worker rank(s) {master.silent} did not stop")
        sys.stderr.write(f"mpiwf: {summary.done}/{summary.tasks} tasks done, {summary.failed} "
                         f"failed; {why}; aborting the job (exit status "
                         f"{EXIT_ABORTED}); trace "
                         f"{'closed' if failure is None else f'not closed ({failure})'}\n")
        sys.stderr.flush()
        ep.abort(EXIT_ABORTED)
    if size > 1:
        ep.barrier(_backoff(cfg, start=True))
    ep.close()  # at one rank too: each run() duplicates the communicator twice
    if failure is not None:
        raise failure
    return summary


def _close_quietly(ep: MPIEndpoint) -> None:
    """Release the endpoint of a 1-rank run that is raising (its error goes on)."""
    try:
        ep.close()
    except Exception:  # pragma: no cover - best effort, the first error matters
        pass


def _abort_job(ep: MPIEndpoint, exc: BaseException) -> None:
    """End the whole job after rank 0 failed where the workers cannot follow (they
    wait for tasks or a STOP, ignoring signals): one line, then ``MPI_Abort``."""
    sys.stderr.write(f"mpiwf: error on rank 0: {type(exc).__name__}: {exc}\n")
    sys.stderr.flush()
    ep.abort(1)


def _trace_thread(cfg: Config, infos: list[dict[str, Any]]) -> bool:
    """Whether rank 0 writes the trace in a thread (``Config.trace_thread``)."""
    if cfg.trace_thread != "auto":
        return cfg.trace_thread == "on"
    from . import binding

    local = sum(1 for inf in infos if inf["host"] == infos[0]["host"])
    return len(binding.affinity()) > local


def _backoff(cfg: Config, start: bool = False) -> Any:
    """The polite wait of the run's loops; ``start``: of its start and end barriers
    (sleeps capped at 0.2 ms: the run starts or returns at most that much later)."""
    from .comm import Backoff

    return Backoff(cfg.poll_spin, min(cfg.poll_max_sleep, 2e-4) if start else cfg.poll_max_sleep,
                   cfg.poll_hot)


def _gang_comm_factory(ep: MPIEndpoint) -> Callable[[Sequence[int]], Any]:
    """Sub-communicator over a multi-rank task's gang (``Create_group``: collective
    over the gang's ranks only, so other workers keep running), made from the
    endpoint's :attr:`~mpiwf.comm.MPIEndpoint.groups`, never from the communicator the
    tasks travel on."""
    def make(ranks: Sequence[int]) -> Any:
        everyone = ep.groups.Get_group()
        try:
            grp = everyone.Incl(list(ranks))
        finally:
            everyone.Free()
        try:
            return ep.groups.Create_group(grp, tag=ranks[0])
        finally:
            grp.Free()
    return make


def _install_signals(master: Master) -> dict[int, Any]:
    old: dict[int, Any] = {}

    def handler(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if signum == getattr(signal, "SIGUSR1", None):
            master.notice_usr1()
            return
        # first signal: stop dispatching and drain; a second one: stop waiting
        master.request_stop(f"received {name}", force=master.stop_requested)

    for sig in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGUSR1", None)):
        if sig is None:
            continue
        try:
            old[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread
            pass
    return old


def _thread_multiple() -> bool:
    from mpi4py import MPI

    return bool(MPI.Query_thread() == MPI.THREAD_MULTIPLE)


class _Heartbeat:
    """A worker's side thread: a tiny message to rank 0 every ``interval`` seconds, also
    while a long kernel runs (kernels that release the GIL, as sleeps, I/O, NumPy and
    subprocesses do, never delay it). Needs ``MPI_THREAD_MULTIPLE`` (mpi4py's default);
    without it no thread starts and rank 0 does not expect heartbeats either."""

    def __init__(self, ep: MPIEndpoint, interval: float) -> None:
        import threading

        self.ep = ep
        self.interval = interval
        self.done = threading.Event()
        self.thread: threading.Thread | None = None
        if _thread_multiple():
            self.thread = threading.Thread(target=self._run, name="mpiwf-heartbeat",
                                           daemon=True)
            self.thread.start()

    def _run(self) -> None:
        from .protocol import Tag

        comm = self.ep.comm
        reqs: list[Any] = []
        while not self.done.wait(self.interval):
            reqs = [r for r in reqs if not r.Test()]
            reqs.append(comm.isend(None, dest=0, tag=Tag.HEARTBEAT))
        deadline = time.monotonic() + 1.0  # small eager sends complete at once
        while reqs and time.monotonic() < deadline:
            reqs = [r for r in reqs if not r.Test()]
            time.sleep(0.001)

    def stop(self) -> None:
        """Stop beating (before the endpoint is closed)."""
        self.done.set()
        if self.thread is not None:
            self.thread.join(5)


def _ignore_signals() -> dict[int, Any]:
    old: dict[int, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGUSR1", None)):
        if sig is None:
            continue
        try:
            old[sig] = signal.signal(sig, signal.SIG_IGN)
        except (ValueError, OSError):  # not the main thread
            pass
    return old


def _restore_signals(old: dict[int, Any]) -> None:
    for sig, h in old.items():
        try:
            signal.signal(sig, h)
        except (ValueError, OSError):  # pragma: no cover
            pass


__all__ = ["SpecError", "default_layout", "run"]

"""A whole run in one process: the master on this thread, workers on threads.

The in-process twin of an MPI job (:class:`~mpiwf.comm.QueueHub` instead of a
communicator), for testing master and worker logic, drivers and callbacks without
mpiexec. Kernels share one interpreter, so this is for logic, not for speed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from .comm import QueueHub
from .config import Config
from .errors import RunError
from .master import Master, RunSummary, TaskEvent
from .resources import uniform_workers
from .worker import Executor, Worker
from .workflow import Workflow


def run_threads(workflow: Workflow, config: Config | None = None, *, nworkers: int = 2,
                worker_ranks: Sequence[int] | None = None, trace: object = None,
                callbacks: Sequence[Callable[[TaskEvent], None]] = (),
                setup: Callable[[Master], None] | None = None,
                shutdown_timeout: float = 10.0) -> tuple[RunSummary, Master]:
    """Run ``workflow`` with ``nworkers`` one-core workers (ranks 1..nworkers).

    Args:
        workflow: the workflow.
        config: run settings (default: no progress lines, invariants checked).
        nworkers: workers the master schedules on.
        worker_ranks: the ranks that really get a worker thread (default all); a
            rank left out never answers, as a dead worker would.
        trace: an open :class:`~mpiwf.trace.TraceWriter`, or ``None``.
        callbacks: completion callbacks of the master.
        setup: called with the master before its loop starts.
        shutdown_timeout: seconds the shutdown waits for the workers' goodbyes.

    Returns:
        The run's summary and its master.

    Raises:
        RunError: a worker thread did not end after the shutdown.
    """
    cfg = config or Config(progress_interval=0, validate=True)
    hub = QueueHub(nworkers + 1)
    ranks = range(1, nworkers + 1) if worker_ranks is None else worker_ranks
    threads = [threading.Thread(target=Worker(hub.endpoint(r),
                                              Executor(r, cfg.rundir, interruptible=False),
                                              result_flush=cfg.result_flush,
                                              max_batch=cfg.result_batch).run,
                                name=f"mpiwf-worker-{r}", daemon=True) for r in ranks]
    for th in threads:
        th.start()
    master = Master(workflow, cfg, hub.endpoint(0), uniform_workers(1, nworkers), trace=trace,
                    callbacks=callbacks)
    master.stop_at_end = True  # shutdown() follows the run at once
    if setup is not None:
        setup(master)
    summary = master.run()
    master.shutdown(timeout=shutdown_timeout)
    for th in threads:
        th.join(10)
    alive = [th.name for th in threads if th.is_alive()]
    if alive:
        raise RunError(f"worker thread(s) still running after the shutdown: {alive}")
    return summary, master

"""Where the trace's cost goes in a real run: rank 0's time in each trace step.

Launch::

    mpiexec -n 4 .venv/bin/python benchmarks/trace_cost.py [--tasks N] [--pairs K]

Runs 10^5 null tasks (``--tasks``) with the trace on and off, alternating (``--pairs``
of each), and prints for each run rank 0's wall and CPU time and the thread CPU time
spent in the writer's steps: creating the file (``__init__``) and laying out its run
group (``start``, once the first tasks are out), buffering a pickled
results message (``_keep_batch``; it includes the flushes it triggers: a plain one is
received straight into the buffers, nothing to time), handing the buffers over
(``_flush_rows``) and building the ``done`` block (``_build_done``: per-message and
per-run work, in the flush, or with a writer thread in that thread), writing it
(``_append_done``; of that, the columns' whole chunks ``_chunks_out`` and appends to
the row datasets ``append``, which ``_append`` uses for whole rows too), whole
flushes (``flush``; of that, HDF5's own ``h5flush``) and ``close``. Wrappers add
about a microsecond per call, so use the numbers to rank the steps, not as rates.
``--loop`` also times (wall clock, with or without the trace) rank 0's loop steps:
dispatching (``_dispatch``), polling the endpoint (``poll``, MPI progress included),
the polite waits when idle (``wait``), plain results (``_on_raw``; of it, the
scheduler's ``tasks_done``) and other results (``_on_results``): where a trace-on run
spends its extra time, in trace work or waiting.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _common import null_workflow, prepared  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the pairs; rank 0 prints one line per run."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=100_000)
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--loop", action="store_true", help="also time rank 0's loop steps")
    a = p.parse_args(argv)
    from mpi4py import MPI

    import mpiwf.master as M
    import mpiwf.trace as T
    from mpiwf.runner import run

    acc: dict[str, float] = collections.defaultdict(float)
    cnt: collections.Counter[str] = collections.Counter()

    def wrap(owner: Any, name: str, label: str = "", clock: Any = time.thread_time) -> None:
        f = getattr(owner, name)
        key = label or name

        def timed(*args: Any, **kw: Any) -> Any:
            t = clock()
            try:
                return f(*args, **kw)
            finally:
                acc[key] += clock() - t
                cnt[key] += 1

        setattr(owner, name, timed)

    for n in ("__init__", "start", "flush", "close", "_append", "_append_done", "_chunks_out"):
        wrap(T.TraceWriter, n)
    wrap(T._h5().File, "flush", "h5flush")
    for n in ("_keep_batch", "_flush_rows"):
        wrap(M.Master, n)
    wrap(M, "_build_done")
    wrap(T._Column, "append")
    if a.loop:
        import mpiwf.comm as C
        import mpiwf.scheduler as S

        wall = time.perf_counter
        for n in ("_dispatch", "_on_raw", "_on_results"):
            wrap(M.Master, n, "loop" + n, wall)
        wrap(C.MPIEndpoint, "poll", "loop_poll", wall)
        wrap(C.Backoff, "wait", "loop_wait", wall)
        wrap(S.Scheduler, "tasks_done", "loop_tasks_done", wall)
    comm = MPI.COMM_WORLD
    tmp, cfg = prepared(comm, "mpiwf-tcost-")

    def build() -> Any:
        return null_workflow(a.tasks, "trace_cost")

    for trace in [True, False] * a.pairs:
        acc.clear()
        cnt.clear()
        comm.Barrier()
        c0, t0 = time.process_time(), time.perf_counter()
        run(build, cfg, trace_path=os.path.join(tmp, "t.h5") if trace else None, comm=comm)
        dt, c = time.perf_counter() - t0, time.process_time() - c0
        if comm.rank == 0:
            steps = " ".join(f"{k}={v * 1e3:.2f}ms/{cnt[k]}" for k, v in sorted(acc.items()))
            print(f"trace={'on ' if trace else 'off'} wall={dt * 1e3:.1f}ms "
                  f"cpu={c * 1e3:.1f}ms {steps}", flush=True)
    if comm.rank == 0:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

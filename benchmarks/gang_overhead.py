"""Cost of multi-rank tasks: null tasks on 1-rank vs R-rank gangs, side by side in one run.

    mpiexec -n 4 python benchmarks/gang_overhead.py [--tasks 300]

A multi-rank task costs a message to each gang member, a ``Create_group`` collective
over the gang, the kernel's own collective and a ``Free``; this prints the rate of
null tasks (``noop``) and of a one-``Barrier`` kernel per gang size, and the time per
task relative to single-rank null tasks. Needs at least 3 ranks.
"""

from __future__ import annotations

import argparse
import time

from mpi4py import MPI

from mpiwf import Workflow
from mpiwf.config import from_env
from mpiwf.context import context
from mpiwf.kernels import register
from mpiwf.runner import run


@register("bench_barrier")
def barrier() -> None:
    """One Barrier over the task's sub-communicator."""
    ctx = context()
    if ctx is not None and ctx.comm is not None:
        ctx.comm.Barrier()


def one(comm: MPI.Comm, n: int, ranks: int, kernel: str) -> float:
    wf = Workflow(f"g{ranks}")
    wf.add_set("t", n, kernel, ranks=ranks, duration=1.0)  # not short: one task per gang
    comm.Barrier()
    t0 = time.perf_counter()
    run(wf, from_env(progress_interval=0), trace_path=None, comm=comm)
    comm.Barrier()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", type=int, default=300)
    args = p.parse_args()
    comm = MPI.COMM_WORLD
    nw = comm.Get_size() - 1
    if nw < 2:
        raise SystemExit("needs at least 3 ranks")
    rows = []
    base = one(comm, args.tasks, 1, "noop")
    rows.append(("noop", 1, base))
    for r in range(2, nw + 1):
        rows.append(("noop", r, one(comm, args.tasks, r, "noop")))
        rows.append(("bench_barrier", r, one(comm, args.tasks, r, "bench_barrier")))
    if comm.Get_rank() == 0:
        print(f"{comm.Get_size()} ranks ({nw} workers), {args.tasks} tasks per line, "
              f"{MPI.Get_library_version().splitlines()[0].strip()}")
        print(f"{'kernel':<14} {'ranks':>5} {'tasks/s':>9} {'ms/task':>8} {'vs 1-rank':>9}")
        for k, r, t in rows:
            print(f"{k:<14} {r:>5} {args.tasks / t:>9.0f} {1e3 * t / args.tasks:>8.3f} "
                  f"{t / base:>9.1f}")


if __name__ == "__main__":
    main()

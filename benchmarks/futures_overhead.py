"""mpiwf.futures against mpi4py.futures, side by side in one run: null-task rates and round trips.

Launch: ``mpiexec -n 4 python benchmarks/futures_overhead.py [--tasks 2000] [--trips 300]``.

Prints, for each executor, (a) the rate of ``--tasks`` independent null tasks submitted
one ``submit`` each, then waited for, (b) the mean round trip of ``submit(...).result()``
one after the other, and for mpiwf (c) whether that round trip grows with the number of
sets already in the workflow (first vs last tenth), then the ratios.

Each mpiwf ``submit`` is a task set; adding one costs O(sets) today (the scheduler
recomputes stages and critical-path priorities over the whole workflow), so the round
trip grows with the workflow: about 6 ms of ``Workflow.stages()`` at 1000 sets.
"""

from __future__ import annotations

import argparse
import time
from typing import Any


def mpiwf_side(comm: Any, tasks: int, trips: int) -> dict[str, float] | None:
    from mpiwf import Config
    from mpiwf import futures as fx

    def main(ex: fx.Executor) -> dict[str, float]:
        t = time.perf_counter()
        fs = [ex.submit("noop") for _ in range(tasks)]
        fx.wait(fs)
        rate = tasks / (time.perf_counter() - t)
        rt = []
        for _ in range(trips):
            t = time.perf_counter()
            ex.submit("noop").result()
            rt.append(time.perf_counter() - t)
        k = max(1, trips // 10)
        return {"rate": rate, "trip": sum(rt) / trips, "trip_first": sum(rt[:k]) / k,
                "trip_last": sum(rt[-k:]) / k}

    return fx.run(main, Config(progress_interval=0), comm=comm)


def mpi4py_side(comm: Any, tasks: int, trips: int) -> dict[str, float] | None:
    from mpi4py.futures import MPICommExecutor
    from mpi4py.futures import wait as mwait

    with MPICommExecutor(comm, root=0) as ex:
        if ex is None:
            return None
        t = time.perf_counter()
        fs = [ex.submit(_noop) for _ in range(tasks)]
        mwait(fs)
        rate = tasks / (time.perf_counter() - t)
        t = time.perf_counter()
        for _ in range(trips):
            ex.submit(_noop).result()
        return {"rate": rate, "trip": (time.perf_counter() - t) / trips}


def _noop() -> None:
    return None


def main() -> None:
    """Run both sides and print the ratios (rank 0)."""
    from mpi4py import MPI

    p = argparse.ArgumentParser()
    p.add_argument("--tasks", type=int, default=2000)
    p.add_argument("--trips", type=int, default=300)
    a = p.parse_args()
    comm = MPI.COMM_WORLD
    if comm.Get_size() < 2:
        raise SystemExit("run under mpiexec with >= 2 ranks")
    m = mpiwf_side(comm, a.tasks, a.trips)
    comm.Barrier()
    f = mpi4py_side(comm, a.tasks, a.trips)
    if comm.Get_rank() != 0 or m is None or f is None:
        return
    print(f"ranks {comm.Get_size()}, {a.tasks} independent null tasks, {a.trips} round trips")
    print(f"mpiwf.futures : {m['rate']:9.0f} tasks/s  round trip {1e3 * m['trip']:.3f} ms "
          f"(first tenth {1e3 * m['trip_first']:.3f} ms, last tenth "
          f"{1e3 * m['trip_last']:.3f} ms)")
    print(f"mpi4py.futures: {f['rate']:9.0f} tasks/s  round trip {1e3 * f['trip']:.3f} ms")
    print(f"ratio mpiwf/mpi4py: rate {m['rate'] / f['rate']:.2f}x, round trip "
          f"{m['trip'] / f['trip']:.2f}x; mpiwf trip growth last/first "
          f"{m['trip_last'] / m['trip_first']:.2f}x")


if __name__ == "__main__":
    main()

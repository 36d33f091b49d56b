"""Full-stack dispatch throughput of mpiwf against mpi4py.futures, METG and overheads.

Launch (every rank runs this script; rank 0 prints)::

    mpiexec -n 4 .venv/bin/python benchmarks/dispatch.py            # this machine
    PYTHONPATH=. mpiexec -n 16 python3 benchmarks/dispatch.py      # a system MPI

One invocation, on the same ranks: mpiwf runs each case through :func:`mpiwf.runner.run`
(workflow DAG, scheduler, HDF5 trace on), then mpi4py.futures runs it through
``MPICommExecutor(comm, root=0)`` with one ``submit`` per task (the same granularity).
Cases: independent null tasks, a layered DAG (sets of null tasks, set-to-set
dependencies; futures waits for each layer), and spin tasks of 10 us, 100 us, 1 ms.
Then: METG (the smallest spin duration whose efficiency is >= 50 %), trace on vs
off (alternating runs of --tasks null tasks, ``trace_overhead_at_100000``, and of 10^6,
``trace_overhead``: the trace's cost to sustained throughput, the file's ~5 ms of
creation and close spread over a run long enough to measure a rate), and rank 0's
memory per task. The last line is
``ratio_vs_futures=<x>`` for the independent null tasks: the median of every
trace-on mpiwf run of them (the machine is shared and noisy) over futures' rate.

mpiwf's time is the whole ``run()`` call (set-up, trace file, shutdown included; every
run writes a fresh trace file);
futures' time is from the first ``submit`` to the last result (its pool start-up
excluded), so the comparison does not favour mpiwf. Efficiency of spin tasks is
``tasks * duration / (workers * wall)`` (Task Bench's); ``spin`` busy-waits on the
wall clock, so a preempted task still ends on time, but a worker descheduled between
tasks loses that time (4 ranks on 2 cores, and other users' load, show up here).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
from _common import add_null_sets  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Benchmark options (every rank parses the same command line)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=100_000, help="independent null tasks")
    p.add_argument("--sets", type=int, default=100, help="layers of the layered DAG")
    p.add_argument("--set-size", type=int, default=1000, help="tasks per layer")
    p.add_argument("--futures-tasks", type=int, default=20_000,
                   help="tasks per futures case (it runs ~6k/s; rates are per second)")
    p.add_argument("--futures-sets", type=int, default=20, help="layers for futures' DAG")
    p.add_argument("--spin-seconds", type=float, default=0.5,
                   help="ideal wall time of each spin case (sets its task count)")
    p.add_argument("--repeat", type=int, default=9,
                   help="trace on/off pairs of --tasks null tasks (medians are reported)")
    p.add_argument("--overhead-tasks", type=int, default=1_000_000,
                   help="null tasks per run of the trace on/off pairs that measure the "
                        "trace's cost to sustained throughput (0: skip them)")
    p.add_argument("--overhead-repeat", type=int, default=7,
                   help="trace on/off pairs of --overhead-tasks null tasks")
    p.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    p.add_argument("--no-futures", action="store_true", help="mpiwf cases only")
    a = p.parse_args(argv)
    if a.quick:
        a.tasks, a.sets, a.set_size = 5000, 10, 200
        a.futures_tasks, a.futures_sets, a.spin_seconds, a.repeat = 1000, 5, 0.1, 1
        a.overhead_tasks, a.overhead_repeat = 20_000, 1
    return a


# ---------------------------------------------------------------------- mpiwf side
_RUNS = [0]


def _mpiwf_run(comm: Any, build: Callable[[], Any], trace: bool, tmp: str,
               **cfg: Any) -> tuple[float, int, float]:
    """Run one workflow with mpiwf on ``comm``; rank 0 gets (seconds, tasks done,
    its own CPU seconds)."""
    from mpiwf import Config
    from mpiwf.runner import run

    config = Config(progress_interval=0, rundir=os.path.join(tmp, "run"), **cfg)
    # a fresh file per run, as a user's run writes one (overwriting the previous run's
    # 40 MB would time the filesystem freeing it too); all removed at the end
    _RUNS[0] += 1
    path = os.path.join(tmp, f"bench{_RUNS[0]}.h5") if trace else None
    comm.Barrier()
    c0 = time.process_time()
    t0 = time.perf_counter()
    s = run(build, config, trace_path=path, comm=comm)
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    if s is None:
        return dt, 0, cpu
    if not s.ok:
        raise SystemExit(f"dispatch.py: mpiwf run failed: {s}")
    return dt, s.done, cpu


def _null_wf(n: int) -> Callable[[], Any]:
    def build() -> Any:
        from mpiwf import Workflow

        wf = Workflow("null")
        wf.add_set("null", n, "noop", duration=1e-6)
        return wf
    return build


def _dag_wf(sets: int, size: int) -> Callable[[], Any]:
    def build() -> Any:
        from mpiwf import Workflow

        return add_null_sets(Workflow("layers"), sets * size, sets)
    return build


def _spin_wf(n: int, d: float) -> Callable[[], Any]:
    def build() -> Any:
        from mpiwf import Workflow

        wf = Workflow("spin")
        wf.add_set("spin", n, "spin", (d,))
        return wf
    return build


# ---------------------------------------------------------------------- futures side
def _futures_run(comm: Any, layers: list[tuple[int, float]]) -> float:
    """Run layers of (tasks, spin seconds) through MPICommExecutor, one submit per
    task, waiting for each layer; rank 0 gets the seconds."""
    from mpi4py.futures import MPICommExecutor

    from mpiwf.kernels import noop, spin

    dt = 0.0
    comm.Barrier()
    with MPICommExecutor(comm, root=0) as ex:
        if ex is not None:
            ex.submit(noop).result()  # pool up before the clock starts
            t0 = time.perf_counter()
            for n, d in layers:
                if d > 0:
                    futs = [ex.submit(spin, d) for _ in range(n)]
                else:
                    futs = [ex.submit(noop) for _ in range(n)]
                for f in futs:
                    f.result()
            dt = time.perf_counter() - t0
    return dt


# ---------------------------------------------------------------------- helpers
def _abba(i: int, a: Any, b: Any) -> tuple[Any, Any]:
    """Pair ``i`` of an A B B A ... sequence: whatever a run leaves behind (the page
    cache, the heap) falls on both modes alike."""
    return (a, b) if i % 2 == 0 else (b, a)


def _overhead(suffix: str, n: int, on: list[float], off: list[float], cpu_on: list[float],
              cpu_off: list[float]) -> None:
    """Print the trace on/off lines of one run size: the throughput lost to the trace
    (1 - median rate on / median rate off; the median of the pairs' own ratios
    beside it) and rank 0's CPU per task."""
    m_on, m_off = statistics.median(on), statistics.median(off)
    print(f"# {n} null tasks, trace off: {', '.join(f'{x:.0f}' for x in off)} tasks/s; "
          f"on: {', '.join(f'{x:.0f}' for x in on)} tasks/s")
    c_on, c_off = statistics.median(cpu_on), statistics.median(cpu_off)
    print(f"# {n} null tasks, rank 0 CPU us/task, trace off: "
          f"{', '.join(f'{x:.2f}' for x in cpu_off)}; on: {', '.join(f'{x:.2f}' for x in cpu_on)}")
    print(f"trace_cpu_overhead{suffix}={c_on / c_off - 1:+.3f}  (rank 0 CPU per task, median "
          f"on/off = {c_on:.2f}/{c_off:.2f} us, {n} null tasks)")
    pair = statistics.median(x / y for x, y in zip(on, off) if y > 0)
    print(f"trace_overhead{suffix}={1 - m_on / m_off:+.3f}  (wall rate, median on/off = "
          f"{m_on:.0f}/{m_off:.0f} tasks/s, {n} null tasks; median of the {len(on)} pairs' "
          f"own ratios: {1 - pair:+.3f})")


def _rss_kib() -> tuple[int, int]:
    """(current RSS, peak RSS) of this process in KiB (Linux; zeros elsewhere)."""
    cur = peak = 0
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    cur = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1])
    except OSError:
        pass
    return cur, peak


def _eff(n: int, d: float, workers: int, dt: float) -> float:
    """Efficiency of ``n`` tasks of ``d`` seconds on ``workers`` in ``dt`` seconds."""
    return n * d / (workers * dt) if dt > 0 else 0.0


def _spin_tasks(d: float, workers: int, seconds: float, cap: int) -> int:
    return max(200, min(cap, int(seconds * workers / d)))


class Table:
    """Rows printed by rank 0 as they come."""

    def __init__(self, rank: int) -> None:
        self.rank = rank
        if rank == 0:
            print(f"{'case':<34}{'tasks':>9}{'seconds':>10}{'tasks/s':>12}{'eff':>7}",
                  flush=True)

    def row(self, case: str, n: int, dt: float, eff: float | None = None) -> float:
        """Print one row; returns the rate."""
        rate = n / dt if dt > 0 else float("nan")
        if self.rank == 0:
            e = "" if eff is None else f"{eff:7.2f}"
            print(f"{case:<34}{n:>9}{dt:>10.3f}{rate:>12.0f}{e}", flush=True)
        return rate


def main(argv: list[str] | None = None) -> int:
    """Run every case; rank 0 prints the table, METG, overheads and the ratio."""
    from mpi4py import MPI

    a = parse_args(argv)
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    if size < 2:
        if rank == 0:
            print("dispatch.py: needs at least 2 ranks (mpiexec -n 4 ...)", file=sys.stderr)
        return 2
    workers = size - 1
    tmp = comm.bcast(tempfile.mkdtemp(prefix="mpiwf-bench-") if rank == 0 else None, root=0)
    out = Table(rank)
    if rank == 0:
        from mpiwf.runner import mpi_versions

        v = mpi_versions()
        print(f"# ranks={size} workers={workers} cpus={os.cpu_count()} "
              f"mpi4py={v['mpi4py']} mpi={v['mpi_library']}", flush=True)
    try:
        # -- independent null tasks (the headline) and rank 0's memory per task,
        # after a warm-up run (imports, h5py, first MPI messages)
        dt0, _, _ = _mpiwf_run(comm, _null_wf(1000), True, tmp)
        if rank == 0:
            print(f"# warm-up: 1000 null tasks in {dt0:.3f} s (run() start-up and shutdown "
                  "included)", flush=True)
        rss0, _ = _rss_kib()
        dt, n, _ = _mpiwf_run(comm, _null_wf(a.tasks), True, tmp)
        _, peak = _rss_kib()
        r_null = out.row("mpiwf null (trace on)", a.tasks, dt)
        mem = (peak - rss0) * 1024 / a.tasks if rank == 0 else 0.0
        # -- layered DAG
        nd = a.sets * a.set_size
        dt, _, _ = _mpiwf_run(comm, _dag_wf(a.sets, a.set_size), True, tmp)
        r_dag = out.row(f"mpiwf DAG {a.sets}x{a.set_size} (trace on)", nd, dt)
        # -- spin tasks
        spins = (10e-6, 100e-6, 1e-3)
        for d in spins:
            ns = _spin_tasks(d, workers, a.spin_seconds, a.tasks)
            dt, _, _ = _mpiwf_run(comm, _spin_wf(ns, d), True, tmp)
            out.row(f"mpiwf spin {d * 1e6:.0f}us (trace on)", ns, dt,
                    _eff(ns, d, workers, dt))
        # -- mpi4py.futures, same ranks
        r_fut = float("nan")
        if not a.no_futures:
            nf = a.futures_tasks
            dt = _futures_run(comm, [(nf, 0.0)])
            r_fut = out.row("futures null", nf, dt)
            fs = max(1, a.futures_tasks // a.set_size)
            dt = _futures_run(comm, [(a.set_size, 0.0)] * min(a.futures_sets, fs))
            out.row(f"futures DAG {min(a.futures_sets, fs)}x{a.set_size} (layer waits)",
                    min(a.futures_sets, fs) * a.set_size, dt)
            for d in spins:
                ns = _spin_tasks(d, workers, a.spin_seconds, a.futures_tasks)
                dt = _futures_run(comm, [(ns, d)])
                out.row(f"futures spin {d * 1e6:.0f}us", ns, dt, _eff(ns, d, workers, dt))
        # -- METG: smallest spin duration with efficiency >= 50 %
        metg = float("nan")
        effs: list[tuple[float, float]] = []
        for us in (1000, 500, 200, 100, 50, 20, 10, 5, 2):
            d = us * 1e-6
            ns = _spin_tasks(d, workers, a.spin_seconds, a.tasks)
            dt, _, _ = _mpiwf_run(comm, _spin_wf(ns, d), True, tmp)
            eff = _eff(ns, d, workers, dt)
            effs.append((us, eff))
            if eff >= 0.5:
                metg = us
            else:
                break
        # -- trace on vs off, alternating, medians
        # (wall rates, and rank 0's CPU per task: steadier on a shared machine):
        # --tasks runs (their trace-on rates count for the headline) and longer
        # --overhead-tasks runs (the trace's cost to sustained throughput: the file's
        # creation and close, ~5 ms, are a fixed cost that 10^5 null tasks cannot hide)
        on: list[float] = []
        off: list[float] = []
        cpu_on: list[float] = []
        cpu_off: list[float] = []
        for i in range(a.repeat):
            for trace, acc, cacc in _abba(i, (False, off, cpu_off), (True, on, cpu_on)):
                dt, _, cpu = _mpiwf_run(comm, _null_wf(a.tasks), trace, tmp)
                acc.append(a.tasks / dt if dt > 0 else 0.0)
                cacc.append(cpu / a.tasks * 1e6)
        lon: list[float] = []
        loff: list[float] = []
        lcpu_on: list[float] = []
        lcpu_off: list[float] = []
        if a.overhead_tasks > 0:
            for i in range(a.overhead_repeat):
                for trace, acc, cacc in _abba(i, (False, loff, lcpu_off), (True, lon, lcpu_on)):
                    dt, _, cpu = _mpiwf_run(comm, _null_wf(a.overhead_tasks), trace, tmp)
                    acc.append(a.overhead_tasks / dt if dt > 0 else 0.0)
                    cacc.append(cpu / a.overhead_tasks * 1e6)
        if rank == 0:
            print("# METG sweep (spin us: efficiency): "
                  + ", ".join(f"{us:g}: {e:.2f}" for us, e in effs), flush=True)
            print(f"METG_us={metg:g}  (efficiency >= 50 % at {workers} workers)")
            # the headline: median of every trace-on null run (the first one included)
            r_med = statistics.median(on + [r_null])
            _overhead(f"_at_{a.tasks}" if lon else "", a.tasks, on, off, cpu_on, cpu_off)
            if lon:
                _overhead("", a.overhead_tasks, lon, loff, lcpu_on, lcpu_off)
            print(f"mem_per_task_bytes={mem:.0f}  (rank 0 peak RSS growth / tasks, "
                  f"{a.tasks} null tasks, trace on, after a warm-up run)")
            print(f"mpiwf_null_median={r_med:.0f}  (tasks/s, {len(on) + 1} trace-on runs)")
            print(f"dag_vs_null={r_dag / r_med:.2f}")
            print(f"ratio_vs_futures={r_med / r_fut:.1f}", flush=True)
    finally:
        comm.Barrier()
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

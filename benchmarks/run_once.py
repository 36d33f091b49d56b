"""One mpiwf run of null tasks, timed on rank 0, with every rank's CPU per task.

For side-by-side comparisons of versions (see benchmarks/README.md)::

    git archive <commit> mpiwf | tar -x -C /tmp/v-<commit>
    mpiexec -n 4 .venv/bin/python benchmarks/run_once.py --src /tmp/v-<commit> --dag

``--src`` is put first on ``sys.path``, so that copy of the ``mpiwf`` package is
imported instead of this checkout's. Prints one line: the version directory, the
case, tasks/s, rank 0's CPU microseconds per task and all ranks' together
(``getrusage``: steadier than wall time on a shared machine). A 1,000-task run
goes first, untimed (``--no-warmup`` times the process's first run instead).
``MPIWF_*`` variables set the run's options (e.g. ``MPIWF_RESULT_BATCH=64``).
``--stats`` adds the results per message rank 0 received (from the trace);
``--profile N`` prints rank 0's N most expensive functions (cProfile, which slows
it: use it for where the time goes, not for the rate).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv: list[str] | None = None) -> int:
    """Run once; rank 0 prints the line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", default=os.path.dirname(HERE), help="directory holding mpiwf/")
    p.add_argument("--tasks", type=int, default=100_000)
    p.add_argument("--dag", action="store_true", help="100 layers instead of one set")
    p.add_argument("--no-trace", action="store_true")
    p.add_argument("--no-warmup", action="store_true",
                   help="time the first run of the process (imports, h5py, first messages)")
    p.add_argument("--stats", action="store_true",
                   help="results per message received by rank 0 (needs the trace)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="print rank 0's N costliest functions (cProfile)")
    a = p.parse_args(argv)
    sys.path.insert(0, a.src)
    from _common import add_null_sets  # this directory: first on sys.path before --src
    from mpi4py import MPI

    from mpiwf import Workflow
    from mpiwf.config import from_env
    from mpiwf.runner import run

    comm = MPI.COMM_WORLD
    n = a.tasks

    def build() -> Workflow:
        return add_null_sets(Workflow("run_once"), n, 100 if a.dag else 1)

    tmp = comm.bcast(tempfile.mkdtemp(prefix="mpiwf-once-") if comm.rank == 0 else None)
    cfg = from_env(progress_interval=0, rundir=os.path.join(tmp, "run"))
    trace = None if a.no_trace else os.path.join(tmp, "t.h5")
    if not a.no_warmup:  # 1,000 tasks first: imports and the first messages are not timed
        def small() -> Workflow:
            wf = Workflow("warmup")
            wf.add_set("null", 1000, "noop", duration=1e-6)
            return wf

        run(small, cfg, trace_path=trace, comm=comm)
    comm.Barrier()
    prof = None
    if a.profile and comm.rank == 0:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    run(build, cfg, trace_path=trace, comm=comm)
    dt = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    if prof is not None:
        prof.disable()
    cpu = comm.gather((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), root=0)
    if comm.rank == 0:
        assert cpu is not None
        case = ("dag" if a.dag else "null") + (" trace=off" if a.no_trace else " trace=on")
        print(f"{os.path.basename(os.path.abspath(a.src))} {case} rate={n / dt:.0f} "
              f"cpu_us_per_task_rank0={cpu[0] / n * 1e6:.2f} "
              f"all={sum(cpu) / n * 1e6:.2f}", flush=True)
        if a.stats and trace is not None:
            print(_message_stats(trace), flush=True)
        if prof is not None:
            import pstats

            pstats.Stats(prof).sort_stats("tottime").print_stats(a.profile)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _message_stats(path: str) -> str:
    """Results per RESULTS message, from the trace: a message's rows share their
    worker and ``received`` time."""
    import numpy as np

    from mpiwf.trace import load

    t = load(path).tasks
    keys = np.stack([t["worker"].astype("f8"), t["received"]], axis=1)
    _u, counts = np.unique(keys, axis=0, return_counts=True)
    per_worker = np.bincount(t["worker"].astype(int))
    return (f"messages={len(counts)} results_per_message mean={counts.mean():.1f} "
            f"median={np.median(counts):.0f} p10={np.percentile(counts, 10):.0f} "
            f"p90={np.percentile(counts, 90):.0f} max={counts.max()} "
            f"tasks_per_worker min={per_worker[1:].min()} max={per_worker[1:].max()}")


if __name__ == "__main__":
    sys.exit(main())

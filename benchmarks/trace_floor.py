"""The floor of a per-task HDF5 trace: mpiwf's trace against a minimal writer and none.

Launch::

    mpiexec -n 4 .venv/bin/python benchmarks/trace_floor.py [--runs 7]

Three modes, interleaved, ``--runs`` runs each of 10^5 null tasks, every trace to a
fresh file: no trace; a minimal writer (the master's per-message buffers written as
three raw 1-D datasets, task id, start and duration, at each flush: no row building,
no run attributes, no sets or workers tables); and mpiwf's trace. Prints the median
rates and each trace's overhead against no trace. The minimal writer is about what any
trace that keeps a task's id and timing in HDF5 must pay. Benchmark only: it swaps the
trace writer in and out (monkeypatching); it is no supported mode.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _common import null_workflow, prepared  # noqa: E402


class MinimalWriter:
    """The parts of TraceWriter the master uses; writes three raw columns per flush."""

    def __init__(self, path: str, *_a: Any, **_kw: Any) -> None:
        import h5py

        self.h5s = h5py.h5s
        self.f = h5py.File(path, "w")
        self.rows: list[Any] = []
        self.errors: list[Any] = []
        self.blocks: list[Any] = []
        self.pre_flush: Any = None
        self.last_flush = 0.0
        self.flush_interval = 1.0
        self.tail_pending = False
        self.makespan = 0.0
        self.g = None
        self.n = 0
        self.ds = {k: self.f.create_dataset(k, (0,), maxshape=(None,), dtype=d,
                                            chunks=(65536,))
                   for k, d in (("tid", "<i8"), ("start", "<f8"), ("dur", "<f8"))}

    def add(self, row: Any) -> None:
        self.rows.append(row)

    def add_rows(self, cols: Any) -> None:
        self.blocks.append(cols)

    def add_error(self, *_a: Any) -> None:
        pass

    def sync(self) -> None:
        pass

    def sets_added(self) -> None:
        pass

    def set_attr(self, _k: str, _v: Any) -> None:
        pass

    def maybe_flush(self) -> None:
        pass

    def flush(self, wait: bool = True, tail: bool = True) -> None:
        import numpy as np

        if self.pre_flush is not None:
            self.pre_flush()
        for cols in self.blocks:
            n0, k = self.n, len(cols[0])
            for name, c, dt in zip(("tid", "start", "dur"), cols, ("<i8", "<f8", "<f8")):
                ds = self.ds[name]
                ds.resize((n0 + k,))
                fs = ds.id.get_space()
                fs.select_hyperslab((n0,), (k,))
                ds.id.write(self.h5s.create_simple((k,)), fs, np.asarray(c, dtype=dt))
            self.n = n0 + k
        self.blocks = []
        self.f.flush()

    def close(self, complete: bool = True, **_kw: Any) -> None:
        self.flush()
        self.f.close()


def _raw_columns(self: Any) -> None:
    """Master._flush_rows for the minimal writer: hand over the raw columns."""
    if not self._b_n or self.trace is None:
        return
    n = self._b_n
    cols = (self._b_tid[:n].copy(), self._b_start[:n].copy(), self._b_dur[:n].copy())
    self._b_n = self._b_j = 0
    self.trace.add_rows(cols)


def main(argv: list[str] | None = None) -> int:
    """Run the modes interleaved; rank 0 prints the medians and overheads."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--tasks", type=int, default=100_000)
    a = p.parse_args(argv)
    from mpi4py import MPI

    import mpiwf.master as master_mod
    import mpiwf.trace as trace_mod
    from mpiwf.runner import run

    real = (trace_mod.TraceWriter, master_mod.Master._flush_rows)
    comm = MPI.COMM_WORLD
    tmp, cfg = prepared(comm, "mpiwf-floor-")

    def build() -> Any:
        return null_workflow(a.tasks, "floor")

    rates: dict[str, list[float]] = {"off": [], "minimal": [], "mpiwf": []}
    i = 0
    try:
        for _ in range(a.runs):
            for mode in rates:
                if mode == "minimal":
                    trace_mod.TraceWriter = MinimalWriter  # type: ignore[misc,assignment]
                    master_mod.Master._flush_rows = _raw_columns  # type: ignore[method-assign]
                else:
                    trace_mod.TraceWriter, master_mod.Master._flush_rows = real  # type: ignore
                i += 1
                path = None if mode == "off" else os.path.join(tmp, f"t{i}.h5")
                comm.Barrier()
                t0 = time.perf_counter()
                run(build, cfg, trace_path=path, comm=comm)
                rates[mode].append(a.tasks / (time.perf_counter() - t0))
    finally:
        trace_mod.TraceWriter, master_mod.Master._flush_rows = real  # type: ignore
    if comm.rank == 0:
        med = {k: statistics.median(v) for k, v in rates.items()}
        print("median tasks/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in med.items()))
        print(f"minimal_overhead={med['off'] / med['minimal'] - 1:+.3f} "
              f"mpiwf_overhead={med['off'] / med['mpiwf'] - 1:+.3f}", flush=True)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

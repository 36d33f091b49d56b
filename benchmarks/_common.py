"""Pieces the MPI benchmark scripts share (imported as ``_common``: the scripts' own
directory is first on ``sys.path`` when they run)."""

from __future__ import annotations

import os
import tempfile
from typing import Any


def null_workflow(n: int, name: str = "null") -> Any:
    """One set of ``n`` null tasks (estimate 0: the deepest window)."""
    from mpiwf import Workflow

    return add_null_sets(Workflow(name), n)


def add_null_sets(wf: Any, n: int, layers: int = 1) -> Any:
    """Add ``n`` null tasks to ``wf`` (a Workflow of any version of mpiwf): one set,
    or ``layers`` sets of ``n // layers``, each after the previous one (the layered
    DAG); returns ``wf``."""
    if layers <= 1:
        wf.add_set("null", n, "noop", duration=1e-6)
        return wf
    for k in range(layers):
        wf.add_set(f"s{k}", n // layers, "noop", duration=1e-6,
                   after=[f"s{k - 1}"] if k else [])
    return wf


def shared_tmp(comm: Any, prefix: str) -> str:
    """A temporary directory made by rank 0, its name known to every rank."""
    return comm.bcast(tempfile.mkdtemp(prefix=prefix) if comm.rank == 0 else None)


def prepared(comm: Any, prefix: str) -> tuple[str, Any]:
    """A shared temporary directory and the run settings of these benchmarks (no
    progress line, the run directory inside it), after an untimed warm-up run."""
    from mpiwf.config import from_env

    tmp = shared_tmp(comm, prefix)
    cfg = from_env(progress_interval=0, rundir=os.path.join(tmp, "run"))
    warm_up(comm, cfg, tmp)
    return tmp, cfg


def warm_up(comm: Any, cfg: Any, tmp: str, n: int = 1000) -> None:
    """An untimed run first: imports, h5py and the first messages are not timed."""
    from mpiwf.runner import run

    run(lambda: null_workflow(n, "warmup"), cfg, trace_path=os.path.join(tmp, "warm.h5"),
        comm=comm)

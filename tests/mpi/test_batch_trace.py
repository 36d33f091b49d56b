"""A run records the batch job it ran in (``batch`` run attribute of the trace)."""

from __future__ import annotations

import os
import time

import pytest
from mpi4py import MPI

from mpiwf import Config, Workflow
from mpiwf.batchenv import batch_rows
from mpiwf.runner import run
from mpiwf.trace import load


def test_trace_records_batch_environment(comm: MPI.Comm, shared_dir: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    start = int(time.time())
    monkeypatch.setenv("SLURM_JOB_ID", "987")
    monkeypatch.setenv("SLURM_JOB_START_TIME", str(start))
    monkeypatch.setenv("SLURM_JOB_END_TIME", str(start + 1800))
    wf = Workflow("batch")
    wf.add_set("a", 3, "noop")
    path = os.path.join(shared_dir, "b.h5")
    s = run(wf, Config(progress_interval=0), trace_path=path, comm=comm)
    if comm.Get_rank() != 0:
        return
    assert s is not None and s.ok
    b = load(path).attrs["batch"]
    assert (b["scheduler"], b["job_id"], b["walltime_s"]) == ("slurm", "987", 1800.0)
    assert b["vars"]["SLURM_JOB_END_TIME"] == str(start + 1800)
    assert 1700.0 < b["remaining_s"] <= 1800.0
    rows = dict(batch_rows(b))
    assert rows["job id"] == "987" and rows["walltime"].startswith("0:30:00")

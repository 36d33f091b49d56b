"""Benchmark scripts that need MPI, run small at the job's size (1, 2 or 4 ranks)."""

from __future__ import annotations

import os
import sys

import pytest
from mpi4py import MPI

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import ab_versions  # noqa: E402


def test_ab_versions_runs_each_version_every_round(comm: MPI.Comm,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Three settings of this checkout rotated in one job (one with a run setting
    of its own): one line each, the first the baseline (cost 0), the trace's lines
    marked on; bad input exits 2 on every rank before any collective call."""
    assert ab_versions.main([f"off={ROOT}:off", f"on={ROOT}:on",
                             f"flush={ROOT}:on:MPIWF_TRACE_FLUSH=0.5,MPIWF_BATCH=64",
                             "--tasks", "300", "--rounds", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    if comm.Get_rank() == 0:
        rows = {line.split()[0]: line for line in out if not line.startswith("#")}
        assert sorted(rows) == ["flush", "off", "on"]
        assert "trace=off" in rows["off"] and "cost +0.000" in rows["off"]
        assert "trace=on" in rows["on"] and "trace=on" in rows["flush"]
    else:
        assert out == []
    assert ab_versions.main(["x=/nonexistent:on"]) == 2
    assert ab_versions.main([f"x={ROOT}:sometimes"]) == 2
    assert ab_versions.main([f"x={ROOT}:on:TRACE=1"]) == 2
    assert ab_versions.main([f"a={ROOT}:on", f"a={ROOT}:off"]) == 2

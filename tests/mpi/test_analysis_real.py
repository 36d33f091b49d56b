"""A real run's trace goes through the same analysis, plots and exports as a simulated one."""

from __future__ import annotations

import json
import os

import pytest
from mpi4py import MPI

from mpiwf import Config, Workflow
from mpiwf import analysis as an
from mpiwf.export import write_chrome
from mpiwf.runner import run
from mpiwf.trace import load

CFG = Config(progress_interval=0, validate=True)


def test_real_trace_metrics_plot_export(comm: MPI.Comm, shared_dir: str) -> None:
    wf = Workflow("real")
    wf.add_set("a", 3, "sleep", (0.01,))
    wf.add_set("b", 1, "sleep", (0.01,), after=["a"])
    wf.add_set("c", 1, "noop", after=["b"])
    wf.add_set("bad", 1, "fail", ("boom",), retries=1)
    path = os.path.join(shared_dir, "real.h5")
    s = run(wf, CFG, trace_path=path, comm=comm)
    if comm.Get_rank() != 0:
        return
    assert s is not None and s.done == 5
    tr = load(path)
    sm = an.summarize(tr)
    assert not sm["partial"] and not sm["simulated"] and sm["tasks"] == 5
    assert sm["makespan"] > 0.02  # a, then b: two sleeps in a chain
    assert 0 < sm["utilization"]["cpu"] <= 1.0 + 1e-9
    f = sm["failures"]
    assert (f["failed_attempts"], f["retries"], f["retried_tasks"], f["failed_tasks"]) == \
        (2, 1, 1, 1)
    assert f["errors"] == {"RuntimeError": 2}
    cp = an.critical_path(tr)
    assert cp["sets"] == ["a", "b", "c"] and cp["tasks"] == 3
    assert cp["length"] >= cp["busy"] - 1e-9 >= 0.02 - 1e-3
    o = sm["overheads"]
    assert o["queue"]["n"] == 7 and o["launch"]["mean"] >= 0 and o["report"]["mean"] >= 0
    c = an.concurrency(tr)
    assert c["running"].min() == 0 and c["running"].max() >= 1
    out = os.path.join(shared_dir, "real.json")
    assert write_chrome(tr, out) == 7
    with open(out) as fh:
        ev = json.load(fh)["traceEvents"]
    ranks = {int(w["rank"]) for w in tr.workers}
    assert {e["tid"] for e in ev if e["ph"] == "X"} <= ranks
    pytest.importorskip("matplotlib")
    from mpiwf.plot import plot

    png = plot([tr], "gantt", os.path.join(shared_dir, "real.png"))
    assert os.path.getsize(png) > 5000

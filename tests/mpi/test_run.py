"""End-to-end runs under MPI at the job's size (1, 2 or 4 ranks)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from mpi4py import MPI

import mpiwf
from mpiwf import Config, Workflow
from mpiwf.resources import uniform_workers
from mpiwf.runner import run
from mpiwf.simulate import simulate
from mpiwf.trace import load

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CFG = Config(progress_interval=0, validate=True)


def nworkers(comm: MPI.Comm) -> int:
    return max(1, comm.Get_size() - 1)


@pytest.mark.parametrize("writer", ["off", "on"])
def test_chain_and_fanout_all_tasks_once(comm: MPI.Comm, shared_dir: str, writer: str) -> None:
    wf = Workflow("fan")
    wf.add_set("src", 5, "sleep", (0.002,))
    wf.add_set("mid", 20, "noop", after=["src"])
    wf.add_set("one", 20, "noop", after_each=["mid"])
    wf.add_set("sink", 1, "noop", after=["one"])
    path = os.path.join(shared_dir, "t.h5")
    s = run(wf, CFG.replace(trace_thread=writer), trace_path=path, comm=comm)
    if comm.Get_rank() != 0:
        assert s is None
        return
    assert s is not None and s.ok and s.done == 46
    tr = load(path)
    t = tr.tasks
    assert sorted(t["task"].tolist()) == list(range(46))
    assert not tr.partial
    # the makespan attribute is kept as rows are written: first start to last end
    assert tr.attrs["makespan"] == pytest.approx(t["ended"].max() - t["started"].min())
    assert tr.attrs["makespan"] > 0.002
    order = ["created", "ready", "dispatched", "started", "ended", "received"]
    for a, b in zip(order, order[1:]):
        assert np.all(t[a] <= t[b]), (a, b)
    ends = dict(zip(t["task"].tolist(), t["ended"].tolist()))
    starts = dict(zip(t["task"].tolist(), t["started"].tolist()))
    # every dependency is respected: a child starts after its parents end
    for i in range(20):
        assert all(starts[5 + i] >= ends[p] for p in range(5))
        assert starts[25 + i] >= ends[5 + i]
    assert all(starts[45] >= ends[25 + i] for i in range(20))
    used = set(t["worker"].tolist())
    expect = {0} if comm.Get_size() == 1 else set(range(1, comm.Get_size()))
    assert used <= expect


def test_many_null_tasks_keep_every_timing_and_dependency(comm: MPI.Comm, shared_dir: str,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """The batched hot path (runs of tasks per message, results completed a message at
    a time, rows built by the writer thread, a dozen flushes) loses no row and reorders
    nothing."""
    import mpiwf.master

    monkeypatch.setattr(mpiwf.master, "ROWS_PER_FLUSH", 4096)
    wf = Workflow("many")
    wf.add_set("a", 30000, "noop", duration=0.0)
    wf.add_set("b", 10000, "noop", duration=0.0, after=["a"])
    wf.add_set("c", 10000, "noop", duration=0.0, after_each=["b"])
    path = os.path.join(shared_dir, "many.h5")
    s = run(wf, Config(progress_interval=0, trace_thread="on"), trace_path=path, comm=comm)
    if comm.Get_rank() != 0:
        return
    assert s is not None and s.ok and s.done == 50000
    t = load(path).tasks
    assert np.array_equal(np.sort(t["task"]), np.arange(50000))  # each once
    assert (t["status"] == 4).all() and (t["attempt"] == 0).all()
    order = ["created", "ready", "dispatched", "started", "ended", "received"]
    for x, y in zip(order, order[1:]):
        assert np.all(t[x] <= t[y]), (x, y)
    t = t[np.argsort(t["task"])]
    assert t["started"][30000:].min() >= t["ended"][:30000].max()  # b after all of a
    assert np.all(t["started"][40000:] >= t["ended"][30000:40000])  # c[i] after b[i]
    assert np.all(t["dispatched"][40000:] >= t["received"][30000:40000])


def test_kernel_error_is_a_value_and_rank_survives(comm: MPI.Comm, shared_dir: str) -> None:
    wf = Workflow("errs")
    wf.add_set("bad", 2, "fail", ("boom",))
    wf.add_set("after_bad", 3, "noop", after=["bad"])
    wf.add_set("good", 6, "noop")
    path = os.path.join(shared_dir, "e.h5")
    s = run(wf, CFG, trace_path=path, comm=comm)
    if comm.Get_rank() != 0:
        return
    assert s is not None
    assert (s.done, s.failed, s.skipped) == (6, 2, 3)
    tr = load(path)
    assert len(tr.errors) == 2
    e = tr.errors[0]
    assert e["type"] == "RuntimeError" and e["message"] == "boom"
    assert "Traceback" in e["traceback"] and e["host"]
    assert e["rank"] in ([0] if comm.Get_size() == 1 else range(1, comm.Get_size()))


def test_every_run_releases_its_communicators(comm: MPI.Comm,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Each run() duplicates the communicator twice and frees both at its end, at one
    rank too (MPICH runs out of communicators after ~2,000 leaked ones), and also when
    a 1-rank run raises."""
    from mpiwf.comm import MPIEndpoint

    closed: list[int] = []
    real = MPIEndpoint.close

    def spy(self: MPIEndpoint) -> None:
        closed.append(self.rank)
        real(self)

    monkeypatch.setattr(MPIEndpoint, "close", spy)
    wf = Workflow("rel")
    wf.add_set("a", 4, "noop")
    s = run(wf, CFG, comm=comm)
    assert closed == [comm.Get_rank()]
    assert comm.Get_rank() != 0 or (s is not None and s.ok)
    if comm.Get_size() == 1:  # at more ranks an error on rank 0 aborts the job

        def boom(_ev: object) -> None:
            raise RuntimeError("from a callback")

        with pytest.raises(RuntimeError, match="from a callback"):
            run(wf, CFG, comm=comm, callbacks=[boom])
        assert closed == [0, 0]


def test_results_flow_to_dependents(comm: MPI.Comm, shared_dir: str) -> None:
    wf = Workflow("flow")
    wf.add_set("a", 3, "echo", (1,))
    wf.add_set("b", 3, "echo", after_each=["a"], inputs=True)
    wf.add_set("c", 1, "echo", after=["b"], inputs=True)
    s = run(wf, CFG, trace_path=None, comm=comm)
    if comm.Get_rank() != 0:
        return
    assert s is not None and s.ok
    c = s.results.get(6)
    # c is a sink: nothing asked to keep its value; b's values reached c
    assert c is None
    wf2 = s  # results of kept sets: a (for b) and b (for c)
    assert wf2.results[3]["inputs"][0]["task"] == "a[0]"
    assert [v["task"] for v in wf2.results[3]["inputs"]] == ["a[0]"]


@pytest.mark.parametrize("mode", ["sequential", "doa=2", "async"])
def test_modes_respect_stages(comm: MPI.Comm, shared_dir: str, mode: str) -> None:
    wf = Workflow("stages")
    wf.add_set("a", 4, "sleep", (0.01,))
    wf.add_set("b", 1, "sleep", (0.05,), after=["a"])
    wf.add_set("c", 4, "sleep", (0.01,))  # level 0, but staged after b below
    wf.add_set("d", 2, "noop", after=["b", "c"])
    wf.set_stage_order([["a"], ["b"], ["c"], ["d"]])
    path = os.path.join(shared_dir, f"{mode}.h5")
    s = run(wf, Config(mode=mode, progress_interval=0, validate=True), trace_path=path,
            comm=comm)
    if comm.Get_rank() != 0:
        return
    assert s is not None and s.ok
    t = load(path).tasks
    st = {n: t[t["set"] == k] for k, n in enumerate("abcd")}
    if mode == "sequential":
        assert st["c"]["started"].min() >= st["b"]["ended"].max()
        assert st["b"]["started"].min() >= st["a"]["ended"].max()
    if mode == "doa=2":
        assert st["c"]["started"].min() >= st["a"]["ended"].max()


def test_dg2_shape_async_gain_matches_model(comm: MPI.Comm, shared_dir: str) -> None:
    """The paper's DG2 topology with sleeps: async beats sequential by the modelled
    fraction. The model is the simulator on this job's workers (1 worker: I = 0).

    Tolerance 0.08 on I: each of the 8 sets pays dispatch + polling latency (<= 1 ms
    back-off cap, a few ms when 4 ranks share 2 cores), i.e. tens of ms on makespans of
    1.5-4 s, plus sleep overshoot; 0.08 keeps the test meaningful (the gain is 0.17 at
    4 ranks) without failing on a loaded CI machine.
    """
    spec = os.path.join(ROOT, "apps", "demo", "dg2_local.yaml")
    ms = {}
    for mode in ("sequential", "async"):
        path = os.path.join(shared_dir, f"dg2-{mode}.h5")
        s = run(lambda: mpiwf.load(spec), Config(mode=mode, progress_interval=0),
                trace_path=path, comm=comm)
        if comm.Get_rank() == 0:
            assert s is not None and s.ok
            t = load(path).tasks
            assert len(t) == s.tasks
            ms[mode] = float(t["ended"].max() - t["started"].min())
    if comm.Get_rank() != 0:
        return
    workers = uniform_workers(1, nworkers(comm))
    sim = {m: simulate(mpiwf.load(spec), workers, m).makespan for m in ms}
    i_model = 1 - sim["async"] / sim["sequential"]
    i_real = 1 - ms["async"] / ms["sequential"]
    assert abs(i_real - i_model) < 0.08, (ms, sim)
    assert ms["sequential"] >= sim["sequential"] * 0.99


def test_workers_wait_politely_at_start_and_end(comm: MPI.Comm, shared_dir: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """While rank 0 builds the workflow (before the run) and closes the trace (after
    it), the workers wait without spinning: a blocking collective would burn a core
    per rank (MPICH), taking it from rank 0 on an oversubscribed node."""
    from mpiwf import trace as trace_mod

    busy = 0.6
    if comm.Get_rank() == 0:
        close = trace_mod.TraceWriter.close

        def slow_close(self: trace_mod.TraceWriter, *a: object, **k: object) -> None:
            time.sleep(busy)
            close(self, *a, **k)

        monkeypatch.setattr(trace_mod.TraceWriter, "close", slow_close)

    def build() -> Workflow:
        time.sleep(busy)
        wf = Workflow("polite")
        wf.add_set("a", 8, "noop")
        return wf

    comm.Barrier()
    cpu, wall = time.process_time(), time.perf_counter()
    s = run(build, CFG, trace_path=os.path.join(shared_dir, "polite.h5"), comm=comm)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if comm.Get_rank() == 0:
        assert s is not None and s.ok and s.done == 8
        assert load(os.path.join(shared_dir, "polite.h5")).tasks.shape[0] == 8
    else:
        # spinning would cost about the 1.2 s rank 0 was busy; polite waiting ~0.01 s/s
        assert wall >= 2 * busy and cpu < 0.3 * wall, (cpu, wall)

"""The futures-style driver (mpiwf.futures) under MPI at the job's size."""

from __future__ import annotations

import os

import pytest
from mpi4py import MPI

from mpiwf import Config
from mpiwf import futures as fx
from mpiwf.errors import SpecError
from mpiwf.trace import load

CFG = Config(progress_interval=0, validate=True)


def _rows(path: str) -> dict[str, list[tuple[float, float]]]:
    tr = load(path)
    names = [s["name"] for s in tr.sets]
    out: dict[str, list[tuple[float, float]]] = {}
    for r in tr.tasks:
        out.setdefault(names[int(r["set"])], []).append((float(r["started"]),
                                                          float(r["ended"])))
    return out


def test_driver_grows_the_workflow_from_results(comm: MPI.Comm, shared_dir: str) -> None:
    path = os.path.join(shared_dir, "f.h5")

    def main(ex: fx.Executor) -> list[int]:
        a = ex.submit("echo", 1, n=3, name="a")
        b = ex.submit("sleep", 0.01, n=2, after=[a], name="b")
        vals = a.result(timeout=60)
        # the next set is made from a's values: only known at run time
        c = ex.submit("echo", len(vals), after=[b], name="c")
        order = [f.name for f in fx.as_completed([c, b], timeout=60)]
        assert order == ["b", "c"]
        done, not_done = fx.wait([a, b, c], timeout=60)
        assert not not_done and done == {a, b, c}
        return [len(vals), c.result()["args"][0], len(b.result())]

    value = fx.run(main, CFG, trace_path=path, comm=comm)
    if comm.Get_rank() != 0:
        assert value is None
        return
    assert value == [3, 3, 2]
    rows = _rows(path)
    assert sorted(rows) == ["a", "b", "c"] and [len(rows[k]) for k in "abc"] == [3, 2, 1]
    assert min(s for s, _ in rows["b"]) >= max(e for _, e in rows["a"])
    assert rows["c"][0][0] >= max(e for _, e in rows["b"])
    assert not load(path).partial


def test_failures_skips_and_refusals_settle_futures(comm: MPI.Comm, shared_dir: str) -> None:
    def main(ex: fx.Executor) -> str:
        bad = ex.submit("fail", "boom", name="bad")
        child = ex.submit("noop", after=[bad], name="child")
        big = ex.submit("noop", gpus=64, name="big")
        good = ex.submit("echo", "ok", n=2, name="good")
        with pytest.raises(fx.TaskFailed, match="boom"):
            bad.result(timeout=60)
        with pytest.raises(fx.TaskFailed, match="skipped"):
            child.result(timeout=60)
        with pytest.raises(SpecError, match="gpus=64"):
            big.result(timeout=60)
        done, _ = fx.wait([bad, good], return_when=fx.FIRST_EXCEPTION, timeout=60)
        assert bad in done
        with pytest.raises(SpecError, match="already submitted"):
            ex.submit("noop", name="good")
        return str(good.result(timeout=60)[1]["args"][0])

    value = fx.run(main, CFG, comm=comm)
    if comm.Get_rank() == 0:
        assert value == "ok"


def test_driver_error_reaches_rank_0_and_workers_exit(comm: MPI.Comm) -> None:
    def main(ex: fx.Executor) -> None:
        ex.submit("noop", n=2).result(timeout=60)
        raise ValueError("driver bug")

    if comm.Get_rank() == 0:
        with pytest.raises(ValueError, match="driver bug"):
            fx.run(main, CFG, comm=comm)
    else:
        assert fx.run(main, CFG, comm=comm) is None


def test_empty_driver_and_sequential_mode(comm: MPI.Comm, shared_dir: str) -> None:
    assert fx.run(lambda ex: 7, CFG, comm=comm) == (7 if comm.Get_rank() == 0 else None)
    path = os.path.join(shared_dir, "s.h5")
    seq = Config(progress_interval=0, validate=True, mode="sequential")

    def main(ex: fx.Executor) -> None:
        a = ex.submit("sleep", 0.02, n=2, name="a")
        b = ex.submit("sleep", 0.01, n=3, name="b")          # stage 0 with a
        c = ex.submit("noop", n=2, after=[a], name="c")       # stage 1
        a.result(timeout=60)
        d = ex.submit("noop", after=[c], name="d")            # added later: stage 2
        fx.wait([b, d], timeout=60)

    fx.run(main, seq, trace_path=path, comm=comm)
    if comm.Get_rank() != 0:
        return
    rows = _rows(path)
    end0 = max(e for k in "ab" for _, e in rows[k])
    assert min(s for s, _ in rows["c"]) >= end0  # the barrier holds b too
    assert rows["d"][0][0] >= max(e for _, e in rows["c"])
    assert load(path).attrs["mode"] == "sequential"


def test_doa_window_holds_sets_added_later(comm: MPI.Comm, shared_dir: str) -> None:
    path = os.path.join(shared_dir, "d.h5")
    doa = Config(progress_interval=0, validate=True, mode="doa=2")

    def main(ex: fx.Executor) -> None:
        z0 = ex.submit("sleep", 0.3, name="z0")                # stage 0, long
        s0 = ex.submit("sleep", 0.01, n=2, name="s0")          # stage 0
        s0.result(timeout=60)
        s1 = ex.submit("noop", after=[s0], name="s1")          # stage 1: inside the window
        s2 = ex.submit("noop", after=[s1], name="s2")          # stage 2: waits for stage 0
        fx.wait([z0, s2], timeout=60)

    fx.run(main, doa, trace_path=path, comm=comm)
    if comm.Get_rank() != 0:
        return
    rows = _rows(path)
    assert rows["s1"][0][0] >= max(e for _, e in rows["s0"])
    assert rows["s2"][0][0] >= rows["z0"][0][1]
    if comm.Get_size() > 2:  # a free worker: stage 1 need not wait for z0
        assert rows["s1"][0][0] < rows["z0"][0][1]

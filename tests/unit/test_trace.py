"""The HDF5 trace: schema, incremental writes, partial runs, reading back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import h5py
import numpy as np
import pytest

from mpiwf import TraceError, Workflow, uniform_workers
from mpiwf.analysis import summarize
from mpiwf.scheduler import DONE
from mpiwf.simulate import simulate
from mpiwf.trace import ROW_DTYPE, TASK_DTYPE, TraceWriter, done_tasks, load

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def small() -> Workflow:
    wf = Workflow("small")
    wf.add_set("a", 2, "sleep", (2.0,))
    wf.add_set("b", 1, "sleep", (1.0,), cores=2, after=["a"])
    return wf


def test_simulated_trace_round_trip_and_metrics(tmp_path) -> None:
    path = str(tmp_path / "s.h5")
    wf = small()
    workers = uniform_workers(1, 2)
    tw = TraceWriter(path, wf, workers, {"mode": "async", "simulated": True})
    r = simulate(wf, workers, trace=tw)
    tw.close(makespan=r.makespan)
    tr = load(path)
    assert not tr.partial and tr.simulated and tr.mode == "async"
    assert tr.tasks.dtype == TASK_DTYPE
    assert tr.tasks["name"].tolist() == [b"a[0]", b"a[1]", b"b"]
    assert tr.tasks["host"].tolist() == [b"node0000"] * 3
    s = summarize(tr)
    assert s["makespan"] == pytest.approx(3.0)
    # cores: a 2 x 1 core x 2 s + b 2 cores x 1 s = 6 core-s over 2 cores x 3 s
    assert s["utilization"]["cpu"] == pytest.approx(1.0)
    assert s["tasks"] == 3 and s["throughput"] == pytest.approx(1.0)
    with h5py.File(path, "r") as f:  # plain h5py reads everything; no pickles
        g = f["runs/0"]
        assert set(g) >= {"tasks", "sets", "workers", "set_edges", "task_edges", "errors"}
        assert g["set_edges"][:].tolist() == [[0, 1, 0]]
        datasets: list = []
        g.visititems(lambda _n, o: datasets.append(o) if isinstance(o, h5py.Dataset) else None)
        assert datasets and all(ds.dtype.kind != "O" for ds in datasets)
        # format 4: the task rows are numbers only; name and host come from the tables
        assert g["tasks"].dtype == ROW_DTYPE and g.attrs["format_version"] == 4
        assert g["done/batches"].shape == (0,)  # the simulator writes whole rows
        assert all(g["tasks"].dtype[n].kind in "if" for n in ROW_DTYPE.names)


def test_names_of_many_one_task_sets_and_a_big_set(tmp_path) -> None:
    """Names are derived per set (one-task sets by a lookup: one set per futures
    submit), whatever order the rows come in."""
    path = str(tmp_path / "many.h5")
    wf = Workflow("many")
    for k in range(300):
        wf.add_set(f"x{k}", 1, "sleep", (1.0,))
    wf.add_set("m", 12, "sleep", (0.5,))
    wf.add_set("L" * 70, 2, "sleep", (0.5,))  # a name cut at 64 bytes
    workers = uniform_workers(1, 4)
    tw = TraceWriter(path, wf, workers, {"mode": "async", "simulated": True})
    simulate(wf, workers, trace=tw)
    tw.close()
    t = load(path).tasks
    got = dict(zip(t["task"].tolist(), t["name"].tolist()))
    assert got[0] == b"x0" and got[299] == b"x299"
    assert [got[300 + i] for i in range(12)] == [f"m[{i}]".encode() for i in range(12)]
    assert got[312] == b"L" * 64 and got[313] == b"L" * 64
    assert set(t["host"].tolist()) == {b"node0000"}


def test_format_1_rows_with_stored_names_still_load(tmp_path) -> None:
    path = str(tmp_path / "v1.h5")
    wf = small()
    tw = TraceWriter(path, wf, uniform_workers(1, 2), {"mode": "async", "simulated": True})
    simulate(wf, uniform_workers(1, 2), trace=tw)
    tw.close()
    with h5py.File(path, "a") as f:  # rewrite the rows the way format 1 stored them
        g = f["runs/0"]
        rows = g["tasks"][:]
        v1 = np.zeros(len(rows), dtype=TASK_DTYPE)
        for n in ROW_DTYPE.names:
            v1[n] = rows[n]
        v1["name"] = [b"old0", b"old1", b"old2"]
        v1["host"] = b"h1"
        del g["tasks"]
        g["tasks"] = v1
        f.attrs["format_version"] = 1
        del g.attrs["format_version"]
    tr = load(path)
    assert tr.tasks.dtype == TASK_DTYPE
    assert tr.tasks["name"].tolist() == [b"old0", b"old1", b"old2"]  # as stored
    assert tr.tasks["host"].tolist() == [b"h1"] * 3
    assert summarize(tr)["makespan"] == pytest.approx(3.0)
    # a resume appends a run of the current format: the root now describes the newest
    # run, the old group (no attribute: format 1) still loads
    tw = TraceWriter(path, wf, uniform_workers(1, 2), {"mode": "async", "simulated": True},
                     append=True)
    simulate(wf, uniform_workers(1, 2), trace=tw)
    tw.close()
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 4 and "name" not in f.attrs["task_fields"]
        assert "format_version" not in f["runs/0"].attrs
        assert f["runs/1"].attrs["format_version"] == 4
    assert load(path, run=0).tasks["name"].tolist() == [b"old0", b"old1", b"old2"]
    assert load(path, run=1).tasks["name"].tolist() == [b"a[0]", b"a[1]", b"b"]
    assert done_tasks(path) == {0, 1, 2}


def test_killed_run_keeps_flushed_rows(tmp_path) -> None:
    """A writer process killed without closing leaves a readable, partial trace."""
    path = str(tmp_path / "k.h5")
    code = f"""
import os, signal
from mpiwf import Workflow, uniform_workers
from mpiwf.trace import TraceWriter
wf = Workflow("k"); wf.add_set("a", 10)
tw = TraceWriter({path!r}, wf, uniform_workers(1, 1))
for i in range(6):
    tw.add((i, 0, i, 0, 4, 1, 1, 0, 1, 0, 0.0, 0.0, 0.0, 0.1 * i, 0.1 * i + 0.1, 0.1 * i + 0.1))
tw.flush()
tw.add((6, 0, 6, 0, 4, 1, 1, 0, 1, 0, 0.0, 0.0, 0.0, 0.6, 0.7, 0.7))
os.kill(os.getpid(), signal.SIGKILL)
"""
    r = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=ROOT),
                       timeout=60)
    assert r.returncode == -9
    tr = load(path)
    assert tr.partial
    assert sorted(tr.tasks["task"].tolist()) == list(range(6))
    assert done_tasks(path) == set(range(6))
    assert summarize(tr)["partial"] is True


def test_not_a_trace(tmp_path) -> None:
    p = tmp_path / "x.h5"
    p.write_bytes(b"not hdf5 at all")
    with pytest.raises(TraceError, match="not an HDF5 file"):
        load(str(p))
    q = tmp_path / "y.h5"
    with h5py.File(q, "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(TraceError, match="not an mpiwf trace"):
        load(str(q))
    r = subprocess.run([sys.executable, "-m", "mpiwf", "analyze", str(q)], capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not an mpiwf trace" in r.stderr


def test_analyze_json_and_comparison(tmp_path) -> None:
    paths = {}
    for mode in ("sequential", "async"):
        wf = Workflow("cmp")
        wf.add_set("a", 1, "sleep", (4.0,))
        wf.add_set("b", 1, "sleep", (1.0,), after=["a"])
        wf.add_set("c", 1, "sleep", (2.0,))
        wf.add_set("d", 1, "sleep", (2.0,), after=["c"])
        paths[mode] = str(tmp_path / f"{mode}.h5")
        w = uniform_workers(1, 2)
        tw = TraceWriter(paths[mode], wf, w, {"mode": mode, "simulated": True})
        simulate(wf, w, mode, trace=tw)
        tw.close()
    env = dict(os.environ, PYTHONPATH=ROOT)
    one = subprocess.run([sys.executable, "-m", "mpiwf", "analyze", paths["async"], "--json"],
                         capture_output=True, text=True, env=env, timeout=60)
    d = json.loads(one.stdout)
    assert d["makespan"] == pytest.approx(5.0) and d["tasks"] == 4
    assert set(d["utilization"]) == {"cpu", "gpu"} and d["throughput"] == pytest.approx(0.8)
    two = subprocess.run([sys.executable, "-m", "mpiwf", "analyze", paths["sequential"],
                          paths["async"], "--json"], capture_output=True, text=True, env=env,
                         timeout=60)
    c = json.loads(two.stdout)
    # sequential: stage 0 = max(4, 2), stage 1 = max(1, 2) -> 6; async 5
    assert c["improvement"] == pytest.approx(1 - 5 / 6)
    assert np.all(load(paths["async"]).tasks["status"] == DONE)


def _rows(n: int, t0: int = 0) -> np.ndarray:
    out = np.zeros(n, dtype=ROW_DTYPE)
    out["task"] = np.arange(t0, t0 + n)
    out["status"] = DONE
    out["started"] = np.arange(n) * 0.01
    out["ended"] = out["started"] + 0.005
    return out


def test_writer_thread_writes_what_the_main_loop_would(tmp_path) -> None:
    """Rows handed over as arrays, callables and tuples, with and without waiting, end
    up the same in a background writer's file as in a plain one."""
    wf = Workflow("bg")
    wf.add_set("a", 5000, "noop")
    got = []
    for bg in (False, True):
        path = str(tmp_path / f"bg{bg}.h5")
        tw = TraceWriter(path, wf, uniform_workers(1, 2), background=bg)
        assert (tw._thread is not None) is bg
        tw.add_rows(_rows(1000))
        tw.flush(wait=False)
        tw.add_rows(lambda: _rows(2000, 1000))
        tw.add((3000, 0, 3000, 0, DONE, 1, 1, 0, 1, 0, 0.0, 0.0, 0.0, 0.0, 40.0, 40.0))
        tw.add_error(3000, 0, 1, "h", "E", "m", "tb")
        tw.flush(wait=False)
        tw.add_rows(_rows(1999, 3001))
        tw.sync()
        tw.close(makespan=tw.makespan)
        tr = load(path)
        assert tr.attrs["complete"] and tr.attrs["makespan"] == pytest.approx(40.0)
        assert len(tr.errors) == 1
        got.append(tr.tasks)
    assert got[0]["task"].tolist() == got[1]["task"].tolist() == list(range(5000))
    assert (got[0]["ended"] == got[1]["ended"]).all()


def test_writer_thread_failure_is_raised_and_the_file_closed(tmp_path) -> None:
    wf = Workflow("bad")
    wf.add_set("a", 10, "noop")
    path = str(tmp_path / "bad.h5")
    tw = TraceWriter(path, wf, uniform_workers(1, 1), background=True)
    tw.add_rows(_rows(4))
    tw.flush()

    def broken() -> np.ndarray:
        raise ValueError("no rows today")

    tw.add_rows(broken)
    tw.flush(wait=False)  # returns at once; the failure comes with the next sync
    with pytest.raises(TraceError, match="no rows today"):
        tw.sync()
    tw.add_rows(broken)
    with pytest.raises(TraceError, match="no rows today"):
        tw.close()
    assert tw._thread is None and not tw.f.id.valid
    tr = load(path)
    assert tr.tasks["task"].tolist() == [0, 1, 2, 3]  # what was written before stays
    assert not tr.attrs["complete"] and "no rows today" in tr.attrs["error"]


def test_close_ends_the_thread_and_the_file_whatever_the_flush_raises(tmp_path) -> None:
    wf = Workflow("pre")
    wf.add_set("a", 10, "noop")
    path = str(tmp_path / "pre.h5")
    tw = TraceWriter(path, wf, uniform_workers(1, 1), background=True)
    tw.add_rows(_rows(3))
    tw.flush()

    def boom() -> None:
        raise RuntimeError("driver bug")

    tw.pre_flush = boom
    with pytest.raises(RuntimeError, match="driver bug"):
        tw.close()
    assert tw._thread is None and not tw.f.id.valid
    tr = load(path)
    assert tr.tasks["task"].tolist() == [0, 1, 2]
    assert not tr.attrs["complete"] and "driver bug" in tr.attrs["error"]


def _done_block(lo: int, n: int, recv: float, worker: int = 1) -> Any:
    """A DoneBlock of tasks lo .. lo+n-1 in one message from ``worker`` received at
    ``recv``, for a trace whose start_time is 0: task i started at i, ran 0.5 s (ready
    and dispatched at i, one log row each)."""
    from mpiwf.trace import BATCH_DTYPE, LOG_DTYPE, DoneBlock

    b = np.zeros(1, dtype=BATCH_DTYPE)
    b[0] = (n, recv, worker, 0.0)
    t = np.arange(lo, lo + n, dtype=np.float64)
    log = np.zeros(n, dtype=LOG_DTYPE)
    log["first"], log["end"], log["time"] = t, t + 1, t
    span = (float(lo), lo + n - 0.5) if n else (float("inf"), float("-inf"))
    return DoneBlock(np.arange(lo, lo + n), t, np.full(n, 0.5), b, log, log.copy(), span)


def test_a_done_group_cut_short_loads_what_every_column_holds(tmp_path) -> None:
    """Entries written without their batch row (a run killed between the writes) are
    not loaded; a column shorter than the batches (a damaged file) bounds them all."""
    from mpiwf.trace import DONE_FIELDS

    wf = Workflow("cut")
    wf.add_set("a", 10, "noop")
    path = str(tmp_path / "cut.h5")
    tw = TraceWriter(path, wf, uniform_workers(1, 2), start_time=0.0)
    tw.add_done(_done_block(0, 4, 8.0, worker=2))
    tw.add_done(lambda: _done_block(4, 3, 9.0, worker=2))
    tw.close()
    tr = load(path)
    assert tr.tasks["task"].tolist() == list(range(7))
    assert tr.tasks["received"].tolist() == [8.0] * 4 + [9.0] * 3
    assert tr.tasks["worker"].tolist() == [2] * 7 and tr.attrs["makespan"] == 6.5
    assert done_tasks(path) == set(range(7))
    with h5py.File(path, "a") as f:  # three more entries, their batch row never written
        g = f["runs/0/done"]
        for name, _t, _m in DONE_FIELDS:
            g[name].resize((10,))
    assert len(load(path).tasks) == 7 and done_tasks(path) == set(range(7))
    with h5py.File(path, "a") as f:  # a column cut short
        f["runs/0/done/duration"].resize((5,))
    assert sorted(load(path).tasks["task"].tolist()) == [0, 1, 2, 3, 4]
    assert done_tasks(path) == set(range(5))


def test_done_columns_go_out_in_whole_chunks_and_tails_at_time_flushes(tmp_path) -> None:
    """A flush for size writes whole chunks only; any other flush writes the rest too
    (padded). What the file shows is always exactly what was written, in order."""
    wf = Workflow("chunks")
    wf.add_set("a", 4505, "noop")  # every task id written below
    path = str(tmp_path / "ch.h5")
    tw = TraceWriter(path, wf, uniform_workers(1, 2), start_time=0.0, done_chunk=1024)
    assert tw._chunk == 1024 and tw._direct
    nxt = 0

    def add(n: int) -> None:
        nonlocal nxt
        tw.add_done(_done_block(nxt, n, 1e4 + nxt))
        nxt += n

    def on_disk() -> list[int]:
        return tw.done_ds[0][:].tolist()

    add(700)
    tw.flush(tail=False)
    assert on_disk() == []  # not a whole chunk yet
    add(700)
    tw.flush(tail=False)
    assert on_disk() == list(range(1024))
    tw.flush()  # a time flush: the rest, padded
    assert on_disk() == list(range(1400))
    add(100)
    tw.flush(tail=False)  # the tail grows in memory; what is on disk stays readable
    assert on_disk() == list(range(1400))
    add(3000)
    tw.flush(tail=False)
    assert on_disk() == list(range(4096))
    assert tw.done_ds[1][:].tolist() == [float(x) for x in range(4096)]
    assert tw.done_ds[2][:].tolist() == [0.5] * 4096
    add(5)
    tw.close()
    t = load(path).tasks
    assert t["task"].tolist() == list(range(4505))
    assert np.array_equal(t["ended"], t["started"] + 0.5)
    assert np.array_equal(t["received"], 1e4 + np.repeat([0.0, 700, 1400, 1500, 4500],
                                                         [700, 700, 100, 3000, 5]))
    assert np.array_equal(t["dispatched"], t["task"]) and np.array_equal(t["ready"], t["task"])


def test_a_pending_tail_is_written_by_any_flush_for_time_and_never_read_as_a_hole(
        tmp_path) -> None:
    """Entries left in memory by a flush for size reach the file at the next flush
    that is not for size, even one with nothing new (or an empty block); entries the
    batches count but the file never got (columns grown, chunk not written: a kill)
    are not loaded, and are not taken for task 0."""
    from mpiwf.trace import DONE_FIELDS

    wf = Workflow("tail")
    wf.add_set("a", 7002, "noop")  # every task id written below
    path = str(tmp_path / "t.h5")

    tw = TraceWriter(path, wf, uniform_workers(1, 2), start_time=0.0, done_chunk=1024)
    tw.add_done(_done_block(1, 10, 1.0))
    tw.flush(tail=False)
    assert tw.tail_pending and tw.done_ds[0].shape == (0,)
    tw.add_done(_done_block(11, 0, 11.0))  # an empty block: the tail still goes out
    tw.flush()
    assert not tw.tail_pending and tw.done_ds[0][:].tolist() == list(range(1, 11))
    tw.add_done(_done_block(11, 1500, 11.0))
    tw.flush(tail=False)  # one whole chunk out, 486 entries held
    tw.close()
    assert load(path).tasks["task"].tolist() == list(range(1, 1511))
    with h5py.File(path, "a") as f:  # as if killed after growing the columns only
        g = f["runs/0/done"]
        for name, _t, _m in DONE_FIELDS:
            g[name].resize((3000,))
        b = g["batches"]
        b.resize((b.shape[0] + 1,))
        b[-1] = (1489, 99.0, 1, 0.0)
        g["task"][2048:2050] = [7000, 7001]  # a later chunk written: past the hole
    t = load(path).tasks
    assert t["task"].tolist() == list(range(1, 1511))
    assert done_tasks(path) == set(range(1, 1511))  # task 0 never ran


def test_format_3_done_columns_still_load(tmp_path) -> None:
    """A format 3 ``done`` group (times stored corrected, three-field batches) loads
    as before."""
    wf = Workflow("f3")
    wf.add_set("a", 4, "noop")
    path = str(tmp_path / "f3.h5")
    tw = TraceWriter(path, wf, uniform_workers(1, 2), start_time=0.0)
    tw.close()
    with h5py.File(path, "a") as f:
        g = f["runs/0"]
        g.attrs["format_version"] = 3
        del g["done"]
        d = g.create_group("done")
        d["task"] = np.array([2, 0, 1, 3])
        d["started"] = np.array([1.0, 2.0, 3.0, 4.0])
        d["ended"] = d["started"][:] + 0.25
        d["ready"] = np.array([0.5, 0.5, 0.5, 0.5])
        d["dispatched"] = np.array([0.75, 1.5, 2.5, 3.5])
        d["batches"] = np.array([(3, 3.5, 1), (1, 4.5, 2)],
                                dtype=[("n", "<i4"), ("received", "<f8"), ("worker", "<i4")])
    t = load(path).tasks
    assert t["task"].tolist() == [2, 0, 1, 3]
    assert t["started"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert t["ended"].tolist() == [1.25, 2.25, 3.25, 4.25]
    assert t["dispatched"].tolist() == [0.75, 1.5, 2.5, 3.5]
    assert t["received"].tolist() == [3.5, 3.5, 3.5, 4.5] and t["worker"].tolist() == [1, 1, 1, 2]


def test_log_rows_give_each_task_its_last_time() -> None:
    """A task in several log rows (sent again after its worker was lost) takes the
    last row's time; a task in none gets NaN."""
    from mpiwf.trace import LOG_DTYPE, _log_times

    log = np.array([(0, 5, 1.0), (5, 8, 2.0), (2, 3, 3.0), (10, 12, 4.0), (3, 5, 5.0),
                    (9, 9, 6.0)], dtype=LOG_DTYPE)
    got = _log_times(log, np.array([0, 2, 3, 4, 6, 9, 11, 20]))
    assert np.array_equal(got, [1.0, 3.0, 5.0, 5.0, 2.0, np.nan, 4.0, np.nan], equal_nan=True)


def test_format_4_times_follow_the_clock_offsets_and_clamps(tmp_path) -> None:
    """Format 4 stores what the worker reported; load() corrects the start by the
    message's clock offset and the trace's start time, then keeps dispatched <=
    started <= ended <= received."""
    from mpiwf.trace import BATCH_DTYPE, LOG_DTYPE, DoneBlock

    wf = Workflow("f4")
    wf.add_set("a", 3, "noop")
    path = str(tmp_path / "f4.h5")
    tw = TraceWriter(path, wf, uniform_workers(1, 2), start_time=100.0)
    b = np.array([(2, 5.0, 1, 0.5), (1, 6.0, 2, 0.0)], dtype=BATCH_DTYPE)
    log = np.array([(0, 3, 1.0)], dtype=LOG_DTYPE)
    # task 0: worker 1's clock 0.5 s ahead: started 102.5 - 0.5 - 100 = 2
    # task 1: started before it was sent (1.0): clamped to 1.0, and it ends at receipt
    # task 2: ran past its receipt on a skewed clock: ended clamped to received
    tw.add_done(DoneBlock(np.array([0, 1, 2]), np.array([102.5, 100.5, 105.9]),
                          np.array([0.25, 9.0, 0.5]), b, log,
                          np.array([(0, 3, 0.5)], dtype=LOG_DTYPE), (1.0, 6.0)))
    tw.close()
    t = load(path).tasks
    assert np.allclose(t["started"], [2.0, 1.0, 5.9], rtol=0, atol=1e-9)
    assert t["ended"].tolist() == [2.25, 5.0, 6.0]
    assert t["dispatched"].tolist() == [1.0] * 3 and t["ready"].tolist() == [0.5] * 3


def test_a_deferred_writer_checks_the_path_at_once_and_lays_out_on_first_use(tmp_path) -> None:
    """defer=True: a path that cannot be created fails at construction (before any
    task runs); the run group appears at start() or at the first use that needs it
    (a flush, an attribute, close)."""
    wf = Workflow("d")
    wf.add_set("a", 2)
    with pytest.raises(TraceError, match="cannot create trace"):
        TraceWriter(str(tmp_path / "no" / "such" / "dir.h5"), wf, uniform_workers(1, 1),
                    defer=True)
    path = str(tmp_path / "d.h5")
    tw = TraceWriter(path, wf, uniform_workers(1, 1), {"mode": "async"}, defer=True)
    assert not tw.started and tw.g is None
    tw.set_attr("note", "x")  # lays it out
    assert tw.started and tw.g.attrs["mode"] == "async" and tw.g.attrs["note"] == "x"
    tw.close()
    untouched = str(tmp_path / "u.h5")
    TraceWriter(untouched, wf, uniform_workers(1, 1), defer=True).close()
    tr = load(untouched)
    assert len(tr.tasks) == 0 and tr.attrs["complete"] and len(tr.sets) == 1
    late = str(tmp_path / "l.h5")  # a set added before the layout keeps its time
    tw = TraceWriter(late, wf, uniform_workers(1, 1), defer=True)
    wf.add_set("b", 1, after=["a"])
    tw.sets_added(created=5.0)
    tw.close()
    assert load(late).sets[1]["created"] == 5.0 and load(late).sets[0]["created"] == 0.0
    cut = str(tmp_path / "c.h5")  # rank 0 gone before laying it out: one clear error
    TraceWriter(cut, wf, uniform_workers(1, 1), defer=True).f.close()
    with pytest.raises(TraceError, match="holds no run"):
        load(cut)


def test_the_writer_reserves_space_ahead_and_gives_it_back(tmp_path, monkeypatch) -> None:
    """Whole chunks of the done columns go into disk space reserved ahead of the
    file's end (where the file system has fallocate); close() gives back what was
    not used. A failing fallocate turns it off; the trace is the same."""
    import mpiwf.trace as trace_mod

    wf = Workflow("r")
    wf.add_set("a", 10**6, "noop", duration=1e-6)
    cols = [np.arange(65536, dtype=np.int64), np.full(65536, 1.0), np.full(65536, 1e-6)]
    path = str(tmp_path / "r.h5")
    tw = TraceWriter(path, wf, uniform_workers(1, 3))
    for _ in range(3):
        tw._chunks_out(cols)
    st = os.stat(path)
    if tw._fd is not None:  # reserved: more blocks than bytes until close
        assert tw._reserved > st.st_size and st.st_blocks * 512 > st.st_size + (1 << 20)
    tw.close()
    st = os.stat(path)
    assert st.st_blocks * 512 <= st.st_size + (64 << 10)

    # a workflow of three chunks' tasks: never more reserved than they fill, so
    # once they are written nothing is left past the file's end to give back
    small = Workflow("s")
    small.add_set("a", 3 * 65536, "noop", duration=1e-6)
    tw = TraceWriter(str(tmp_path / "s.h5"), small, uniform_workers(1, 3))
    for _ in range(3):
        tw._chunks_out(cols)
        if tw._fd is not None:
            assert tw._reserved <= os.stat(tw.path).st_size + (3 - tw._full) * 65536 * 24
    st = os.stat(tw.path)
    assert st.st_blocks * 512 <= st.st_size + (64 << 10)
    tw.close()

    calls: list[int] = []

    def failing(fd: int, mode: int, offset: int, length: int) -> int:
        calls.append(mode)
        return -1

    monkeypatch.setattr(trace_mod, "_fallocate_fn", failing)
    off = str(tmp_path / "off.h5")
    tw = TraceWriter(off, wf, uniform_workers(1, 3))
    for _ in range(3):
        tw._chunks_out(cols)
    assert calls == [1] and tw._fd is None and tw._reserved == 0  # tried once, then off
    tw.close()
    with h5py.File(off, "r") as f:
        assert f["runs/0/done/task"].shape[0] == 3 * 65536
        assert np.array_equal(f["runs/0/done/task"][65536:131072], cols[0])


def test_the_last_chunk_is_written_padded_with_the_fill_values(tmp_path) -> None:
    """Entries past the last whole chunk go out as one chunk padded with the
    columns' fill values (task -1: never written, where load() stops), through one
    buffer the three columns share, also when it is written again."""
    wf = Workflow("p")
    wf.add_set("a", 5000, "noop", duration=1e-6)
    tw = TraceWriter(str(tmp_path / "p.h5"), wf, uniform_workers(1, 1), done_chunk=1024)

    def cols(lo: int, hi: int) -> list[np.ndarray]:
        return [np.arange(lo, hi, dtype=np.int64), np.arange(lo, hi) + 0.5,
                np.full(hi - lo, 2e-6)]

    for lo, hi in ((0, 1500), (1500, 1600)):
        tw._chunks_out(cols(lo, hi))
        tw._write_tail()
        tail = hi - 1024
        for ds, want, fill in zip(tw.done_ds, cols(1024, hi), (-1, 0.0, 0.0)):
            _, raw = ds.id.read_direct_chunk((1024,))
            chunk = np.frombuffer(raw, dtype=ds.dtype)
            assert len(chunk) == 1024 and np.array_equal(chunk[:tail], want)
            assert (chunk[tail:] == fill).all()
    tw.close()
    with h5py.File(tw.path, "r") as f:
        assert np.array_equal(f["runs/0/done/task"][:], np.arange(1600))


@pytest.mark.parametrize("edit, want", [
    ("f['runs'].move('0', 'zero')", "run groups not numbered"),
    ("del f['runs']; f.create_dataset('runs', data=[1, 2])", "/runs is not a group"),
    ("f['runs/0'].attrs['start_time'] = 'abc'", "could not convert"),
    # ids no set holds: arrays sized by them (terabytes) or a negative bincount
    ("_put(f, 'runs/0/done/task', np.full(5, 10**12))", "task id 1000000000000 is not one"),
    ("_col(f, 'runs/0/done/dispatches', 'end', 10**12)", None),
    ("_col(f, 'runs/0/done/readies', 'end', 10**12)", None),
    ("_col(f, 'runs/0/done/readies', 'first', -10)", "a log of task runs holds task id -10"),
    ("_put(f, 'runs/0/tasks', _row(task=10**12))", "task id 1000000000000 is not one"),
    ("_put(f, 'runs/0/tasks', _row(set=-7))", "negative set id -7"),
    ("_put(f, 'runs/0/tasks', _row(set=3))", "set id 3 past the sets table (1 set(s))"),
    ("_put(f, 'runs/0/task_edges', np.arange(3))", "task_edges has shape (3,)"),
    ("_put(f, 'runs/0/set_edges', np.arange(4))", "set_edges has shape (4,)"),
    ("f['runs/0'].attrs['ntasks'] = 'x'", "run attribute ntasks is 'x'"),
])
def test_hand_edited_traces_are_one_line_not_a_traceback(tmp_path, capsys, edit, want) -> None:
    import h5py

    from mpiwf.cli import main as cli_main

    spec = tmp_path / "w.yaml"
    spec.write_text("name: w\nsets:\n  - {name: a, n: 5}\n")
    path = str(tmp_path / "t.h5")
    assert cli_main(["run", str(spec), "--trace", path, "--progress", "0"]) == 0
    with h5py.File(path, "a") as f:
        exec(edit, {"f": f, "np": np, "_put": _put, "_col": _col, "_row": _row})
    capsys.readouterr()
    for argv in (["analyze", path], ["export", path, "-o", str(tmp_path / "t.csv")]):
        if want is None:  # a log's run past the workflow's tasks is cut, not sized
            assert cli_main(argv) == 0
            continue
        assert cli_main(argv) == 2
        err = capsys.readouterr().err
        assert "damaged trace" in err and want in err and err.count("\n") == 1, err


def _put(f, path: str, data) -> None:
    del f[path]
    f[path] = data


def _col(f, path: str, field: str, value) -> None:
    arr = f[path][()]
    arr[field] = value
    _put(f, path, arr)


def _row(**fields):
    """One row of the tasks table (a failed attempt of task 0), some fields replaced."""
    from mpiwf.trace import ROW_DTYPE

    row = np.zeros(1, dtype=ROW_DTYPE)
    row["status"] = 5
    for k, v in fields.items():
        row[k] = v
    return row


@pytest.mark.parametrize("table", [np.zeros(0), np.zeros(3, dtype=[("x", "<i4")]),
                                   np.zeros(2, dtype=[("task", "<i8"), ("status", "i1")])])
def test_a_tasks_table_without_its_fields_beside_done_is_a_damaged_trace(
        tmp_path, capsys, table) -> None:
    """A run whose ``done`` group is sound but whose ``tasks`` dataset is empty of
    fields, of another type, or short of some: refused as a damaged trace (the merge
    with ``done`` used to fill the missing fields with zeros and analyse it)."""
    from mpiwf.cli import main as cli_main

    spec = tmp_path / "w.yaml"
    spec.write_text("name: w\nsets:\n  - {name: a, n: 5}\n")
    path = str(tmp_path / "t.h5")
    assert cli_main(["run", str(spec), "--trace", path, "--progress", "0"]) == 0
    with h5py.File(path, "a") as f:
        assert "done" in f["runs/0"]
        del f["runs/0/tasks"]
        f["runs/0/tasks"] = table
    with pytest.raises(TraceError, match="damaged trace .*tasks table lacks field"):
        load(path)
    capsys.readouterr()
    for argv in (["analyze", path], ["export", path, "-o", str(tmp_path / "t.csv")]):
        assert cli_main(argv) == 2
        err = capsys.readouterr().err
        assert "damaged trace" in err and "tasks table lacks field(s)" in err, err
        assert err.count("\n") == 1, err


def test_sets_added_never_write_the_names_of_sets_written_before(tmp_path, monkeypatch) -> None:
    """A set added at run time may change the stage and level of sets written before:
    those two fields alone are rewritten. Rewriting whole rows gave every name a new
    heap object each time, and a run killed while sets were being added could leave
    names pointing at heap data never written (the trace could not be read)."""
    wf = Workflow("grow")
    wf.add_set("a", 2, "noop")
    wf.add_set("b", 2, "noop")
    tw = TraceWriter(str(tmp_path / "t.h5"), wf, uniform_workers(1, 2))
    tw.start()
    writes: list[Any] = []
    orig = h5py.Dataset.__setitem__

    def spy(self, key, value):  # type: ignore[no-untyped-def]
        if self.name.endswith("/sets"):
            writes.append(key)
        return orig(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", spy)
    wf.add_set("c", 2, "noop", after=["a"])
    wf.add_edge(wf.sets[2].offset, wf.sets[1].offset)  # b now waits for c: deeper
    tw.sets_added(created=1.0)
    wf.add_set("d", 1, "noop", after=["b"])
    tw.sets_added(created=2.0)
    tw.close()
    # only appends: each write starts at the rows written before it
    assert [(k.start, k.stop) for k in writes] == [(2, None), (3, None)]
    want = [(d["name"], d["stage"], d["level"]) for d in wf.describe()]
    assert want[1][1:] == (2, 2)  # b's stage and level did change
    got = [(s["name"], s["stage"], s["level"]) for s in load(tw.path).sets]
    assert got == want

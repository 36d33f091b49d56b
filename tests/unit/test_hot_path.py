"""The dispatch hot path: deep windows for tiny tasks, bare-id messages, compact trace rows."""

from __future__ import annotations

import os
import threading
import time
from array import array
from collections import deque

import h5py
import numpy as np
import pytest

from mpiwf import Workflow
from mpiwf.comm import Endpoint, QueueHub
from mpiwf.local import run_threads
from mpiwf.master import Master, TaskEvent
from mpiwf.protocol import (
    STATUS_CANCELLED,
    STATUS_OK,
    Tag,
    pack_plain,
    pack_results,
    setdef,
    unpack_plain,
    unpack_results,
)
from mpiwf.resources import uniform_workers
from mpiwf.scheduler import DONE, FAILED, Scheduler
from mpiwf.trace import TraceWriter, load
from mpiwf.worker import Executor, Worker

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def _sched(wf: Workflow, nworkers: int = 3, **kw: object) -> Scheduler:
    args: dict = dict(prefetch=4, short_task=0.05, batch=64, validate=True)
    args.update(kw)
    return Scheduler(wf, uniform_workers(1, nworkers), **args)


def test_window_depth_follows_the_duration_estimate() -> None:
    wf = Workflow()
    wf.add_set("null", 10, "noop", duration=0.0)
    wf.add_set("s100", 10, "spin", (100e-6,))
    wf.add_set("s1ms", 10, "spin", (1e-3,))
    wf.add_set("long", 10, "spin", (1.0,))
    s = _sched(wf)
    caps = [s.cls_cap[s.s_cls[sid]] for sid in range(4)]
    # 1 ms of look-ahead: 64 null tasks (the batch), 10 of 100 us, the prefetch floor
    # for 1 ms, and a long task is not short at all (one at a time)
    assert caps == [65, 11, 5, 1]
    assert s.cap == 65


def test_a_set_without_an_estimate_gets_a_shallower_deep_window() -> None:
    """Duration 0 means unknown: such tasks may be long, so a worker holds at most
    UNKNOWN_BATCH of them (one worker with a deep window of long tasks would run the
    tail alone); a tiny estimate gets the whole batch."""
    from mpiwf.scheduler import UNKNOWN_BATCH

    wf = Workflow()
    wf.add_set("unknown", 10, "noop", duration=0.0)
    wf.add_set("tiny", 10, "noop", duration=1e-6)
    wf.add_set("s5us", 10, "spin", (5e-6,))
    s = _sched(wf, batch=4 * UNKNOWN_BATCH, lookahead=0.01)
    caps = [s.cls_cap[s.s_cls[sid]] for sid in range(3)]
    assert caps == [1 + UNKNOWN_BATCH, 1 + 4 * UNKNOWN_BATCH, 1 + 4 * UNKNOWN_BATCH]
    small = _sched(wf, batch=64)  # a batch below the cap applies to all of them
    assert [small.cls_cap[small.s_cls[sid]] for sid in range(3)] == [65, 65, 65]


def test_batch_off_keeps_the_plain_prefetch_window() -> None:
    wf = Workflow()
    wf.add_set("null", 100, "noop", duration=0.0)
    s = _sched(wf, batch=0)
    s.start()
    out = s.schedule()
    assert len(out) == 3 * 5
    assert max(s.load) == 5


def test_deep_window_fills_round_robin_and_refills() -> None:
    wf = Workflow()
    wf.add_set("null", 1000, "noop", duration=0.0)
    s = _sched(wf)
    s.start()
    first = s.schedule()
    assert len(first) == 3 * 65
    per = np.bincount([g[0] for _t, g in first], minlength=3)
    assert per.tolist() == [65, 65, 65]
    # tasks go out in id order, each worker's share as one run (one message)
    assert [t for t, _g in first] == list(range(195))
    s2 = _sched(wf)
    s2.start()
    runs = s2.schedule_runs()
    assert [(a, b) for a, b, _g in runs] == [(0, 65), (65, 130), (130, 195)]
    assert len({g for _a, _b, g in runs}) == 3
    for t, _g in first[:16]:
        s.task_done(t)
    again = s.schedule()
    assert len(again) == 16
    assert s.load == [65, 65, 65]


def test_mixed_windows_never_exceed_the_smaller_cap() -> None:
    wf = Workflow()
    wf.add_set("slow", 30, "spin", (1e-3,))   # window 5
    wf.add_set("null", 300, "noop", duration=0.0)   # window 65
    s = _sched(wf)
    s.start()
    inflight: deque[int] = deque()
    while not s.finished:
        for t, g in s.schedule():
            inflight.append(t)
            w = g[0]
            if s.short_mode[w]:
                assert s.load[w] <= s.w_cap[w]
        for _ in range(min(7, len(inflight))):
            s.task_done(inflight.popleft())
    assert s.n_done == 330


def test_deep_window_respects_dependencies() -> None:
    wf = Workflow()
    wf.add_set("a", 200, "noop", duration=0.0)
    wf.add_set("b", 200, "noop", duration=0.0, after_each=["a"])
    wf.add_set("c", 200, "noop", duration=0.0, after=["b"])
    s = _sched(wf, nworkers=2)
    s.start()
    done: set[int] = set()
    inflight: deque[int] = deque()
    while not s.finished:
        for t, _g in s.schedule():
            if 200 <= t < 400:
                assert t - 200 in done
            if t >= 400:
                assert all(x in done for x in range(200, 400))
            inflight.append(t)
        for _ in range(min(16, len(inflight))):
            t = inflight.popleft()
            s.task_done(t)
            done.add(t)
    assert len(done) == 600


def test_worker_takes_bare_ids_and_tuples_and_cancels_both() -> None:
    wf = Workflow()
    ts = wf.add_set("e", 4, "echo", (7,))
    hub = QueueHub(2)
    master, wep = hub.endpoint(0), hub.endpoint(1)
    w = Worker(wep, Executor(1, "."))
    # 4 tasks in one message: 2 bare ids, 2 full TaskMsg tuples
    master.send(1, Tag.TASKS, ([setdef(ts)], [0, (1, 2, None, None), 2, (3, 0, None, None)]))
    th = threading.Thread(target=w.run, daemon=True)
    th.start()
    got = []
    while len(got) < 4:
        msg = master.poll()
        if msg is not None and msg[1] == Tag.RESULTS:
            got.extend(unpack_results(msg[2]))
    master.send(1, Tag.STOP, None)
    th.join(10)
    assert not th.is_alive()
    by = {r[0]: r for r in got}
    assert sorted(by) == [0, 1, 2, 3]
    assert by[1][1] == 2 and by[0][1] == 0  # attempts travel with tuples, 0 for ids
    assert all(r[2] == STATUS_OK and r[5]["task"] == f"e[{r[0]}]" and r[5]["args"] == [7]
               for r in got)

    w2 = Worker(hub.endpoint(1), Executor(1, "."))
    w2._accept([setdef(ts)], [0, (1, 3, None, None)])
    hub.endpoint(0).send(1, Tag.CANCEL, None)
    hub.endpoint(0).send(1, Tag.STOP, None)
    w2.run()
    msgs = []
    while (m := master.poll()) is not None:
        msgs.append(m)
    res = [r for _s, tag, p in msgs if tag == Tag.RESULTS for r in unpack_results(p)]
    assert sorted((r[0], r[1], r[2]) for r in res) == [(0, 0, STATUS_CANCELLED),
                                                       (1, 3, STATUS_CANCELLED)]

    # a multi-rank task is not dropped: another member may be in it already, waiting
    # for this one in its collective (the CANCEL reached this member first)
    w3 = Worker(hub.endpoint(1), Executor(1, "."))
    w3._accept([setdef(ts)], [(0, 0, (1, 2), None), (1, 0, None, None)])
    hub.endpoint(0).send(1, Tag.CANCEL, None)
    hub.endpoint(0).send(1, Tag.STOP, None)
    w3.run()
    res = []
    while (m := master.poll()) is not None:
        if m[1] == Tag.RESULTS:
            res.extend(unpack_results(m[2]))
        elif m[1] == Tag.RESULTS_RAW:
            res.extend(unpack_plain(m[2]))
    assert sorted((r[0], r[2]) for r in res) == [(0, STATUS_OK), (1, STATUS_CANCELLED)]


def _run(wf: Workflow, path: str, nworkers: int = 3) -> Master:
    tw = TraceWriter(path, wf, uniform_workers(1, nworkers))
    s, m = run_threads(wf, nworkers=nworkers, trace=tw)
    tw.close()
    assert s.tasks == wf.ntasks
    return m


def test_compact_rows_match_the_schema_and_order_times(tmp_path) -> None:
    wf = Workflow("rows")
    wf.add_set("a", 300, "noop", duration=0.0)
    wf.add_set("one", 1, "noop", after=["a"])
    wf.add_set("bad", 3, "fail", ("x",), after=["a"], retries=1)
    wf.add_set("b", 50, "noop", duration=0.0, cores=1, after_each=[])
    path = str(tmp_path / "r.h5")
    _run(wf, path)
    t = load(path).tasks
    done = t[t["status"] == DONE]
    failed = t[t["status"] == FAILED]
    assert sorted(done["task"].tolist()) == list(range(301)) + list(range(304, 354))
    # every failed task ran twice (one retry), each attempt has its own row
    assert sorted(zip(failed["task"].tolist(), failed["attempt"].tolist())) == \
        [(301, 0), (301, 1), (302, 0), (302, 1), (303, 0), (303, 1)]
    order = ["created", "ready", "dispatched", "started", "ended", "received"]
    for a, b in zip(order, order[1:]):
        assert np.all(t[a] <= t[b]), (a, b)
    names = dict(zip(t["task"].tolist(), t["name"].tolist()))
    assert names[0] == b"a[0]" and names[299] == b"a[299]" and names[300] == b"one"
    assert names[353] == b"b[49]"
    assert set(done["set"].tolist()) == {0, 1, 3}
    assert np.all(done["index"] == done["task"] - np.where(done["set"] == 3, 304,
                                                            np.where(done["set"] == 1, 300, 0)))
    assert set(t["worker"].tolist()) <= {1, 2, 3}
    assert np.all(t["host"] != b"") and np.all(t["nworkers"] == 1)
    # the dependency of "one" on all of "a" holds in the recorded times
    assert done[done["task"] == 300]["started"][0] >= done[done["task"] < 300]["ended"].max()


def test_index_names_match_python_formatting() -> None:
    from mpiwf.trace import _index_names

    idx = np.array([0, 7, 9, 10, 11, 99, 100, 101, 999, 1000, 123456789, 10**12])
    got = _index_names("sät".encode(), idx).tolist()
    assert got == [f"sät[{i}]".encode() for i in idx.tolist()]
    assert _index_names(b"x", np.zeros(0, dtype=np.int64)).tolist() == []


def test_sched_scale_benchmark_runs_and_reports(capsys) -> None:
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "sched_scale.py")
    spec = importlib.util.spec_from_file_location("sched_scale", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--max", "1e4", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    for shape in ("independent", "layered", "one-to-one"):
        assert any(line.startswith(shape) for line in out.splitlines())
        assert f"bytes_per_task[{shape}" in out
    assert mod.main(["--max", "10"]) == 2


def test_result_batches_travel_as_columns_and_round_trip() -> None:
    import pickle


    rows = [(5, 0, STATUS_OK, 1.5, 0.25, None, None),
            (6, 2, STATUS_OK, 2.5, 0.5, np.arange(3), None),  # a value that is an array
            (7, 1, 1, 3.5, 0.0, None, ("E", "m", "tb", 2, "h"))]
    b = pickle.loads(pickle.dumps(pack_results(rows), protocol=pickle.HIGHEST_PROTOCOL))
    assert b[0].typecode == "q" and b[3].typecode == "d" and b[0].tolist() == [5, 6, 7]
    back = unpack_results(b)
    assert [r[:5] for r in back] == [r[:5] for r in rows]
    assert back[0][5] is None and back[1][5].tolist() == [0, 1, 2] and back[2][6][0] == "E"
    plain = pack_results([(1, 0, STATUS_OK, 0.0, 0.0, None, None)])
    assert plain[5] is None and plain[6] is None  # null tasks: no per-row objects at all


class _Ep:
    """Rank 0's side of a transport that only records what it sends."""

    def __init__(self) -> None:
        self.sent: list = []

    def send(self, dest: int, tag: int, obj: object) -> None:
        self.sent.append((dest, tag, obj))

    def poll(self) -> None:
        return None


class _Instant(Endpoint):
    """Workers that finish each task the moment it is sent, 50 results a message (raw
    bytes with ``raw``, else pickled columns); task t runs for t nanoseconds."""

    def __init__(self, raw: bool = False) -> None:
        self.raw = raw
        self.inbox: deque = deque()

    def send(self, dest: int, tag: int, obj: object) -> None:
        if tag == Tag.TASKS:
            ids = [t if isinstance(t, int) else t[0] for t in obj[1]]  # type: ignore[index]
            now = time.time()
            for i in range(0, len(ids), 50):
                batch = [(t, 0, STATUS_OK, now, t * 1e-9, None, None) for t in ids[i:i + 50]]
                self.inbox.append((dest, Tag.RESULTS_RAW, pack_plain(batch)) if self.raw else
                                  (dest, Tag.RESULTS, pack_results(batch)))
        elif tag == Tag.STOP:
            self.inbox.append((dest, Tag.BYE, {}))

    def poll(self):  # type: ignore[no-untyped-def]
        return self._deliver(self.inbox.popleft()) if self.inbox else None


def _flood(tmp_path, monkeypatch, name: str, rows: int, n: int = 20000,  # type: ignore[no-untyped-def]
           **kw: object) -> tuple[Workflow, list, str, TraceWriter]:
    """``n`` null tasks on 3 workers with rank 0 flushing for size every ``rows``
    results into a trace of 1,024-entry chunks (``kw``: more TraceWriter settings)."""
    import mpiwf.master as master_mod

    monkeypatch.setattr(master_mod, "ROWS_PER_FLUSH", rows)
    wf = Workflow(name)
    wf.add_set("a", n, "noop", duration=1e-6)
    workers = uniform_workers(1, 3)
    path = str(tmp_path / f"{name}.h5")
    return wf, workers, path, TraceWriter(path, wf, workers, done_chunk=1024, **kw)  # type: ignore[arg-type]


def _instant_master(wf: Workflow, workers: list, tw: TraceWriter) -> Master:
    """A master over workers that finish every task the moment it is sent."""
    from mpiwf.config import Config

    return Master(wf, Config(progress_interval=0), _Instant(raw=True), workers,  # type: ignore[arg-type]
                  tw, start_time=tw.start_time)


def _master(wf: Workflow, nworkers: int, path: str, **kw: object) -> tuple[Master, TraceWriter]:
    """A master over a recording transport, its first decisions already sent."""
    from mpiwf.config import Config

    workers = uniform_workers(1, nworkers)
    tw = TraceWriter(path, wf, workers)
    m = Master(wf, Config(progress_interval=0), _Ep(), workers, tw, **kw)  # type: ignore[arg-type]
    m.sched.now = time.time()  # what Master.run does first
    m.sched.start()
    m._dispatch()
    return m, tw


def test_a_mixed_batch_records_each_row_once(tmp_path) -> None:
    """Successful rows go to the trace as the batch's columns; a late copy is dropped,
    a failure gets its own row, and both kinds can share one message."""

    wf = Workflow("mixed")
    wf.add_set("a", 6, "noop", duration=0.0, retries=1)
    path = str(tmp_path / "m.h5")
    m, tw = _master(wf, 1, path)
    assert sorted(m.sched.running) == list(range(6))
    src = m.workers[0].rank
    now = time.time() + 0.001  # kernels start just after dispatch, end before receipt
    time.sleep(0.35)
    m._on_results(src, pack_results([
        (0, 0, STATUS_OK, now, 0.1, None, None),
        (1, 0, 1, now, 0.1, None, ("ValueError", "no", "", src, "h")),  # fails, retried
        (2, 0, STATUS_OK, now, 0.1, None, None),
        (2, 0, STATUS_OK, now, 0.1, None, None),  # a duplicate: no longer running
        (3, 5, STATUS_OK, now, 0.1, None, None),  # a stale attempt number
    ]))
    m._on_results(src, pack_results([(4, 0, STATUS_OK, now, 0.2, None, None),
                                     (5, 0, STATUS_OK, now, 0.3, None, None)]))
    tw.close()
    t = load(path).tasks
    got = sorted(zip(t["task"].tolist(), t["attempt"].tolist(), t["status"].tolist()))
    assert got == [(0, 0, DONE), (1, 0, FAILED), (2, 0, DONE), (4, 0, DONE), (5, 0, DONE)]
    assert m.sched.n_done == 4 and 3 in m.sched.running and m.sched.attempts[1] == 1
    d = t[t["status"] == DONE]
    assert sorted(np.round(d["ended"] - d["started"], 6).tolist()) == [0.1, 0.1, 0.2, 0.3]
    assert np.allclose(d["started"], now - m.t0)
    order = ["created", "ready", "dispatched", "started", "ended", "received"]
    for a, b in zip(order, order[1:]):
        assert np.all(t[a] <= t[b]), (a, b)
    assert np.all(d["worker"] == src) and np.all(d["nworkers"] == 1)
    assert load(path).attrs["makespan"] > 0


def test_a_raising_callback_keeps_the_rows_of_tasks_already_done(tmp_path) -> None:
    """A completion callback that raises part-way through a batch: every task the
    scheduler counts done has its trace row (a resume would run it again otherwise)."""

    wf = Workflow("cb")
    wf.add_set("a", 4, "noop", duration=0.0)
    path = str(tmp_path / "c.h5")

    def cb(ev: TaskEvent) -> None:
        if ev.task == 2:
            raise RuntimeError("callback failed")

    m, tw = _master(wf, 1, path, callbacks=[cb])
    now = time.time()
    with pytest.raises(RuntimeError, match="callback failed"):
        m._on_results(m.workers[0].rank, pack_results(
            [(i, 0, STATUS_OK, now, 0.0, None, None) for i in range(4)]))
    tw.close(complete=False)
    t = load(path).tasks
    assert m.sched.n_done == 3 and sorted(t["task"].tolist()) == [0, 1, 2]


def test_a_lost_gang_member_reruns_the_task_as_a_new_attempt(tmp_path) -> None:
    """A worker of a multi-rank task is lost after another member reported: the task
    runs again as attempt 1 (not charged to its retries: it has none), the old
    member's report is not counted for the new gang, and the new gang finishes it."""

    wf = Workflow("gang")
    wf.add_set("g", 1, "noop", ranks=2)  # retries=0
    path = str(tmp_path / "g.h5")
    m, tw = _master(wf, 3, path)
    g1 = m.sched.running[0]
    ranks = [w.rank for w in m.workers]
    now = time.time()
    m._on_results(ranks[g1[1]], pack_results([(0, 0, STATUS_OK, now, 0.001, None, None)]))
    m.worker_lost(g1[0], "test")
    m._dispatch()
    g2 = m.sched.running[0]
    assert m.sched.attempts[0] == 1 and g1[0] not in g2
    # a late report of attempt 0 (the survivor of the old gang) is ignored
    m._on_results(ranks[g1[1]], pack_results([(0, 0, STATUS_OK, now, 0.001, None, None)]))
    assert 0 in m.sched.running and m.sched.n_done == 0
    for w in g2:
        m._on_results(ranks[w], pack_results([(0, 1, STATUS_OK, now, 0.001, None, None)]))
    assert m.sched.n_done == 1 and not m.gang_reports
    tw.close()
    t = load(path).tasks
    rows = sorted(zip(t["attempt"].tolist(), t["status"].tolist(), t["nworkers"].tolist()))
    assert rows == [(0, 9, 2), (1, DONE, 2)]  # 9: lost


def test_backoff_sleeps_briefly_while_hot_then_doubles(monkeypatch) -> None:
    """Short sleeps for the first ``hot`` seconds of an idle stretch (the gap between
    two windows of fine-grained tasks), then the exponential back-off up to the cap;
    traffic starts a new stretch."""
    import mpiwf.comm as comm_mod

    clock = [100.0]
    slept: list[float] = []

    def sleep(d: float) -> None:
        slept.append(d)
        clock[0] += d

    monkeypatch.setattr(comm_mod.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(comm_mod.time, "sleep", sleep)
    b = comm_mod.Backoff(spin=50e-6, max_sleep=1e-3, hot=2e-3)
    b.wait()  # the first empty poll only starts the stretch
    clock[0] += 60e-6  # past the spin
    while clock[0] - 100.0 < 6e-3:
        b.wait()
    short = [d for d in slept if d == 50e-6]  # the hot stretch, then the first doubling
    assert 30 <= len(short) <= 40  # ~2 ms of 50 us sleeps
    assert slept[len(short):len(short) + 5] == [100e-6, 200e-6, 400e-6, 800e-6, 1e-3]
    assert max(slept) == 1e-3
    b.reset()
    assert b.idle_for() == 0.0
    b.wait()
    clock[0] += 60e-6
    slept.clear()
    b.wait()
    assert slept == [50e-6]  # a new stretch is hot again


def test_a_few_ready_tasks_spread_over_the_workers() -> None:
    wf = Workflow()
    wf.add_set("null", 7, "noop", duration=0.0)
    s = _sched(wf)
    s.start()
    runs = s.schedule_runs()
    assert sum(b - a for a, b, _g in runs) == 7
    assert sorted(s.load) == [2, 2, 3]  # each worker its share, not one worker all 7


def _replay(bulk: bool, validate: bool = False) -> Scheduler:
    """A DAG of null tasks run to the end, results in messages per worker of up to 10
    (some spanning two sets), done one by one or with tasks_done."""
    wf = Workflow()
    wf.add_set("a", 300, "noop", duration=0.0)
    wf.add_set("b", 300, "noop", duration=0.0, after=["a"])
    wf.add_set("c", 300, "noop", duration=0.0, after_each=["b"])
    wf.add_set("d", 10, "spin", (0.2,), after=["b"])
    s = _sched(wf, validate=validate)
    s.start()
    queued: dict[int, deque[int]] = {w: deque() for w in range(3)}
    while not s.finished:
        for a, b, g in s.schedule_runs():
            queued[g[0]].extend(range(a, b))
        for w, q in queued.items():
            msg = [q.popleft() for _ in range(min(10, len(q)))]
            if msg and not (bulk and s.tasks_done(msg, w)):
                for t in msg:
                    s.task_done(t)
    return s


def test_tasks_done_in_bulk_matches_one_by_one() -> None:
    one, bulk = _replay(False), _replay(True)
    assert bulk.n_done == one.n_done == 910
    assert bytes(bulk.state) == bytes(one.state)
    assert bulk.load == one.load == [0, 0, 0] and not bulk.running
    assert bulk.s_left == one.s_left and bulk.stage_left == one.stage_left
    check = _replay(True, validate=True)  # validate: always one by one, same end
    assert check.n_done == 910


def test_tasks_done_refuses_what_it_cannot_do_in_one_step() -> None:
    wf = Workflow()
    wf.add_set("a", 20, "noop", duration=0.0)
    wf.add_set("b", 20, "noop", duration=0.0)
    wf.add_set("c", 20, "noop", duration=0.0, after_each=["b"])
    s = _sched(wf, validate=False)
    s.start()
    where = {t: g[0] for t, g in s.schedule()}
    w0 = [t for t, w in where.items() if w == 0]
    other = next(t for t, w in where.items() if w != 0)
    before = (bytes(s.state), list(s.load), dict(s.running), s.n_done)
    assert not s.tasks_done(w0[:2] + [other], 0)  # one ran elsewhere
    assert not s.tasks_done([w0[0], w0[0]], 0)  # a duplicate
    assert not s.tasks_done([], 0)
    span = [t for t in w0 if t < 40]
    assert any(t < 20 for t in span) and any(t >= 20 for t in span)  # worker 0 ran both
    assert not s.tasks_done(span, 0)  # two sets
    assert (bytes(s.state), list(s.load), dict(s.running), s.n_done) == before
    first = [t for t in w0 if t < 20]
    assert s.tasks_done(first, 0)
    assert all(s.state[t] == DONE for t in first) and s.n_done == len(first)
    assert not s.tasks_done(first, 0)  # not running any more
    # one-to-one dependents are released in one step, contiguous ones as one range
    kids = [t for t in w0 if 20 <= t < 40]
    assert len(kids) > 1 and kids == list(range(kids[0], kids[-1] + 1))
    assert s.tasks_done(kids, 0)
    assert list(s.s_ready[2]) == [[kids[0] + 20, kids[-1] + 21]]
    # per-task edges: task by task
    wf2 = Workflow()
    wf2.add_set("a", 4, "noop", duration=0.0)
    wf2.add_set("b", 4, "noop", duration=0.0)
    wf2.add_edge(0, 4)
    s2 = _sched(wf2, validate=False, nworkers=1)
    s2.start()
    s2.schedule()
    assert not s2.tasks_done([0, 1], 0)


def test_tasks_done_checks_a_run_of_ids_as_any_others() -> None:
    """Ids filling a range (a run sent as one, completed by C loops) are refused, with
    nothing changed, on the same grounds as any others; the master passes them as a
    memoryview of int64."""
    from mpiwf.scheduler import check_invariants

    wf = Workflow()
    wf.add_set("a", 60, "noop", duration=0.0)
    s = _sched(wf, validate=False, nworkers=2)
    s.start()
    runs = s.schedule_runs()
    assert len(runs) >= 2 and all(b - a >= 3 for a, b, _g in runs)
    (a0, b0, g0), (a1, b1, g1) = sorted(runs)[:2]
    assert b0 == a1 and g0 != g1  # two adjacent runs on two workers
    w0, w1 = g0[0], g1[0]

    def ids(a: int, b: int) -> memoryview:
        return memoryview(array("q", range(a, b)))

    def snap() -> tuple:
        return bytes(s.state), list(s.load), dict(s.running), s.n_done

    before = snap()
    assert not s.tasks_done(ids(a0, b0), w1)  # ran on the other worker
    assert not s.tasks_done(ids(a0, b1), w0)  # half of them ran on the other worker
    assert snap() == before
    s.task_done(a0 + 1)
    before = snap()
    assert not s.tasks_done(ids(a0, b0), w0)  # one of them is done already
    assert snap() == before
    assert s.tasks_done(array("q", [a0] + list(range(a0 + 2, b0))), w0)  # the rest: a gap
    assert s.tasks_done(ids(a1, b1)[::-1], w1)  # a run's ids in any order
    assert all(s.state[t] == DONE for t in range(a0, b1))
    assert not any(t in s.running for t in range(a0, b1)) and s.n_done == b1 - a0
    check_invariants(s)


def test_worker_and_writer_settings_come_from_the_environment() -> None:
    from mpiwf.config import Config, from_env
    from mpiwf.errors import SpecError
    from mpiwf.runner import _trace_thread

    c = from_env({"MPIWF_RESULT_BATCH": "8", "MPIWF_RESULT_FLUSH": "0.01",
                  "MPIWF_TRACE_THREAD": "on"})
    assert (c.result_batch, c.result_flush, c.trace_thread) == (8, 0.01, "on")
    for bad in ({"MPIWF_TRACE_THREAD": "yes"}, {"MPIWF_RESULT_BATCH": "0"}):
        with pytest.raises(SpecError, match="trace_thread|result_batch"):
            from_env(bad)
    infos = [{"host": "n0"}] * 3 + [{"host": "n1"}]
    assert _trace_thread(Config(trace_thread="on"), infos)
    assert not _trace_thread(Config(trace_thread="off"), infos)
    import os
    cpus = len(os.sched_getaffinity(0))
    # the default: no thread, a spare CPU or not (measured no faster with one)
    assert Config().trace_thread == "off"
    assert not _trace_thread(Config(), [{"host": "n0"}])
    # auto: a thread only with a spare CPU beyond one per local rank
    few = max(1, cpus - 1)
    auto = Config(trace_thread="auto")
    assert _trace_thread(auto, [{"host": "n0"}] * few) is (cpus > few)
    assert not _trace_thread(auto, [{"host": "n0"}] * cpus)


def test_a_set_the_remaining_workers_cannot_hold_is_given_up(tmp_path) -> None:
    """A 3-rank task loses a member and 2 workers remain: its set is cancelled (and
    its dependents skipped) instead of stalling the run; other sets go on."""

    wf = Workflow("lost")
    wf.add_set("g", 1, "noop", ranks=3)
    wf.add_set("after", 1, "noop", after=["g"])
    wf.add_set("other", 2, "noop")
    path = str(tmp_path / "l.h5")
    m, tw = _master(wf, 3, path)
    assert len(m.sched.running[0]) == 3  # the gang holds every worker
    m.worker_lost(0, "test")
    s = m.sched
    assert s.state[0] == 7 and s.state[1] == 6  # cancelled, skipped
    assert any(f[1] == "Unplaceable" for f in m.failures)
    m._dispatch()
    ranks = [w.rank for w in m.workers]
    now = time.time()
    for t, g in list(s.running.items()):
        m._on_results(ranks[g[0]], pack_results([(t, 0, STATUS_OK, now, 0.0, None, None)]))
    assert s.finished and s.n_done == 2
    tw.close()


def test_done_entries_are_columns_that_load_as_whole_rows(tmp_path) -> None:
    """Format 4: successful first attempts of single-worker tasks go to the ``done``
    group as the columns they arrived in; loaded, they have every field of a whole
    row (set, index, cores, GPUs, node, worker, created, received; times corrected by
    the worker's clock offset), in receipt order. A failure and its retried success
    keep whole rows."""
    from mpiwf.config import Config
    from mpiwf.trace import done_tasks

    wf = Workflow("cols")
    wf.add_set("a", 4, "noop", duration=0.0, retries=1, cores=2, gpus=1)
    workers = uniform_workers(2, 1, cores=2, gpus_per_node=1)  # ranks 1, 2 on nodes 0, 1
    path = str(tmp_path / "c.h5")
    tw = TraceWriter(path, wf, workers)
    m = Master(wf, Config(progress_interval=0), _Ep(), workers, tw,  # type: ignore[arg-type]
               clock_offsets=[0.0, 0.5])
    m.sched.now = time.time()
    m.sched.start()
    m._dispatch()
    mine = {w: sorted(t for t, g in m.sched.running.items() if g == (w,)) for w in (0, 1)}
    assert sorted(mine[0] + mine[1]) == [0, 1, 2, 3] and mine[0] and mine[1]
    time.sleep(0.01)
    now = time.time()
    ok, bad = mine[0][0], mine[0][1:]
    m._on_results(1, pack_results([(ok, 0, STATUS_OK, now - 0.004, 0.001, None, None)] + [
        (t, 0, 1, now - 0.004, 0.001, None, ("E", "m", "", 1, "node0000")) for t in bad]))
    # rank 2's clock runs 0.5 s ahead of rank 0's
    m._on_results(2, pack_results([(t, 0, STATUS_OK, now + 0.5 - 0.003, 0.002, None, None)
                                   for t in mine[1]]))
    wf.add_set("late", 2, "noop", duration=0.0)
    m.add_sets_now()
    m._dispatch()
    time.sleep(0.01)
    now2 = time.time()
    for w in (0, 1):
        got = sorted(t for t, g in m.sched.running.items() if g == (w,))
        m._on_results(w + 1, pack_results([
            (t, m.sched.attempts.get(t, 0), STATUS_OK, now2 + 0.5 * w - 0.002, 0.001, None,
             None) for t in got]))
    assert m.sched.n_done == 6
    tw.close()
    with h5py.File(path, "r") as f:
        g = f["runs/0"]
        assert g.attrs["format_version"] == 4
        assert sorted(g["done/task"][:].tolist()) == sorted([ok] + mine[1] + [4, 5])
        assert sorted(zip(g["tasks"]["task"].tolist(), g["tasks"]["attempt"].tolist())) == \
            sorted([(t, 0) for t in bad] + [(t, 1) for t in bad])
        assert g["done/batches"]["n"].sum() == len(g["done/task"])
    tr = load(path)
    t = tr.tasks
    assert len(t) == 6 + len(bad)
    assert np.all(np.diff(t["received"]) >= 0)  # receipt order
    d = t[(t["status"] == DONE) & (t["attempt"] == 0)]
    assert sorted(d["task"].tolist()) == sorted([ok] + mine[1] + [4, 5])
    assert np.all(d["nworkers"] == 1) and np.all(d["node"] == d["worker"] - 1)
    assert np.all(d["worker"][np.isin(d["task"], mine[1])] == 2)
    a = d[d["task"] < 4]
    assert np.all(a["set"] == 0) and np.all(a["index"] == a["task"])
    assert np.all(a["cores"] == 2) and np.all(a["gpus"] == 1) and np.all(a["created"] == 0)
    late = d[d["task"] >= 4]
    assert np.all(late["set"] == 1) and sorted(late["index"].tolist()) == [0, 1]
    assert np.all(late["cores"] == 1) and np.all(late["gpus"] == 0)
    assert np.allclose(late["created"], m.created.a[4]) and m.created.a[4] > 0
    # started: the worker's clock less its offset (rank 2's 0.5 s), never before dispatch
    assert np.allclose(a["started"], now - m.t0 - np.where(a["worker"] == 1, 0.004, 0.003),
                       atol=1e-6)
    assert np.allclose(a["ended"] - a["started"], np.where(a["worker"] == 1, 0.001, 0.002))
    order = ["created", "ready", "dispatched", "started", "ended", "received"]
    for x, y in zip(order, order[1:]):
        assert np.all(t[x] <= t[y]), (x, y)
    assert set(t["name"].tolist()) >= {b"a[0]", b"late[1]"}
    assert done_tasks(path) == set(range(6))


def test_buffered_done_entries_survive_full_buffers_and_odd_columns(tmp_path) -> None:
    """More results messages than the per-message buffer holds, a message larger than
    the task buffer, and columns that are not ``array.array``: every entry reaches the
    trace once, with its own timing, whatever flushes the buffers force."""
    n = 9000 + 70000
    wf = Workflow("buf")
    wf.add_set("a", n, "noop", duration=0.0)
    path = str(tmp_path / "b.h5")
    m, tw = _master(wf, 1, path)
    m.sched.running.update({t: (0,) for t in range(n)})  # as if all were sent
    m.dispatched.a[:n] = time.time()
    now = time.time() + 0.01
    r0 = now - m.t0 + 1.0  # received a second after each start

    for t in range(9000):  # 9,000 one-result messages: more than the 8,192 the buffer holds
        m._keep_batch(array("q", [t]), array("d", [now + t]), array("d", [0.5]), None,
                      r0 + t, 0, 0.0)
    assert m._b_n < 9000  # a flush took the first ones
    big = list(range(9000, n))  # larger than the whole task buffer, as plain lists
    m._keep_batch(big, [now + t for t in big], [0.5] * len(big), None, r0 + n, 0, 0.0)
    tw.close()
    t = load(path).tasks
    assert t["task"].tolist() == list(range(n))
    assert np.allclose(t["ended"] - t["started"], 0.5)
    assert np.allclose(t["started"], now + np.arange(n) - m.t0)
    assert np.allclose(t["received"][:9000], r0 + np.arange(9000))
    assert np.all(t["received"][9000:] == r0 + n)


def test_an_idle_rank_0_writes_the_done_entries_a_flush_for_size_left(tmp_path,
                                                                       monkeypatch) -> None:
    """A flush for size leaves the entries past the last whole chunk in memory; once
    rank 0 has been idle IDLE_FLUSH (a long task running) and IDLE_FLUSH_GAP has
    passed since that flush, they are in the file, not a flush interval later."""
    import shutil

    import mpiwf.master as master_mod
    from mpiwf.config import Config

    assert master_mod.IDLE_FLUSH_GAP < 0.2  # the test looks after 0.2 s of idleness
    monkeypatch.setattr(master_mod, "ROWS_PER_FLUSH", 2000)  # the last result's flush
    wf = Workflow("idle")
    wf.add_set("a", 2000, "noop")
    wf.add_set("b", 1, "sleep", (0.4,), after=["a"])
    path = str(tmp_path / "i.h5")
    workers = uniform_workers(1, 1)
    tw = TraceWriter(path, wf, workers, flush_interval=60.0)
    assert tw._chunk > 2000  # no whole chunk: all 2000 wait as the tail
    seen: list[int] = []

    class Ep(_Ep):
        failed: frozenset = frozenset()

        def __init__(self) -> None:
            super().__init__()
            self.q: list = []
            self.late: tuple | None = None

        def send(self, dest: int, tag: int, obj: object) -> None:
            if tag != Tag.TASKS:
                return
            tids = [m if isinstance(m, int) else m[0] for m in obj[1]]  # type: ignore
            res = pack_results([(t, 0, STATUS_OK, time.time(), 0.0, None, None)
                                for t in tids])
            if 2000 in tids:
                self.late = (time.time() + 0.4, (dest, Tag.RESULTS, res))
            else:
                self.q.append((dest, Tag.RESULTS, res))

        def poll(self) -> object:
            if self.q:
                return self.q.pop(0)
            if self.late is not None:
                if not seen and time.time() > self.late[0] - 0.2:  # idle ~0.2 s
                    shutil.copy(path, path + ".copy")
                    seen.append(len(load(path + ".copy").tasks))
                if time.time() >= self.late[0]:
                    msg, self.late = self.late[1], None
                    return msg
            return None

    m = Master(wf, Config(progress_interval=0), Ep(), workers, tw)  # type: ignore[arg-type]
    m.run()
    tw.close()
    assert seen == [2000]
    assert len(load(path).tasks) == 2001


def test_writer_thread_builds_from_handed_over_buffers(tmp_path, monkeypatch) -> None:
    """With a writer thread, rank 0 hands its filled buffers over at a flush and goes
    on with a spare set (no copy); the thread gives them back once built. Every task
    is recorded once with its own times, and only a few buffer sets ever exist."""
    import mpiwf.master
    from mpiwf.config import Config

    monkeypatch.setattr(mpiwf.master, "ROWS_PER_FLUSH", 256)
    n = 20000
    wf = Workflow("swap")
    wf.add_set("a", n, "noop", duration=0.0)
    workers = uniform_workers(1, 3)

    path = str(tmp_path / "swap.h5")
    tw = TraceWriter(path, wf, workers, background=True)
    m = Master(wf, Config(progress_interval=0), _Instant(), workers, tw,  # type: ignore[arg-type]
               start_time=tw.start_time)
    seen = set()
    flush_rows = m._flush_rows

    def watch() -> None:
        seen.add(id(m._bufs))
        flush_rows()

    tw.pre_flush = watch
    s = m.run()
    tw.close()
    assert s.done == n
    assert 2 <= len(seen) <= 7, len(seen)  # a queue of 4 flushes, one in the thread
    t = load(path).tasks
    t = t[np.argsort(t["task"])]
    assert np.array_equal(t["task"], np.arange(n))
    # each row has its own times (a buffer reused too early would mix them up)
    assert np.all(t["dispatched"] <= t["started"]) and np.all(t["ended"] <= t["received"])
    own = np.abs((t["ended"] - t["started"]) - t["task"] * 1e-9) < 1e-11
    assert own.mean() > 0.9, own.mean()


def test_plain_results_travel_raw_and_the_rest_pickled() -> None:
    """A batch of plain results (first attempts, succeeded, no value) is three raw
    columns; a retry, a failure or a value keeps the pickled Results form."""
    from mpiwf.protocol import unpack_plain

    now = time.time()
    plain = [(7, 0, STATUS_OK, now, 1e-6, None, None), (9, 0, STATUS_OK, now + 1, 2e-6, None,
                                                        None)]
    raw = pack_plain(plain)
    assert raw is not None and len(raw) == 2 * 24
    assert unpack_plain(raw) == plain
    for bad in ((7, 1, STATUS_OK, now, 0.0, None, None),  # a retry
                (7, 0, STATUS_CANCELLED, now, 0.0, None, None),
                (7, 0, STATUS_OK, now, 0.0, 3, None),  # a value
                (7, 0, STATUS_OK, now, 0.0, np.arange(3), None),  # == None is an array
                (7, 0, STATUS_OK, now, 0.0, None, ("E", "m", "", 1, "h"))):
        assert pack_plain(plain + [bad]) is None
    with pytest.raises(ValueError, match="whole"):
        unpack_plain(raw[:-8])


def test_a_raw_message_lands_in_its_sink_as_columns() -> None:
    """The in-process transports copy a raw message into the sink the way MPI's vector
    receive does: column i at byte i * stride; poll returns the column length; a
    message that is not whole columns is refused."""
    hub = QueueHub(2)
    a, b = hub.endpoint(0), hub.endpoint(1)
    buf = bytearray(64)
    calls = []

    def reserve(col: int) -> tuple[memoryview, int]:
        calls.append(col)
        return memoryview(buf)[8:], 24

    a.sink_raw(Tag.RESULTS_RAW, 2, reserve)
    b.send_raw(0, Tag.RESULTS_RAW, array("q", [1, 2]).tobytes() + array("q", [3, 4]).tobytes())
    assert a.poll() == (1, Tag.RESULTS_RAW, 16)
    assert calls == [16]
    assert list(memoryview(buf).cast("q")) == [0, 1, 2, 0, 3, 4, 0, 0]
    b.send(0, Tag.BYE, {"x": 1})  # other tags are untouched
    assert a.poll() == (1, Tag.BYE, {"x": 1})
    b.send_raw(0, Tag.RESULTS_RAW, b"x" * 24)  # 12 bytes a column: not 8-byte numbers
    with pytest.raises(ValueError, match="whole columns"):
        a.poll()


def test_a_flush_for_size_hands_over_whole_chunks_and_keeps_the_rest(tmp_path,
                                                                     monkeypatch) -> None:
    """Full buffers go to the trace ending on a chunk boundary of the done columns,
    so every chunk is written straight from rank 0's buffers (no tail to complete by
    a copy); the entries past it, part of a message, go with the next flush. Every
    task is recorded once, with its own times and its message's worker."""
    n = 20000
    wf, workers, path, tw = _flood(tmp_path, monkeypatch, "aligned", 4096, n,
                                   flush_interval=60.0)
    tails = []
    chunks_out = tw._chunks_out

    def spy(cols: list) -> None:
        tails.append((len(tw._tails[0]), len(cols[0])))
        chunks_out(cols)

    tw._chunks_out = spy  # type: ignore[method-assign]
    s = _instant_master(wf, workers, tw).run()
    tw.close()
    assert s.done == n
    size = tails[:-1]  # the last is the end of the run's flush
    assert len(size) >= 4
    assert all(t == 0 and k % 1024 == 0 for t, k in size), size
    t = load(path).tasks
    order = np.argsort(t["task"])
    assert np.array_equal(t["task"][order], np.arange(n))
    own = np.abs((t["ended"] - t["started"]) - t["task"] * 1e-9) < 1e-11
    assert own.all()
    assert set(t["worker"].tolist()) <= {1, 2, 3}
    # a message split between two flushes keeps one receipt time for its entries: the
    # entries of each receipt time are one message's (at most 50 consecutive tasks)
    _u, first, count = np.unique(t["received"], return_index=True, return_counts=True)
    assert count.max() <= 50
    for i, k in zip(first.tolist(), count.tolist()):
        ids = t["task"][i:i + k]
        assert ids[-1] - ids[0] == k - 1, ids


@pytest.mark.timeout(60)
def test_array_return_values_reach_their_children(tmp_path) -> None:
    """A task returning a NumPy array is not a plain result: its value travels (a
    check by equality with None would raise on the array and end the worker)."""
    from mpiwf.kernels import register

    register("_test_arange", lambda n: np.arange(n))
    register("_test_total", lambda inputs: float(sum(a.sum() for a in inputs)))
    wf = Workflow("arrays")
    wf.add_set("make", 6, "_test_arange", (4,))
    wf.add_set("sum", 1, "_test_total", after=["make"], inputs=True)
    path = str(tmp_path / "a.h5")
    tw = TraceWriter(path, wf, uniform_workers(1, 2))
    got: dict = {}
    s, _m = run_threads(wf, nworkers=2, trace=tw, shutdown_timeout=5.0,
                        callbacks=[lambda ev: got.__setitem__(ev.task, ev.value)])
    tw.close()
    assert s.ok and got[6] == 6 * 6.0
    assert all(np.array_equal(got[t], np.arange(4)) for t in range(6))
    assert sorted(load(path).tasks["task"].tolist()) == list(range(7))


def test_a_master_clock_other_than_the_traces_keeps_the_times_consistent(tmp_path) -> None:
    """Every stored time counts from the master's t0, also the worker starts that
    load() corrects by the trace's start_time (the difference goes into the offset)."""
    from mpiwf.config import Config

    wf = Workflow("clock")
    wf.add_set("a", 4, "noop", duration=0.0)
    workers = uniform_workers(1, 1)
    path = str(tmp_path / "k.h5")
    tw = TraceWriter(path, wf, workers)
    m = Master(wf, Config(progress_interval=0), _Ep(), workers, tw,  # type: ignore[arg-type]
               start_time=tw.start_time - 5.0)
    m.sched.now = time.time()
    m.sched.start()
    m._dispatch()
    time.sleep(0.01)
    now = time.time()
    m._on_results(workers[0].rank, pack_results([(t, 0, STATUS_OK, now - 0.004, 0.001, None,
                                                  None) for t in range(4)]))
    tw.close()
    t = load(path).tasks
    assert len(t) == 4
    assert np.allclose(t["started"], now - 0.004 - m.t0, atol=1e-6)
    assert np.allclose(t["dispatched"], m.dispatched.a[:4] - m.t0)
    order = ["ready", "dispatched", "started", "ended", "received"]
    for x, y in zip(order, order[1:]):
        assert np.all(t[x] <= t[y]), (x, y)


def test_an_idle_flush_waits_while_a_flood_leaves_many_results(tmp_path) -> None:
    """Rank 0 idle for IDLE_FLUSH with IDLE_FLUSH_MANY results or more waiting and a
    flush younger than IDLE_FLUSH_GAP (a flood of tiny tasks on a busy node) does not
    write them; once the last flush is older, it does (a few results go at once: the
    test above)."""
    import mpiwf.master as master_mod
    from mpiwf.config import Config

    many = master_mod.IDLE_FLUSH_MANY
    wf = Workflow("flood")
    wf.add_set("a", many + 10, "noop", duration=1e-6)
    wf.add_set("b", 1, "sleep", (0.5,), after=["a"])
    workers = uniform_workers(1, 1)
    path = str(tmp_path / "f.h5")
    tw = TraceWriter(path, wf, workers, flush_interval=60.0)
    flushed: list[tuple[float, int]] = []

    class Ep(_Instant):
        """Finishes every task of ``a`` at once; ``b``'s result never comes."""

        def send(self, dest: int, tag: int, obj: object) -> None:
            ids = [t for t in obj[1] if t < many + 10] if tag == Tag.TASKS else []  # type: ignore
            super().send(dest, tag, (obj[0], ids) if tag == Tag.TASKS else obj)  # type: ignore

    m = Master(wf, Config(progress_interval=0), Ep(), workers, tw)  # type: ignore[arg-type]
    flush_rows = m._flush_rows

    def watch() -> None:
        flushed.append((time.perf_counter(), m._b_n))
        flush_rows()

    tw.pre_flush = watch
    tw.last_flush = time.perf_counter()
    t0 = time.perf_counter()

    def stop_later() -> None:
        time.sleep(0.6)
        m.request_stop("test over", force=True)

    threading.Thread(target=stop_later, daemon=True).start()
    m.run()
    tw.close()
    first = flushed[0]
    assert first[1] >= many  # the flood's results, all waiting
    assert first[0] - t0 >= master_mod.IDLE_FLUSH_GAP * 0.9, first[0] - t0
    assert first[0] - t0 < 0.5  # the idle flush, not the end of the run's (0.6 s)


def test_the_master_lays_out_a_deferred_trace_once_the_first_tasks_are_out(tmp_path) -> None:
    """TraceWriter(defer=True) (what run() uses) creates the file at once, so a bad
    path fails before the run, and the master lays out its run group after the first
    TASKS messages are sent: the workers run them meanwhile."""
    from mpiwf.config import Config

    wf = Workflow("deferred")
    wf.add_set("a", 5000, "noop", duration=1e-6)  # more than the first windows
    workers = uniform_workers(1, 3)
    path = str(tmp_path / "d.h5")
    tw = TraceWriter(path, wf, workers, defer=True)
    assert not tw.started
    with h5py.File(path, "r", locking=False) as f:  # created, not laid out
        assert f.attrs["format"] == "mpiwf-trace" and "runs" not in f
    wf.add_set("b", 10, "noop", duration=1e-6)  # before the master: one of the run's own
    seen: list[bool] = []

    class Ep(_Instant):
        def send(self, dest: int, tag: int, obj: object) -> None:
            if tag == Tag.TASKS:
                seen.append(tw.started)
            super().send(dest, tag, obj)

    s = Master(wf, Config(progress_interval=0), Ep(raw=True), workers, tw,  # type: ignore[arg-type]
               start_time=tw.start_time).run()
    tw.close()
    assert s.done == 5010
    assert seen[:3] == [False, False, False] and seen[3:] and all(seen[3:]), seen
    tr = load(path)
    assert sorted(tr.tasks["task"].tolist()) == list(range(5010))
    assert [(d["name"], d["created"]) for d in tr.sets] == [("a", 0.0), ("b", 0.0)]


def test_flushes_for_size_hold_the_rows_of_their_entries(tmp_path, monkeypatch) -> None:
    """A flush for size writes the done columns' whole chunks but holds their
    ``batches`` and log rows (and skips HDF5's flush) until HOLD_FLUSHES of them wait
    or a flush that is not for size comes; every task is recorded once."""
    from mpiwf.trace import HOLD_FLUSHES

    n = 20000
    wf, workers, path, tw = _flood(tmp_path, monkeypatch, "held", 1024, n,
                                   flush_interval=60.0)
    states: list[tuple[int, int]] = []
    write = tw._write

    def spy(blocks: list, done: list, errors: list, tail: bool = True) -> None:
        write(blocks, done, errors, tail)
        states.append((len(tw._held), tw._batch_col.n))

    tw._write = spy  # type: ignore[method-assign]
    assert _instant_master(wf, workers, tw).run().done == n
    tw.close()
    held = [h for h, _ in states[:-2]]  # the size flushes (the last ones end the run)
    assert max(held) == HOLD_FLUSHES - 1 and held.count(0) >= 3, states
    rows = [b for _, b in states]
    assert all(b1 >= b0 for b0, b1 in zip(rows, rows[1:]))
    assert all(b == rows[i - 1] for i, (h, b) in enumerate(states) if i and h), states
    t = load(path).tasks
    assert np.array_equal(np.sort(t["task"]), np.arange(n))
    # rows wait no longer than flush_interval: with 0 s, no flush holds any
    tw = TraceWriter(str(tmp_path / "h0.h5"), wf, workers, done_chunk=1024,
                     flush_interval=0.0)
    write0 = tw._write
    kept: list[int] = []

    def spy0(blocks: list, done: list, errors: list, tail: bool = True) -> None:
        write0(blocks, done, errors, tail)
        kept.append(len(tw._held))

    tw._write = spy0  # type: ignore[method-assign]
    assert _instant_master(wf, workers, tw).run().done == n
    tw.close()
    assert len(kept) > 10 and not any(kept)


def test_a_killed_rank_0_keeps_the_entries_whose_rows_were_written(tmp_path) -> None:
    """Killed (SIGKILL) two flushes for size after the rows of the first HOLD_FLUSHES
    were written, the trace loads with exactly those entries: the later chunks are in
    the file, but without their rows they are not read."""
    import subprocess
    import sys

    from mpiwf.trace import HOLD_FLUSHES

    path = str(tmp_path / "k.h5")
    helper = str(tmp_path / "kill_after.py")
    with open(helper, "w") as fh:
        fh.write(f"""
import os, signal, sys
sys.path[:0] = [{ROOT!r}, {HERE!r}]
import mpiwf.master as master_mod
from test_hot_path import _Instant
from mpiwf import Workflow, uniform_workers
from mpiwf.config import Config
from mpiwf.master import Master
from mpiwf.trace import TraceWriter
master_mod.ROWS_PER_FLUSH = 1024
wf = Workflow("k"); wf.add_set("a", 20000, "noop", duration=1e-6)
workers = uniform_workers(1, 3)
tw = TraceWriter({path!r}, wf, workers, done_chunk=1024, flush_interval=60.0)
out = tw._chunks_out
calls = []
def spy(cols):
    out(cols)
    calls.append(len(cols[0]))
    if len(calls) == {HOLD_FLUSHES} + 2:
        os.kill(os.getpid(), signal.SIGKILL)
tw._chunks_out = spy
Master(wf, Config(progress_interval=0), _Instant(raw=True), workers, tw,
       start_time=tw.start_time).run()
""")
    r = subprocess.run([sys.executable, helper], timeout=120)
    assert r.returncode == -9
    tr = load(path)
    assert tr.partial
    assert sorted(tr.tasks["task"].tolist()) == sorted(set(tr.tasks["task"].tolist()))
    assert len(tr.tasks) == HOLD_FLUSHES * 1024


def test_a_failed_chunk_write_writes_no_more_done_entries(tmp_path, monkeypatch) -> None:
    """A write of the done columns that fails (a full disk) is raised once; closing
    the trace afterwards writes no more of those columns, nor rows that would make
    half-written entries readable: the trace loads with the entries before it."""
    wf, workers, path, tw = _flood(tmp_path, monkeypatch, "full", 1024, flush_interval=0.0)
    out = tw._chunks_out
    calls: list[int] = []

    def failing(cols: list) -> None:
        calls.append(len(cols[0]))
        if len(calls) == 3:
            raise OSError("No space left on device")
        out(cols)

    tw._chunks_out = failing  # type: ignore[method-assign]
    with pytest.raises(OSError, match="No space"):
        _instant_master(wf, workers, tw).run()
    tw.close(complete=False, error="disk full")
    assert len(calls) == 3  # no write of the columns after the failure
    tr = load(path)
    assert tr.partial and len(tr.tasks) == 2 * 1024
    assert sorted(set(tr.tasks["task"].tolist())) == sorted(tr.tasks["task"].tolist())


def test_workers_are_stopped_before_the_last_flush(tmp_path) -> None:
    """A driver that shuts down right after the run (run_threads, like run()) has
    the workers STOPped as the loop ends, before the trace's last flush, so they
    leave their loops while it is written; each gets one STOP, and every task is
    in the trace."""
    wf = Workflow("s")
    wf.add_set("null", 300, "noop", duration=1e-6)
    tw = TraceWriter(str(tmp_path / "t.h5"), wf, uniform_workers(1, 2))
    stops: list[int] = []
    seen: list[set[int]] = []  # the ranks stopped at each flush of the run
    closing = [False]
    orig_flush = tw.flush

    def flush(*a, **k) -> None:
        if not closing[0]:
            seen.append(set(masters[0].stopped))
        orig_flush(*a, **k)

    tw.flush = flush  # type: ignore[method-assign]
    masters: list[Master] = []

    def setup(m: Master) -> None:
        masters.append(m)
        send = m.ep.send

        def spy(dest: int, tag: int, obj) -> None:
            if tag == Tag.STOP:
                stops.append(dest)
            send(dest, tag, obj)

        m.ep.send = spy  # type: ignore[method-assign]

    s, m = run_threads(wf, nworkers=2, trace=tw, setup=setup)
    assert m.stop_at_end and s.done == 300
    assert seen and seen[-1] == {1, 2}  # the last flush of the run: after the STOPs
    assert sorted(stops) == [1, 2] and sorted(m.byes) == [1, 2]
    closing[0] = True
    tw.close()
    assert len(load(tw.path).tasks) == 300

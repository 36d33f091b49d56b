"""The dispatch hot path: deep windows for tiny tasks, bare-id messages, compact trace rows."""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from mpiwf import Workflow
from mpiwf.comm import QueueHub
from mpiwf.local import run_threads
from mpiwf.master import Master
from mpiwf.protocol import STATUS_CANCELLED, STATUS_OK, Tag, setdef
from mpiwf.resources import uniform_workers
from mpiwf.scheduler import DONE, FAILED, Scheduler
from mpiwf.trace import TraceWriter, load
from mpiwf.worker import Executor, Worker


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
    # tasks go out in id order, and each worker's share is interleaved (round robin)
    assert [t for t, _g in first] == list(range(195))
    assert len({g[0] for _t, g in first[:3]}) == 3
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
            got.extend(msg[2])
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
    res = [r for _s, tag, p in msgs if tag == Tag.RESULTS for r in p]
    assert sorted((r[0], r[1], r[2]) for r in res) == [(0, 0, STATUS_CANCELLED),
                                                       (1, 3, STATUS_CANCELLED)]


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

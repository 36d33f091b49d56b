"""Timeouts, lost workers, fail-fast and forced stops, without mpiexec (no mpi4py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pytest

from mpiwf import Config, Workflow
from mpiwf.local import run_threads
from mpiwf.master import STATUS_LOST, STATUS_TIMEDOUT, Master
from mpiwf.protocol import STATUS_ERROR, STATUS_OK, STATUS_TIMEOUT, setdef
from mpiwf.resources import uniform_workers
from mpiwf.trace import TraceWriter, load
from mpiwf.worker import Executor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # relkernels, for module:function references


def _one_set(kernel: str, args: tuple = (), timeout: float | None = None,
             isolate: bool = False) -> tuple[Executor, int]:
    wf = Workflow("t")
    ts = wf.add_set("s", 1, kernel, args, timeout=timeout, isolate=isolate)
    ex = Executor(1, ".")
    ex.define([setdef(ts)])
    return ex, ts.sid


def _run(ex: Executor, sid: int) -> tuple:
    return ex.run_task((0, 0, None, None), sid)


def test_timeout_interrupts_python_kernel_and_worker_stays_usable() -> None:
    ex, sid = _one_set("relkernels:hang", timeout=0.3)
    t0 = time.perf_counter()
    r = _run(ex, sid)
    assert time.perf_counter() - t0 < 3
    assert r[2] == STATUS_TIMEOUT and r[6][0] == "TaskTimeout"
    ex2, sid2 = _one_set("relkernels:busy_python", (0.05,), timeout=5)
    r2 = _run(ex2, sid2)
    assert r2[2] == STATUS_OK and r2[5] > 0
    # the timer is disarmed after a task: a later plain sleep is not interrupted
    time.sleep(0.4)


def test_kernel_keyboard_interrupt_is_the_tasks_error_on_a_worker(tmp_path) -> None:
    """A worker rank ignores SIGINT, so a KeyboardInterrupt there is the kernel's own:
    that task's error (retried like any other), never the rank's silent end; rank 0
    of a 1-rank run lets it stop the run (Ctrl-C)."""
    wf = Workflow("t")
    ts = wf.add_set("s", 1, "relkernels:interrupt")
    ex = Executor(1, ".", interruptible=False)
    ex.define([setdef(ts)])
    r = _run(ex, ts.sid)
    assert r[2] == STATUS_ERROR and r[6][0] == "KeyboardInterrupt" and "gave up" in r[6][1]
    inline = Executor(0, ".")
    inline.define([setdef(ts)])
    with pytest.raises(KeyboardInterrupt):
        _run(inline, ts.sid)
    # over the in-process transport: the attempt fails, is retried, the run ends
    wf2 = Workflow("k")
    wf2.add_set("bad", 2, "relkernels:interrupt", retries=1)
    wf2.add_set("ok", 3, "noop")
    path = str(tmp_path / "k.h5")
    tw = TraceWriter(path, wf2, uniform_workers(1, 2))
    s, _ = run_threads(wf2, Config(progress_interval=0), nworkers=2, trace=tw,
                       shutdown_timeout=5)
    tw.close()
    assert (s.done, s.failed) == (3, 2)
    assert [e["type"] for e in load(path).errors].count("KeyboardInterrupt") == 4


def test_isolated_child_is_killed_on_timeout() -> None:
    ex, sid = _one_set("relkernels:hang", timeout=0.5, isolate=True)
    t0 = time.perf_counter()
    r = _run(ex, sid)
    assert time.perf_counter() - t0 < 10
    assert r[2] == STATUS_TIMEOUT and "killed" in r[6][1]
    ok, sid = _one_set("relkernels:busy_python", (0.01,), timeout=20, isolate=True)
    r = _run(ok, sid)
    assert r[2] == STATUS_OK and r[5] > 0
    bad, sid = _one_set("fail", ("boom",), isolate=True)
    r = _run(bad, sid)
    assert r[2] == STATUS_ERROR and "RuntimeError: boom" in r[6][1]


def test_exec_kernel_timeout_kills_the_executable(tmp_path) -> None:
    pidfile = tmp_path / "pid"
    ex, sid = _one_set("exec", ("sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"),
                       timeout=0.5)
    r = _run(ex, sid)
    assert r[2] == STATUS_TIMEOUT
    pid = int(pidfile.read_text())
    time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}") or \
        open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    ok, sid = _one_set("exec", ("true",), timeout=5)
    assert _run(ok, sid)[2] == STATUS_OK
    bad, sid = _one_set("exec", ("false",))
    assert _run(bad, sid)[2] == STATUS_ERROR


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _threads(wf: Workflow, ranks: list[int], nworkers: int, cfg: Config, trace=None,
             setup=None):
    return run_threads(wf, cfg, nworkers=nworkers, worker_ranks=ranks, trace=trace,
                       setup=setup, shutdown_timeout=5)


def test_dead_worker_is_lost_and_its_tasks_rerun_elsewhere(tmp_path) -> None:
    wf = Workflow("lost")
    wf.add_set("a", 12, "sleep", (0.02,))
    wf.add_set("b", 1, "noop", after=["a"])
    path = str(tmp_path / "l.h5")
    tw = TraceWriter(path, wf, uniform_workers(1, 3))
    dead = _dead_pid()

    def setup(m: Master) -> None:  # rank 3 never answers; its process is gone
        m.local_pids = {3: dead}
        m.liveness_interval = 0.1
        m._last_check = time.monotonic()  # found 0.1 s in, after other results came

    cfg = Config(progress_interval=0, validate=True, prefetch=0)
    s, m = _threads(wf, [1, 2], 3, cfg, trace=tw, setup=setup)
    tw.close()
    assert s.ok and s.done == 13 and s.lost == (3,)
    t = load(path).tasks
    lost = t[t["status"] == STATUS_LOST]
    assert len(lost) >= 1 and set(lost["worker"].tolist()) == {3}
    # every row in time order, the lost attempt's too (its ready time was read after
    # the re-queue had stamped the next attempt's)
    order = ["created", "ready", "dispatched", "started", "ended", "received"]
    for a, b in zip(order, order[1:]):
        assert np.all(t[a] <= t[b] + 1e-9), (a, b, t[t[a] > t[b] + 1e-9])
    done = t[t["status"] == 4]
    assert sorted(done["task"].tolist()) == list(range(13))
    assert 3 not in set(done["worker"].tolist())


def test_all_workers_lost_ends_the_run_not_a_hang() -> None:
    """The only worker is lost: its sets can be held by no one, so they are given up
    (cancelled, reported as Unplaceable) and the run ends instead of waiting."""
    wf = Workflow("none")
    wf.add_set("a", 3, "sleep", (0.01,))
    wf.add_set("b", 2, "sleep", (0.01,), after=["a"])
    dead = _dead_pid()

    def setup(m: Master) -> None:
        m.local_pids = {1: dead}
        m.liveness_interval = 0.05

    s, m = _threads(wf, [], 1, Config(progress_interval=0), setup=setup)
    # a's tasks are cancelled; b, which waited for a, is skipped
    assert (s.done, s.cancelled, s.skipped) == (0, 3, 2) and m.lost_ranks == [1]
    assert [f[:2] for f in s.failures] == [("a", "Unplaceable")]


def test_fail_fast_stops_at_first_final_failure() -> None:
    wf = Workflow("ff")
    wf.add_set("bad", 1, "fail", ("first",), retries=1, duration=1.0)  # runs first
    wf.add_set("many", 200, "sleep", (0.005,))
    s, _m = _threads(wf, [1, 2], 2, Config(progress_interval=0, validate=True),
                     setup=lambda m: setattr(m, "fail_fast", True))
    assert s.failed == 1 and s.cancelled > 0 and s.done < 200
    assert s.stop_reason.startswith("--fail-fast") and s.failures[0][0] == "bad"
    assert s.failures[0][1:3] == ("RuntimeError", "first")


def test_forced_stop_does_not_wait_for_running_tasks() -> None:
    wf = Workflow("force")
    wf.add_set("slow", 2, "sleep", (3.0,))

    def setup(m: Master) -> None:
        threading.Timer(0.3, m.request_stop, ("test", True)).start()

    t0 = time.perf_counter()
    s, m = _threads(wf, [1, 2], 2, Config(progress_interval=0), setup=setup)
    assert time.perf_counter() - t0 < 6  # shutdown waits 2 s at most, not the 3 s tasks
    assert s.cancelled == 2 and s.done == 0 and m.force_stop


def test_timeout_rows_and_skipped_ids_in_trace(tmp_path) -> None:
    wf = Workflow("to")
    wf.add_set("slow", 2, "relkernels:busy_python", (5.0,), timeout=0.2, retries=1)
    wf.add_set("child", 3, "noop", after=["slow"])
    wf.add_set("ok", 2, "noop")
    path = str(tmp_path / "to.h5")
    tw = TraceWriter(path, wf, uniform_workers(1, 2))
    # worker threads cannot use the interval timer: the after-the-fact check applies,
    # so keep the busy loop short here
    wf.sets[0].args = (0.4,)
    s, _m = _threads(wf, [1, 2], 2, Config(progress_interval=0, validate=True), trace=tw)
    tw.close()
    assert (s.done, s.failed, s.skipped) == (2, 2, 3)
    t = load(path).tasks
    assert int(np.sum(t["status"] == STATUS_TIMEDOUT)) == 4  # 2 tasks x 2 attempts
    with h5py.File(path, "r") as f:
        g = f["runs"]["0"]
        assert sorted(g["skipped"][:].tolist()) == [2, 3, 4]


def test_drain_timeout_bounds_a_stop() -> None:
    wf = Workflow("drain")
    wf.add_set("slow", 2, "sleep", (3.0,))

    def setup(m: Master) -> None:
        m.drain_timeout = 0.3
        threading.Timer(0.2, m.request_stop, ("signal",)).start()

    t0 = time.perf_counter()
    s, m = _threads(wf, [1, 2], 2, Config(progress_interval=0), setup=setup)
    assert time.perf_counter() - t0 < 6
    assert s.cancelled == 2 and m.force_stop and s.stop_reason == "signal"


def test_trace_holds_no_pickles(tmp_path) -> None:
    wf = Workflow("np")
    wf.add_set("a", 3, "echo", (1,))
    wf.add_set("bad", 1, "fail", ("x",))
    wf.add_set("kid", 1, "noop", after=["bad"])
    path = str(tmp_path / "p.h5")
    tw = TraceWriter(path, wf, uniform_workers(1, 2), {"config": {"mode": "async"}})
    _threads(wf, [1, 2], 2, Config(progress_interval=0), trace=tw)
    tw.close()
    seen = []

    def check_dtype(name: str, dt: np.dtype) -> None:
        for sub in ([dt[f] for f in dt.names] if dt.names else [dt]):
            if sub.kind == "O":  # only variable-length strings may be objects
                assert h5py.check_string_dtype(sub) is not None, (name, sub)
            assert not (sub.kind == "V" and not sub.names), (name, "opaque bytes")

    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset):
            seen.append(name)
            check_dtype(name, obj.dtype)
        for k, v in obj.attrs.items():
            assert not isinstance(v, np.void), (name, k)
            if isinstance(v, np.ndarray):
                check_dtype(f"{name}@{k}", v.dtype)

    with h5py.File(path, "r") as f:
        visit("/", f)
        f.visititems(visit)
    assert any(s.endswith("tasks") for s in seen) and any(s.endswith("errors") for s in seen)


def test_isolated_child_does_not_see_the_launcher(monkeypatch) -> None:
    monkeypatch.setenv("PMI_RANK", "3")
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "3")
    ex, sid = _one_set("relkernels:launcher_env", timeout=30, isolate=True)
    r = _run(ex, sid)
    assert r[2] == STATUS_OK and r[5] == []
    plain, sid = _one_set("relkernels:launcher_env")
    assert "PMI_RANK" in _run(plain, sid)[5]  # the check itself can fail

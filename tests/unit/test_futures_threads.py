"""mpiwf.futures' executor driving a Master over the in-process transport (no mpi4py)."""

from __future__ import annotations

import threading

import pytest

from mpiwf import Config
from mpiwf import futures as fx
from mpiwf.errors import RunError
from mpiwf.local import run_threads
from mpiwf.master import Master


def drive(main, nworkers: int = 2, mode: str = "async"):
    """What :func:`mpiwf.futures.run` does on rank 0, with worker threads."""
    ex = fx.Executor()
    out: dict = {}

    def driver() -> None:
        try:
            out["value"] = main(ex)
        except BaseException as exc:
            out["error"] = exc
        finally:
            with ex._cv:
                ex._driver_done = True
                ex._cv.notify_all()

    th = threading.Thread(target=driver, daemon=True)
    th.start()
    with ex._cv:
        while not ex._queue:
            ex._cv.wait(1)
    ex._drain(None, limit=1)

    def setup(m: Master) -> None:
        ex.master = m
        m.pump = ex.pump

    s, _m = run_threads(ex.wf, Config(progress_interval=0, validate=True, mode=mode),
                        nworkers=nworkers, callbacks=[ex._on_event], setup=setup)
    ex.close("the run ended")
    th.join(10)
    assert not th.is_alive()
    return s, out


def test_results_drive_new_sets_and_as_completed_order() -> None:
    def main(ex: fx.Executor) -> list:
        a = ex.submit("sleep", 0.3, name="slow")
        b = ex.submit("echo", 1, n=2, name="fast")
        first = next(fx.as_completed([a, b], timeout=30))
        c = ex.submit("echo", [v["task"] for v in b.result()], after=[a], name="c")
        return [first.name, c.result(timeout=30)["args"][0]]

    s, out = drive(main, nworkers=3)
    assert "error" not in out, out
    assert out["value"] == ["fast", ["fast[0]", "fast[1]"]]
    assert s.ok and s.tasks == 4


def test_submit_after_the_run_is_refused_and_unsettled_futures_fail() -> None:
    ex = fx.Executor()
    f = ex.submit("noop")
    ex.close("stopped")
    with pytest.raises(RunError, match="stopped"):
        f.result(timeout=1)
    with pytest.raises(RunError, match="ended"):
        ex.submit("noop")


@pytest.mark.parametrize("bad", [{"n": 0}, {"n": 1.5}, {"after": ["x"]}])
def test_bad_submit_arguments(bad: dict) -> None:
    with pytest.raises(fx.SpecError):
        fx.Executor().submit("noop", **bad)


def test_wait_timeout_returns_not_done() -> None:
    ex = fx.Executor()
    f = ex.submit("noop")
    done, not_done = fx.wait([f], timeout=0.05, return_when=fx.FIRST_COMPLETED)
    assert not done and not_done == {f}
    with pytest.raises(TimeoutError):
        list(fx.as_completed([f], timeout=0.05))


def test_a_stop_settles_a_half_cancelled_set() -> None:
    """Two tasks run to the end, two are cancelled before they start (no result comes
    for those): the future settles from the scheduler's states, before the run ends."""
    def main(ex: fx.Executor) -> str:
        f = ex.submit("sleep", 0.2, n=4, duration=1.0, name="work")
        while ex.master is None or ex.master.sched.n_running < 2:
            threading.Event().wait(0.01)
        ex.master.request_stop("test stop")
        with pytest.raises(fx.TaskFailed, match="2 task"):
            f.result(timeout=30)
        return "ok"

    s, out = drive(main, nworkers=2)
    assert "error" not in out, out
    assert out["value"] == "ok" and (s.done, s.cancelled) == (2, 2)


def test_submitted_sets_estimate_durations_like_add_set() -> None:
    """Without ``duration``, a submitted ``sleep`` is estimated by its argument (as in
    Workflow.add_set): a long task is not taken for a short one, so short tasks are
    not queued behind it on a busy worker."""
    sets: dict = {}

    def main(ex: fx.Executor) -> None:
        z = ex.submit("sleep", 0.2, name="long")
        s = ex.submit("sleep", 0.01, n=2, name="short")
        t = ex.submit("noop", name="unknown")
        u = ex.submit("noop", duration=0.5, name="given")
        fx.wait([z, s, t, u], timeout=30)
        sets.update({ts.name: ts.duration for ts in ex.wf.sets})

    s, out = drive(main, nworkers=2)
    assert "error" not in out and s.ok
    assert sets == {"long": 0.2, "short": 0.01, "unknown": 0.0, "given": 0.5}

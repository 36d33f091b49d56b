"""End to end under mpiexec (launched as subprocesses, so this process never imports
mpi4py): a worker killed with SIGKILL, resume, SIGTERM, --walltime, task timeouts.
Every launch is bounded by MPIEXEC_TIMEOUT and a subprocess timeout."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mpiwf.trace import load

HERE = os.path.dirname(os.path.abspath(__file__))
MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
pytestmark = pytest.mark.skipif(not os.path.exists(MPIEXEC) and not shutil.which("mpiexec"),
                                reason="no mpiexec next to the interpreter or on PATH")
BOUND = 60  # seconds any one launch may take before the test fails


@functools.cache
def _openmpi() -> bool:
    """``mpiexec`` is Open MPI's (``MPIWF_SYSTEM_MPI=1`` with Open MPI): the
    launcher-specific parts of these tests follow it (no ``-disable-auto-cleanup``,
    longer tasks as it takes a job down ~1 s after a rank dies, its own exit status
    when it is signalled or takes a job down). Anything else is taken for MPICH's
    Hydra (the PyPI wheel's, the default of ``make test``), and checked as strictly."""
    exe = MPIEXEC if os.path.exists(MPIEXEC) else shutil.which("mpiexec") or "mpiexec"
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "Open MPI" in out or "OpenRTE" in out


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = HERE + os.pathsep + env.get("PYTHONPATH", "")
    env["MPIEXEC_TIMEOUT"] = str(BOUND)
    env.update(extra)
    return env


def _mpiwf(n: int, *args: str, mpi_flags: tuple[str, ...] = (), **env: str) -> list[str]:
    exe = MPIEXEC if os.path.exists(MPIEXEC) else "mpiexec"
    return [exe, *mpi_flags, "-n", str(n), sys.executable, "-m", "mpiwf", "run", *args,
            "--progress", "0"]


def _write(path: str, text: str) -> str:
    with open(path, "w") as fh:
        fh.write(text)
    return path


def test_kill_9_worker_trace_keeps_finished_and_resume_completes(tmp_path) -> None:
    # d's worker dies 0.1 s into it, so rank 0 has been idle long enough to write the
    # results it holds (killed at once, it could die first: "at most IDLE_FLUSH of
    # results"); d's re-run on another worker sleeps 2 s, longer than MPICH lets the
    # survivors live (a second at most), so it never finishes in this run. Open MPI's
    # mpirun takes the job down by itself (SIGTERM to rank 0, which closes the trace)
    marker = tmp_path / "died"
    spec = _write(str(tmp_path / "k.yaml"), f"""
sets:
  - {{name: a, n: 30, kernel: sleep, args: [0.03]}}
  - {{name: d, kernel: "relkernels:die_once", args: ["{marker}", 2.0, 0.1], after: [a]}}
  - {{name: c, n: 8, kernel: sleep, args: [0.02], after: [d]}}
""")
    trace = str(tmp_path / "t.h5")
    rd = str(tmp_path / "run")
    t0 = time.monotonic()
    p = subprocess.run(_mpiwf(4, spec, "--trace", trace, "--rundir", rd,
                              mpi_flags=() if _openmpi() else ("-disable-auto-cleanup",)),
                       env=_env(), capture_output=True, text=True,
                       timeout=BOUND + 30)
    elapsed = time.monotonic() - t0
    assert marker.exists()  # the worker really was SIGKILLed mid-run
    assert p.returncode != 0, p.stdout + p.stderr
    assert elapsed < BOUND, (elapsed, p.stderr[-2000:])
    tr = load(trace)
    t = tr.tasks
    done = set(t["task"][t["status"] == 4].tolist())
    # every task of `a` finished before the kill (d waits for all of them): all recorded
    assert set(range(30)) <= done, sorted(done)
    assert 30 not in done
    assert tr.partial
    # --resume into the same file: only the rest runs, as a new run group
    p2 = subprocess.run(_mpiwf(2, spec, "--trace", trace, "--rundir", rd, "--resume", trace),
                        env=_env(), capture_output=True, text=True, timeout=BOUND + 30)
    assert p2.returncode == 0, p2.stdout + p2.stderr
    t2 = load(trace).tasks
    assert sorted(t2["task"].tolist()) == sorted(set(range(39)) - done)
    assert np.all(t2["status"] == 4)
    an = subprocess.run([sys.executable, "-m", "mpiwf", "analyze", trace, "--json"],
                        capture_output=True, text=True, timeout=60)
    assert an.returncode == 0, an.stderr
    # resuming a different workflow from this trace is bad input, not a wrong run
    other = _write(str(tmp_path / "other.yaml"), "sets:\n  - {name: a, n: 5}\n")
    p3 = subprocess.run([sys.executable, "-m", "mpiwf", "run", other, "--resume", trace,
                         "--trace", "", "--progress", "0"], env=_env(), capture_output=True,
                        text=True, timeout=BOUND)
    assert p3.returncode == 2 and p3.stderr.count("\n") == 1, p3.stderr
    assert "--resume" in p3.stderr and "39 tasks" in p3.stderr


def test_resume_in_sequential_mode_runs_no_recorded_task_again(tmp_path) -> None:
    """Stage 0 failed, stage 1 succeeded; once the input is fixed, a resume in the
    same mode runs stage 0 alone: stage 1's tasks are counted done when it opens."""
    fixed, runs = tmp_path / "fixed", tmp_path / "runs"
    spec = _write(str(tmp_path / "s.yaml"), f"""
stages: [[a], [b]]
sets:
  - {{name: a, kernel: "relkernels:fail_unless", args: ["{fixed}"]}}
  - {{name: b, n: 4, kernel: "relkernels:count_run", args: ["{runs}", b]}}
""")
    trace, rd = str(tmp_path / "t.h5"), str(tmp_path / "run")
    p = subprocess.run(_mpiwf(2, spec, "--mode", "sequential", "--trace", trace, "--rundir", rd),
                       env=_env(), capture_output=True, text=True, timeout=BOUND + 30)
    assert p.returncode == 1 and "4/5 tasks done, 1 failed" in p.stdout, p.stdout + p.stderr
    assert len(os.listdir(runs)) == 4
    fixed.touch()
    p2 = subprocess.run(_mpiwf(2, spec, "--mode", "sequential", "--trace", trace, "--rundir", rd,
                               "--resume", trace), env=_env(), capture_output=True, text=True,
                        timeout=BOUND + 30)
    assert p2.returncode == 0, p2.stdout + p2.stderr
    assert len(os.listdir(runs)) == 4  # b did not run again
    tr = load(trace)
    assert tr.tasks["task"].tolist() == [0] and (tr.tasks["status"] == 4).all()
    assert tr.attrs["resumed_recorded"] == 4 and tr.attrs["resumed_done"] == 4


def test_resume_reruns_the_parents_whose_values_a_task_still_to_run_takes(tmp_path) -> None:
    """A trace holds no values: on resume, the recorded parents of a task still to run
    that takes ``inputs`` run again (it got None in their place); their other children
    recorded done are counted done, not run."""
    fixed, runs = tmp_path / "fixed", tmp_path / "runs"
    spec = _write(str(tmp_path / "i.yaml"), f"""
sets:
  - {{name: a, n: 3, kernel: "relkernels:count_run", args: ["{runs}", a]}}
  - {{name: b, kernel: "relkernels:inputs_unless", args: ["{fixed}"], after: [a], inputs: true}}
  - {{name: d, kernel: "relkernels:count_run", args: ["{runs}", d], after: [a]}}
""")
    trace = str(tmp_path / "t.h5")
    p = subprocess.run(_mpiwf(2, spec, "--trace", trace), env=_env(), capture_output=True,
                       text=True, timeout=BOUND + 30)
    assert p.returncode == 1 and "4/5 tasks done, 1 failed" in p.stdout, p.stdout + p.stderr
    fixed.touch()
    p2 = subprocess.run(_mpiwf(2, spec, "--trace", trace, "--resume", trace), env=_env(),
                        capture_output=True, text=True, timeout=BOUND + 30)
    assert p2.returncode == 0, p2.stdout + p2.stderr
    names = sorted(n.split("-")[0] for n in os.listdir(runs))
    assert names == ["a"] * 6 + ["d"]  # a twice, d once
    tr = load(trace)
    assert sorted(tr.tasks["task"].tolist()) == [0, 1, 2, 3]
    assert tr.attrs["resumed_recorded"] == 4 and tr.attrs["resumed_done"] == 1


def test_resume_refuses_a_trace_of_other_sets_or_a_simulated_one(tmp_path) -> None:
    """Same name and task count, other sets: resuming would count another set's tasks
    done; a simulated trace's tasks never ran. Both are one line, exit 2."""
    one = _write(str(tmp_path / "a.yaml"), "name: w\nsets:\n  - {name: a, n: 4}\n"
                 "  - {name: b, n: 4, after_each: [a]}\n")
    two = _write(str(tmp_path / "b.yaml"), "name: w\nsets:\n  - {name: z, n: 4}\n"
                 "  - {name: a, n: 4}\n")
    trace, sim = str(tmp_path / "t.h5"), str(tmp_path / "s.h5")
    cli = [sys.executable, "-m", "mpiwf"]
    for args in (["run", one, "--trace", trace, "--progress", "0"],
                 ["simulate", one, "--cores", "2", "--trace", sim]):
        assert subprocess.run(cli + args, env=_env(), capture_output=True,
                              timeout=BOUND).returncode == 0
    for spec, old, want in ((two, trace, "set 0 is 'a' with 4 tasks; this spec's set 0 is 'z'"),
                            (one, sim, "holds a simulated run")):
        p = subprocess.run(cli + ["run", spec, "--resume", old, "--trace", "", "--progress", "0"],
                           env=_env(), capture_output=True, text=True, timeout=BOUND)
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and want in p.stderr, p.stderr
    ok = subprocess.run(cli + ["run", one, "--resume", trace, "--trace", "", "--progress", "0"],
                        env=_env(), capture_output=True, text=True, timeout=BOUND)
    assert ok.returncode == 0 and "8/8 tasks done" in ok.stdout, ok.stdout + ok.stderr


def test_gang_member_waiting_for_a_slow_member_is_not_lost(tmp_path) -> None:
    """A member of a multi-rank task waiting in the task's collective for a member
    still computing may send no heartbeat meanwhile; it is not hung while a gang-mate
    is heard from (it used to be lost, and the job aborted)."""
    spec = _write(str(tmp_path / "g.yaml"), """
sets:
  - {name: g, ranks: 2, kernel: "relkernels:gang_wait", args: [3.0]}
""")
    p = subprocess.run(_mpiwf(3, spec, "--trace", str(tmp_path / "t.h5"), "--rundir",
                              str(tmp_path / "r")),
                       env=_env(MPIWF_HEARTBEAT="0.2", MPIWF_HEARTBEAT_TIMEOUT="1.0"),
                       capture_output=True, text=True, timeout=BOUND + 30)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "lost" not in p.stderr, p.stderr
    assert "1/1 tasks done" in p.stdout


def test_hung_gang_member_is_lost_though_its_gang_mate_is_heard(tmp_path) -> None:
    """A member that has reported (it waits for no one) vouches for no one: the hung
    member is found lost within the heartbeat timeout, not waited for forever."""
    marker = tmp_path / "stopped"
    spec = _write(str(tmp_path / "h.yaml"), f"""
sets:
  - {{name: g, ranks: 2, kernel: "relkernels:gang_stop_member", args: ["{marker}", 0.3]}}
""")
    t0 = time.monotonic()
    try:
        p = subprocess.run(_mpiwf(3, spec, "--trace", str(tmp_path / "t.h5"), "--rundir",
                                  str(tmp_path / "r")),
                           env=_env(MPIWF_HEARTBEAT="0.2", MPIWF_HEARTBEAT_TIMEOUT="1.5"),
                           capture_output=True, text=True, timeout=BOUND + 30)
    finally:
        if marker.exists():
            try:
                os.kill(int(marker.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
    assert p.returncode != 0 and "lost (no heartbeat" in p.stderr, p.stdout + p.stderr
    assert time.monotonic() - t0 < 30


def test_outside_kill_9_of_a_worker_plain_mpiexec(tmp_path) -> None:
    """The acceptance scenario: plain ``mpiexec -n 4``, ``kill -9`` of a worker."""
    piddir = tmp_path / "pids"
    # 1 s of work on 3 workers; 4 s under Open MPI, whose mpirun takes the job down
    # ~1 s after the kill (Hydra at once): rank 0 could re-run the lost task and finish
    nap = 0.2 if _openmpi() else 0.05
    spec = _write(str(tmp_path / "p.yaml"), f"""
sets:
  - {{name: a, n: 60, kernel: "relkernels:pid_sleep", args: ["{piddir}", {nap}]}}
""")
    trace = str(tmp_path / "t.h5")
    t0 = time.monotonic()
    p = subprocess.Popen(_mpiwf(4, spec, "--trace", trace, "--rundir", str(tmp_path / "r")),
                         env=_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (piddir.exists() and any(piddir.iterdir())):
        time.sleep(0.02)
    time.sleep(0.5)  # mid-run: some tasks done, most not
    victim = int(sorted(piddir.iterdir())[0].name)
    os.kill(victim, signal.SIGKILL)
    out, err = p.communicate(timeout=BOUND)
    assert p.returncode != 0, out + err
    assert p.returncode == 137 or not _openmpi(), out + err  # mpirun's own, as documented
    assert time.monotonic() - t0 < BOUND
    tr = load(trace)
    done = set(tr.tasks["task"][tr.tasks["status"] == 4].tolist())
    assert 0 < len(done) < 60
    p2 = subprocess.run(_mpiwf(4, spec, "--trace", trace, "--resume", trace,
                               "--rundir", str(tmp_path / "r")),
                        env=_env(), capture_output=True, text=True, timeout=BOUND + 30)
    assert p2.returncode == 0, p2.stdout + p2.stderr
    t2 = load(trace).tasks
    assert set(t2["task"].tolist()) == set(range(60)) - done


def test_hung_worker_is_lost_by_heartbeat_and_its_task_rerun(tmp_path) -> None:
    marker = tmp_path / "stopped"
    spec = _write(str(tmp_path / "h.yaml"), f"""
sets:
  - {{name: hang, kernel: "relkernels:stop_once", args: ["{marker}", 0.01], duration: 9}}
  - {{name: a, n: 20, kernel: sleep, args: [0.05]}}
""")
    trace = str(tmp_path / "t.h5")
    t0 = time.monotonic()
    try:
        p = subprocess.run(_mpiwf(3, spec, "--trace", trace, "--rundir", str(tmp_path / "r")),
                           env=_env(MPIWF_HEARTBEAT="0.2", MPIWF_HEARTBEAT_TIMEOUT="1.5"),
                           capture_output=True, text=True, timeout=BOUND + 30)
    finally:
        if marker.exists():  # never leave a stopped process behind
            try:
                os.kill(int(marker.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert marker.exists()
    assert time.monotonic() - t0 < 30
    # rank 0 aborts with 4 after closing the trace; Hydra may report the SIGKILL it
    # sends the stopped rank instead (9)
    assert p.returncode in (4, 9), p.stdout + p.stderr
    assert "no heartbeat" in p.stderr and "aborting the job" in p.stderr
    t = load(trace).tasks
    assert sorted(t["task"][t["status"] == 4].tolist()) == list(range(21))
    lost = t[t["status"] == 9]
    assert lost["task"].tolist() == [0]


@pytest.mark.parametrize("n,sig", [(3, signal.SIGTERM), (1, signal.SIGINT)])
def test_signal_stops_drains_flushes_and_exits_nonzero(tmp_path, n: int, sig: int) -> None:
    spec = _write(str(tmp_path / "s.yaml"), """
sets:
  - {name: a, n: 80, kernel: sleep, args: [0.05]}
  - {name: b, n: 2, kernel: noop, after: [a]}
""")
    trace = str(tmp_path / "t.h5")
    cmd = _mpiwf(n, spec, "--trace", trace, "--rundir", str(tmp_path / "r"))
    if n == 1:  # no launcher: the signal goes straight to rank 0
        cmd = cmd[cmd.index(sys.executable):]
    p = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not os.path.exists(trace):
        time.sleep(0.05)
    time.sleep(0.8)
    p.send_signal(sig)  # mpiexec forwards it to every rank; workers ignore it
    out, err = p.communicate(timeout=BOUND)
    name = signal.Signals(sig).name
    # mpiwf's own status; Open MPI's mpirun, signalled itself, ends with its own (1)
    assert p.returncode == (1 if n > 1 and _openmpi() else 3), out + err
    assert f"stopped early: received {name}" in out
    tr = load(trace)
    assert tr.partial and name in str(tr.attrs.get("stop_reason"))
    t = tr.tasks
    ndone = int(np.sum(t["status"] == 4))
    assert 0 < ndone < 82
    assert int(tr.attrs["cancelled"]) + ndone == 82


def test_walltime_stops_before_the_deadline(tmp_path) -> None:
    spec = _write(str(tmp_path / "w.yaml"), """
sets:
  - {name: a, n: 100, kernel: sleep, args: [0.05]}
""")
    trace = str(tmp_path / "t.h5")
    p = subprocess.run(_mpiwf(2, spec, "--trace", trace, "--walltime", "1.5",
                              "--rundir", str(tmp_path / "r")),
                       env=_env(), capture_output=True, text=True, timeout=BOUND + 30)
    assert p.returncode == 3, p.stdout + p.stderr
    assert "--walltime" in p.stdout
    t = load(trace).tasks
    assert 0 < len(t) < 100
    assert float(np.max(t["received"])) < 1.5 + 0.5  # drained before the deadline


def test_walltime_hard_stop_does_not_wait_for_a_hung_task(tmp_path) -> None:
    spec = _write(str(tmp_path / "h.yaml"), """
sets:
  - {name: ok, n: 3, kernel: noop}
  - {name: stuck, kernel: "relkernels:hang", after: [ok]}
""")
    trace = str(tmp_path / "t.h5")
    t0 = time.monotonic()
    p = subprocess.run(_mpiwf(2, spec, "--trace", trace, "--walltime", "2",
                              "--walltime-grace", "1", "--rundir", str(tmp_path / "r")),
                       env=_env(), capture_output=True, text=True, timeout=BOUND + 30)
    assert time.monotonic() - t0 < 20
    assert p.returncode == 4, p.stdout + p.stderr  # aborted after the trace was closed
    tr = load(trace)
    assert int(np.sum(tr.tasks["status"] == 4)) == 3
    assert int(tr.attrs["cancelled"]) == 1


def test_timeouts_under_mpiexec(tmp_path) -> None:
    spec = _write(str(tmp_path / "t.yaml"), """
sets:
  - {name: py, n: 2, kernel: "relkernels:hang", timeout: 0.3, retries: 1}
  - {name: iso, kernel: "relkernels:hang", timeout: 0.5, isolate: true}
  - {name: exe, kernel: exec, args: [sleep, "30"], timeout: 0.3}
  - {name: skipped, n: 2, kernel: noop, after: [py]}
  - {name: after_all, n: 4, kernel: noop, after: [iso, exe]}
  - {name: fine, n: 6, kernel: noop}
""")
    trace = str(tmp_path / "t.h5")
    p = subprocess.run(_mpiwf(2, spec, "--trace", trace, "--rundir", str(tmp_path / "r")),
                       env=_env(), capture_output=True, text=True, timeout=BOUND + 30)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "FAILED py[0]" in p.stdout and "TaskTimeout" in p.stdout
    tr = load(trace)
    t = tr.tasks
    assert int(np.sum(t["status"] == 8)) == 2 * 2 + 1 + 1  # retries charged, all timed out
    assert int(np.sum(t["status"] == 4)) == 6  # the worker stayed usable
    assert len(tr.errors) == 6
    assert int(tr.attrs["skipped"]) == 6



def test_fail_fast_flag_summary_and_json(tmp_path) -> None:
    import json

    spec = _write(str(tmp_path / "f.yaml"), """
sets:
  - {name: bad, kernel: fail, args: ["broken input"], duration: 5}
  - {name: kid, n: 2, kernel: noop, after: [bad]}
  - {name: many, n: 50, kernel: sleep, args: [0.01]}
""")
    base = [sys.executable, "-m", "mpiwf", "run", spec, "--trace", "", "--progress", "0",
            "--rundir", str(tmp_path / "r")]
    p = subprocess.run(base, env=_env(), capture_output=True, text=True, timeout=BOUND)
    assert p.returncode == 1 and "FAILED bad on rank 0: RuntimeError: broken input" in p.stdout
    assert "2 task(s) skipped because a parent failed" in p.stdout
    assert "50 cancelled" not in p.stdout  # without --fail-fast everything else runs
    p = subprocess.run([*base, "--fail-fast", "--json"], env=_env(), capture_output=True,
                       text=True, timeout=BOUND)
    assert p.returncode == 1, p.stdout + p.stderr
    d = json.loads(p.stdout)
    assert d["failed"] == 1 and d["cancelled"] >= 40 and d["done"] < 50
    assert d["stop_reason"].startswith("--fail-fast") and d["failures"][0][:2] == ["bad",
                                                                                 "RuntimeError"]


def test_trace_failing_at_close_ends_every_rank(tmp_path) -> None:
    """Rank 0's trace fails as it closes (a full disk): the stopped workers wait for
    rank 0 at the closing barrier, so rank 0 still goes there and then raises; every
    rank leaves, none hangs."""
    script = _write(str(tmp_path / "close_fails.py"), f"""
import sys
from mpi4py import MPI
from mpiwf import Config, Workflow
from mpiwf.errors import TraceError
from mpiwf.runner import run
from mpiwf import trace as tr

def close(self, *a, **k):
    tr.TraceWriter.close.__wrapped__(self, *a, **k)
    raise TraceError("disk full (test)")

close.__wrapped__ = tr.TraceWriter.close
tr.TraceWriter.close = close
wf = Workflow("w")
wf.add_set("a", 20, "noop")
try:
    s = run(wf, Config(progress_interval=0, rundir={str(tmp_path / "run")!r}),
            trace_path={str(tmp_path / "t.h5")!r})
except TraceError as exc:
    sys.stdout.write(f"rank {{MPI.COMM_WORLD.Get_rank()}} raised {{exc}}\\n")  # one write
    sys.stdout.flush()
    sys.exit(3)
sys.stdout.write(f"rank {{MPI.COMM_WORLD.Get_rank()}} returned\\n")
sys.stdout.flush()
""")
    exe = MPIEXEC if os.path.exists(MPIEXEC) else "mpiexec"
    t0 = time.monotonic()
    p = subprocess.run([exe, "-n", "3", sys.executable, script], env=_env(),
                       capture_output=True, text=True, timeout=BOUND + 30)
    assert time.monotonic() - t0 < BOUND, p.stderr[-2000:]
    assert "rank 0 raised disk full (test)" in p.stdout, p.stdout + p.stderr
    assert "rank 1 returned" in p.stdout and "rank 2 returned" in p.stdout, p.stdout
    assert p.returncode != 0


def test_rank0_failing_before_its_loop_ends_the_job(tmp_path) -> None:
    """An ``on_master`` hook that raises on rank 0 (after the workers started waiting
    for tasks): the job is aborted with one line naming the error, not left hanging."""
    script = _write(str(tmp_path / "hook_fails.py"), f"""
from mpiwf import Config, Workflow
from mpiwf.runner import run

def hook(master):
    raise RuntimeError("hook failed (test)")

wf = Workflow("w")
wf.add_set("a", 4, "noop")
run(wf, Config(progress_interval=0, rundir={str(tmp_path / "run")!r}), on_master=hook)
""")
    exe = MPIEXEC if os.path.exists(MPIEXEC) else "mpiexec"
    t0 = time.monotonic()
    p = subprocess.run([exe, "-n", "3", sys.executable, script], env=_env(),
                       capture_output=True, text=True, timeout=BOUND + 30)
    assert time.monotonic() - t0 < BOUND, p.stderr[-2000:]
    assert p.returncode != 0
    assert "mpiwf: error on rank 0: RuntimeError: hook failed (test)" in p.stderr, p.stderr

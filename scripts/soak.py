"""Soak test: many start/stop cycles of mpiwf runs at 1, 2 and 4 ranks, none may hang.

    python scripts/soak.py [--cycles 100] [--ranks 1 2 4] [--bound 600] [--launches K]

Each rank count is one ``mpiexec -n N`` job (bounded by ``MPIEXEC_TIMEOUT`` and a
subprocess timeout) that runs ``--cycles`` runs back to back, each with its own
duplicated communicator, trace and small random workflow. Cycles rotate through:
a clean run, a stop requested mid-run (as SIGTERM does), a failure with retries and
skipped dependents, a task timeout, and ``--fail-fast``. Every cycle checks that the
counts add up and that the expected outcome happened; the job prints one line with
the cycle count and the time per cycle. ``--launches K`` adds K cold cycles per rank
count: ``mpiexec -n N python -m mpiwf run`` started, sent SIGTERM at a random moment,
and required to exit 0 (finished first) or 3 (stopped) within the bound.
Exit status 0 only if every job passed.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time


def cycle(i: int, comm, tmp: str) -> str:
    """One start/stop cycle on every rank of ``comm``; returns its kind (rank 0 checks)."""
    from mpiwf import Config, Workflow
    from mpiwf.runner import run

    kinds = ("clean", "stop", "fail", "timeout", "failfast")
    kind = kinds[i % len(kinds)]
    rng = random.Random(i)
    wf = Workflow(f"soak{i}")
    n = rng.randint(3, 30)
    wf.add_set("a", n, "sleep", (rng.choice([0.0, 0.001, 0.003]),))
    wf.add_set("b", rng.randint(1, 10), "noop", after=["a"])
    if kind in ("fail", "failfast"):
        wf.add_set("bad", 1, "fail", ("soak",), retries=1, duration=1.0)
        wf.add_set("after_bad", 2, "noop", after=["bad"])
    if kind == "timeout":
        wf.add_set("slow", 1, "sleep", (30.0,), timeout=0.05)
    masters = []

    def on_master(m) -> None:
        masters.append(m)
        m.fail_fast = kind == "failfast"

    def cb(ev) -> None:
        if kind == "stop" and masters:
            masters[0].request_stop("soak stop")

    cfg = Config(progress_interval=0, validate=i % 7 == 0)
    path = os.path.join(tmp, f"s{i % 3}.h5") if i % 2 else None
    s = run(wf, cfg, trace_path=path, comm=comm, callbacks=[cb], on_master=on_master)
    if comm.Get_rank() != 0:
        return kind
    assert s is not None
    assert s.done + s.failed + s.skipped + s.cancelled == s.tasks, s
    if kind == "clean":
        assert s.ok, s
    elif kind == "stop":
        assert s.stop_reason == "soak stop", s
    elif kind == "fail":
        assert (s.failed, s.skipped) == (1, 2) and s.done == s.tasks - 3, s
    elif kind == "timeout":
        assert s.failed == 1 and s.done == s.tasks - 1, s
    else:
        assert s.failed == 1 and s.stop_reason.startswith("--fail-fast"), s
    return kind


def inner(cycles: int) -> int:
    """The body of one mpiexec job."""
    import logging

    from mpi4py import MPI

    logging.disable(logging.WARNING)  # expected failures and stops would flood the log
    comm = MPI.COMM_WORLD
    tmp = comm.bcast(tempfile.mkdtemp(prefix="mpiwf-soak-") if comm.Get_rank() == 0 else None)
    t0 = time.perf_counter()
    for i in range(cycles):
        cycle(i, comm, tmp)
    dt = time.perf_counter() - t0
    comm.Barrier()
    if comm.Get_rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"soak: {comm.Get_size()} rank(s): {cycles} cycles in {dt:.1f} s "
              f"({1e3 * dt / cycles:.0f} ms/cycle), no hang", flush=True)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cycles", type=int, default=100)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--bound", type=int, default=600, help="seconds per mpiexec job")
    p.add_argument("--launches", type=int, default=0,
                   help="also K mpiexec launches per rank count, each stopped by SIGTERM")
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.inner:
        return inner(a.cycles)
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(mpiexec):
        mpiexec = shutil.which("mpiexec") or "mpiexec"
    env = {**os.environ, "MPIEXEC_TIMEOUT": str(a.bound)}
    status = 0
    for n in a.ranks:
        t0 = time.monotonic()
        try:
            r = subprocess.run([mpiexec, "-n", str(n), sys.executable, os.path.abspath(__file__),
                                "--inner", "--cycles", str(a.cycles)], env=env,
                               timeout=a.bound + 30)
            rc = r.returncode
        except subprocess.TimeoutExpired:
            rc = 124
        if rc != 0:
            print(f"soak: {n} rank(s): FAILED (exit {rc}) after {time.monotonic() - t0:.0f} s",
                  flush=True)
            status = 1
        if a.launches and launches(mpiexec, n, a.launches, env, min(a.bound, 60)) != 0:
            status = 1
    return status


def launches(mpiexec: str, n: int, k: int, env: dict[str, str], bound: int) -> int:
    """``k`` cold start/stop cycles: launch a run, SIGTERM it at a random moment; any
    exit other than finished, stopped or killed-in-start-up (or a timeout) is bad."""
    import signal

    tmp = tempfile.mkdtemp(prefix="mpiwf-soak-launch-")
    spec = os.path.join(tmp, "s.yaml")
    with open(spec, "w") as fh:
        fh.write("sets:\n  - {name: a, n: 40, kernel: sleep, args: [0.02]}\n"
                 "  - {name: b, n: 4, kernel: noop, after: [a]}\n")
    rng = random.Random(n)
    bad, t0 = 0, time.monotonic()
    seen: dict[str, int] = {}
    for i in range(k):
        cmd = [mpiexec, "-n", str(n), sys.executable, "-m", "mpiwf", "run", spec, "--trace",
               os.path.join(tmp, "t.h5"), "--rundir", os.path.join(tmp, "r"), "--progress",
               "0"]
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.2, 3.0))
        p.send_signal(signal.SIGTERM)
        try:
            _out, err = p.communicate(timeout=bound)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            p.kill()
            _out, err = p.communicate()
            rc = 124
        # 0: finished first; 3: mpiwf stopped it; 15/143/-15: the signal came during
        # start-up, before mpiwf's handlers, and the default action ended the processes
        kind = {0: "finished", 3: "stopped"}.get(rc, "killed in start-up"
                                                 if rc in (15, 143, -15) else "bad")
        seen[kind] = seen.get(kind, 0) + 1
        if kind == "bad":
            bad += 1
            print(f"soak: launch {i} at {n} rank(s): exit {rc}: {err.decode()[-300:]}",
                  flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"soak: {n} rank(s): {k} launches stopped by SIGTERM in "
          f"{time.monotonic() - t0:.1f} s: {seen}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""Simulator scale: per-task cost and memory from 10^3 to 10^6 tasks.

    python benchmarks/sim_scale.py [--max 1000000] [--profile]

Each size runs in a fresh subprocess: a DAG of n/1000 sets x 1000 tasks (ten
parallel chains of sets, each set after the one ten before it; durations drawn from
a seeded uniform distribution so completions interleave) simulated asynchronously on
n/100 virtual one-core workers (10,000 at 10^6 tasks) by the real scheduler. Prints
wall time, per-task cost, peak resident memory above the interpreter's baseline per
task, and the ratio of the largest to the smallest per-task cost (target <= 1.5,
and <= 20 s and <= 1.5 KB/task at 10^6).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(n: int, profile: bool) -> dict[str, float]:
    """Build and simulate the n-task DAG in this process; return the measurements."""
    sys.path.insert(0, ROOT)
    from mpiwf.resources import uniform_workers
    from mpiwf.simulate import simulate
    from mpiwf.workflow import Workflow

    warm = Workflow("warm-up")  # imports and first-call costs are not per-task costs
    warm.add_set("a", 10, "sleep", (1.0,), duration_dist={"dist": "uniform"})
    simulate(warm, uniform_workers(1, 2, 1))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    c0 = time.process_time()
    nsets = max(1, n // 1000)
    per = n // nsets
    wf = Workflow("scale")
    for i in range(nsets):
        after = [f"s{i - 10}"] if i >= 10 else []
        wf.add_set(f"s{i}", per, "sleep", (1.0,), after=after,
                   duration_dist={"dist": "uniform", "low": 0.5, "high": 1.5})
    workers = uniform_workers(1, max(10, n // 100), 1)
    t1 = time.perf_counter()
    if profile:
        import cProfile
        import pstats

        pr = cProfile.Profile()
        pr.enable()
    res = simulate(wf, workers, "async", seed=1)
    t2 = time.perf_counter()
    c2 = time.process_time()
    if profile:
        pr.disable()
        pstats.Stats(pr, stream=sys.stderr).sort_stats("tottime").print_stats(15)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert res.tasks == n, (res.tasks, n)
    return {"n": n, "build_s": t1 - t0, "sim_s": t2 - t1, "total_s": t2 - t0,
            "per_task_us": 1e6 * (t2 - t0) / n,
            "cpu_s": c2 - c0, "cpu_per_task_us": 1e6 * (c2 - c0) / n,
            "bytes_per_task": (peak - base) * 1024 / n,
            "makespan": res.makespan}


def main() -> int:
    """Run each size in a subprocess and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max", type=int, default=1_000_000)
    ap.add_argument("--profile", action="store_true", help="cProfile the largest size")
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.profile)))
        return 0
    sizes = [s for s in (1_000, 10_000, 100_000, 1_000_000) if s <= a.max]
    out = []
    print(f"{'tasks':>9} {'workers':>8} {'build s':>8} {'sim s':>8} {'us/task':>8} "
          f"{'cpu s':>8} {'cpu us/task':>11} {'B/task':>8}")
    for n in sizes:
        cmd = [sys.executable, __file__, "--child", str(n)]
        if a.profile and n == sizes[-1]:
            cmd.append("--profile")
        r = json.loads(subprocess.run(cmd, check=True,
                                      stdout=subprocess.PIPE, text=True).stdout)
        out.append(r)
        print(f"{n:>9} {max(10, n // 100):>8} {r['build_s']:8.3f} {r['sim_s']:8.3f} "
              f"{r['per_task_us']:8.2f} {r['cpu_s']:8.3f} {r['cpu_per_task_us']:11.2f} "
              f"{r['bytes_per_task']:8.0f}", flush=True)
    for key, what in (("per_task_us", "wall"), ("cpu_per_task_us", "CPU")):
        per = [r[key] for r in out]
        print(f"per-task {what} cost max/min = {max(per) / min(per):.2f} (target <= 1.5)")
    big = out[-1]
    if big["n"] == 1_000_000:
        print(f"10^6 tasks: {big['total_s']:.1f} s wall, {big['cpu_s']:.1f} s CPU "
              "(target <= 20 s; wall time grows with the load of this shared machine), "
              f"{big['bytes_per_task']:.0f} B/task (target <= 1536)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

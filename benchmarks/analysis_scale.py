"""Analysis of a 1,000,000-task trace: build it, then time reading and every metric.

    .venv/bin/python benchmarks/analysis_scale.py [--tasks N] [--keep FILE]

Builds a trace with :class:`mpiwf.trace.TraceWriter` (sets, edges, workers) whose
task table is written directly with h5py in 64k-row slabs: 1024 workers on 16 nodes,
10 chained sets, ~1 % failed attempts retried. Then times ``load`` and
``summarize`` (makespan, utilization, concurrency, per-set stats, overheads,
realised and model critical path, failures) and the time series the plots use,
and prints the total against the 10 s target and the cost per row.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

from mpiwf import Workflow, uniform_workers
from mpiwf import analysis as an
from mpiwf.trace import TASK_DTYPE, TraceWriter, load

TARGET_S = 10.0


def build(path: str, ntasks: int, nsets: int = 10, nworkers: int = 1024) -> int:
    """Write a synthetic trace of ``ntasks`` tasks (plus retried failures); rows."""
    wf = Workflow("scale")
    per = ntasks // nsets
    for s in range(nsets):
        n = per if s < nsets - 1 else ntasks - per * (nsets - 1)
        wf.add_set(f"s{s}", n, "sleep", (0.7,), after=[f"s{s - 1}"] if s else ())
    workers = uniform_workers(16, nworkers // 16, 1, 4)
    tw = TraceWriter(path, wf, workers, {"mode": "async", "simulated": True})
    rng = np.random.default_rng(0)
    tid = np.arange(ntasks)
    fail = rng.random(ntasks) < 0.01
    # failed first attempts then their retries, then the rest, in one table
    task = np.concatenate([tid[fail], tid])
    attempt = np.concatenate([np.zeros(fail.sum()), fail.astype(int)]).astype(np.int16)
    status = np.concatenate([np.full(fail.sum(), 5), np.full(ntasks, 4)]).astype(np.int8)
    n = len(task)
    slot = np.arange(n)
    a = np.zeros(n, dtype=TASK_DTYPE)
    a["task"], a["attempt"], a["status"] = task, attempt, status
    a["set"] = np.minimum(task // per, nsets - 1)
    a["index"] = task - a["set"] * per
    a["worker"] = 1 + slot % nworkers
    a["nworkers"] = 1
    a["node"] = (a["worker"] - 1) // (nworkers // 16)
    a["cores"] = 1
    a["gpus"] = ((a["worker"] - 1) % (nworkers // 16) < 4).astype(int)
    start = (slot // nworkers) * 1.0 + rng.random(n) * 0.05
    a["created"] = 0.0
    a["ready"] = np.maximum(start - rng.random(n) * 2.0, 0.0)
    a["dispatched"] = np.maximum(start - rng.random(n) * 0.01, a["ready"])
    a["started"] = start
    a["ended"] = start + 0.5 + rng.random(n) * 0.4
    a["received"] = a["ended"] + rng.random(n) * 0.002
    names = np.array([f"s{s}" for s in range(nsets)])
    a["name"] = np.char.add(np.char.add(names[a["set"]], "["),
                            np.char.add(a["index"].astype("U8"), "]"))
    a["host"] = np.char.add("node", (a["node"]).astype("U4"))
    ds = tw.tasks
    ds.resize((n,))
    for i in range(0, n, 65536):
        ds[i:i + 65536] = a[i:i + 65536]
    tw.close()
    return n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=1_000_000)
    p.add_argument("--keep", default=None, help="write the trace here and keep it")
    args = p.parse_args()
    path = args.keep or os.path.join(tempfile.mkdtemp(prefix="mpiwf-bench-"), "scale.h5")
    t0 = time.perf_counter()
    rows = build(path, args.tasks)
    t_build = time.perf_counter() - t0
    size = os.path.getsize(path) / 2**20
    print(f"built {path}: {args.tasks} tasks, {rows} rows, {size:.0f} MiB in {t_build:.1f} s")
    timings, cpu = {}, {}
    c, t = time.process_time(), time.perf_counter()
    tr = load(path)
    timings["load"], cpu["load"] = time.perf_counter() - t, time.process_time() - c
    c, t = time.process_time(), time.perf_counter()
    s = an.summarize(tr)
    timings["summarize"], cpu["summarize"] = time.perf_counter() - t, time.process_time() - c
    c, t = time.process_time(), time.perf_counter()
    an.utilization_series(tr)
    an.concurrency(tr)
    timings["series"], cpu["series"] = time.perf_counter() - t, time.process_time() - c
    total = sum(timings.values())
    print("  step        wall     per row   (CPU time: the machine is shared)")
    for k, v in timings.items():
        print(f"  {k:<10} {v:6.2f} s  {1e9 * v / rows:6.0f} ns   ({cpu[k]:.2f} s)")
    print(f"total {total:.2f} s for {rows} rows: {1e9 * total / rows:.0f} ns/row "
          f"(target {TARGET_S:.0f} s: {'met' if total <= TARGET_S else 'MISSED'}, "
          f"{total / TARGET_S:.2f} of it)")
    print(f"  makespan {s['makespan']:.1f} s, cpu {100 * s['utilization']['cpu']:.1f} %, "
          f"gpu {100 * s['utilization']['gpu']:.1f} %, critical path "
          f"{s['critical_path']['tasks']} tasks, {s['failures']['failed_attempts']} failed "
          f"attempts, max running {s['concurrency']['max_running']}")
    if not args.keep:
        os.remove(path)
        os.rmdir(os.path.dirname(path))
    return 0 if total <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())

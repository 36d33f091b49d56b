"""WfCommons instances: critical path, simulated makespan on N cores, recorded makespan.

    python benchmarks/wfcommons_report.py [--cores N] [--time-scale F] [DIR_OR_FILES...]

Default input: ../shared/data/wfinstances/*.json. Each instance is imported from
WfFormat (task-level DAG from parents/children, runtimeInSeconds as duration,
coreCount as cores) and simulated asynchronously on one node of N cores (default:
the cores of the machines the instance records, else 48) by the real scheduler.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> int:
    """Print one line per instance."""
    from mpiwf.errors import SpecError
    from mpiwf.layouts import Layout
    from mpiwf.model import model
    from mpiwf.simulate import simulate
    from mpiwf.spec import load, read_document
    from mpiwf.wfformat import instance_info

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*")
    ap.add_argument("--cores", type=int, default=None)
    ap.add_argument("--time-scale", type=float, default=1.0)
    a = ap.parse_args()
    paths = a.paths or [os.path.join(ROOT, "..", "shared", "data", "wfinstances")]
    files: list[str] = []
    for p in paths:
        files += sorted(glob.glob(os.path.join(p, "*.json"))) if os.path.isdir(p) else [p]
    print(f"{'instance':<46} {'tasks':>6} {'edges':>6} {'cores':>5} {'crit. path':>10} "
          f"{'sim async':>10} {'sim seq':>9} {'recorded':>9}")
    for f in files:
        try:
            wf = load(f, fmt="wfformat")
        except SpecError as exc:
            print(f"{os.path.basename(f):<46} error: {exc}")
            continue
        if a.time_scale != 1.0:
            wf.scaled(a.time_scale)
        info = instance_info(read_document(f))
        cores = a.cores or info["machine_cores"] or 48
        cores = max(cores, max(ts.cores for ts in wf.sets))
        w = Layout("cores", cores).workers(1)
        m = model(wf, simulate_bound=False)
        asy = simulate(wf, w, "async").makespan
        seq = simulate(wf, w, "sequential").makespan
        rec = info["recorded_makespan"]
        print(f"{os.path.basename(f)[:46]:<46} {wf.ntasks:>6} {len(wf.set_deps):>6} {cores:>5} "
              f"{m.t_async_path:10.1f} {asy:10.1f} {seq:9.1f} "
              f"{rec * a.time_scale if rec is not None else float('nan'):9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

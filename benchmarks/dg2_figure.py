"""DG2 of the paper on 16 virtual Summit nodes, sequential vs async: traces and plots.

    .venv/bin/python benchmarks/dg2_figure.py [OUTDIR]

Simulates both modes with :mod:`mpiwf.simulate` into ``OUTDIR/dg2-{sequential,async}.h5``
(default ``dg2-out``), prints the comparison and writes
``OUTDIR/dg2-{utilization,concurrency,gantt}.png``; ``docs/dg2-utilization.png`` is
this script's utilization plot.
"""

from __future__ import annotations

import os
import sys

from mpiwf import Workflow, uniform_workers
from mpiwf.analysis import analyze_paths, format_comparison
from mpiwf.plot import KINDS, plot
from mpiwf.simulate import simulate
from mpiwf.spec import load as load_spec
from mpiwf.trace import TraceWriter, load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dg2() -> Workflow:
    """DG2 of paper-reference.md: 256 tasks, 8 sets (the spec in apps/paper)."""
    wf = load_spec(os.path.join(ROOT, "apps", "paper", "dg2.yaml"))
    wf.name = "DG2"
    return wf


def main() -> int:
    out = sys.argv[1] if len(sys.argv) > 1 else "dg2-out"
    os.makedirs(out, exist_ok=True)
    # 16 Summit nodes: 168 one-core (hardware-thread) ranks + 6 GPU ranks per node
    workers = uniform_workers(16, 168, 1, 6, gpu_workers_own_cores=False)
    paths = []
    for mode in ("sequential", "async"):
        path = os.path.join(out, f"dg2-{mode}.h5")
        wf = dg2()
        tw = TraceWriter(path, wf, workers, {"mode": mode, "simulated": True,
                                             "layout": "16 Summit nodes"})
        r = simulate(wf, workers, mode, trace=tw)
        tw.close(makespan=r.makespan)
        paths.append(path)
    print(format_comparison(analyze_paths(paths)))
    traces = [load(p) for p in paths]
    for kind in KINDS:
        print(plot(traces, kind, os.path.join(out, f"dg2-{kind}.png")))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Real runs agree with the simulator: the paper's workflows, shrunk and time-scaled,
under mpiexec on local ranks, against the simulator on the same layout.

    python benchmarks/real_vs_sim.py [--ranks 9] [--gpus 6] [--div 16] \
        [--time-scale 0.005] [--workflows dg1,dg2,ddmd]

Each workflow of apps/paper/ keeps its structure, stage order and durations (times
``--time-scale``); its counts are divided by ``--div`` (rounded up: 16 = one Summit
node's share), and its requests become one worker: a GPU task one GPU worker, a CPU
task one core. The machine is ``--ranks - 1`` worker ranks on this host, the first
``--gpus`` of them with a virtual GPU (``mpiwf.layouts.rank_layout``). For every
workflow it runs ``mpiexec -n RANKS`` sequentially and asynchronously (sleep tasks,
prefetch off, as the simulator), simulates the same workflow on the same workers,
and prints real vs simulated makespans and I. Targets: |I_real - I_sim| <= 3 points,
real makespan <= simulated + 5 %.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mpiwf.workflow import DEP_ALL, Workflow  # noqa: E402


def shrink(name: str, div: int, time_scale: float) -> Workflow:
    """The paper workflow ``name`` with counts / ``div`` and one-worker requests."""
    from mpiwf.spec import load

    src = load(os.path.join(ROOT, "apps", "paper", f"{name}.yaml"))
    wf = Workflow(f"{name}-local")
    parents: dict[int, list[str]] = {}
    for a, b, kind in src.set_deps:
        assert kind == DEP_ALL
        parents.setdefault(b, []).append(src.sets[a].name)
    for ts in src.sets:
        t = ts.duration * time_scale
        wf.add_set(ts.name, math.ceil(ts.n / div), "sleep", (t,), cores=1,
                   gpus=1 if ts.gpus else 0, after=parents.get(ts.sid, []))
    if src.stage_order is not None:
        wf.set_stage_order(src.stage_order)
    return wf.validate()


def child(a: argparse.Namespace) -> int:
    """One real run under mpiexec (every rank runs this)."""
    from mpiwf.config import Config
    from mpiwf.layouts import rank_layout
    from mpiwf.runner import run

    wf = shrink(a.workflow, a.div, a.time_scale)
    cfg = Config(mode=a.mode, prefetch=0, progress_interval=0.0, rundir=a.rundir)
    summary = run(wf, cfg, trace_path=a.trace, layout=rank_layout(a.gpus))
    return 0 if summary is None or summary.ok else 1


def main() -> int:
    """Run every workflow in both modes and print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, default=9)
    ap.add_argument("--gpus", type=int, default=6)
    ap.add_argument("--div", type=int, default=16)
    ap.add_argument("--time-scale", type=float, default=0.005)
    ap.add_argument("--workflows", default="dg1,dg2,ddmd")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--workflow", help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--trace", help=argparse.SUPPRESS)
    ap.add_argument("--rundir", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a)
    from mpiwf.analysis import makespan
    from mpiwf.layouts import fake_infos, rank_layout
    from mpiwf.simulate import simulate
    from mpiwf.trace import load

    workers = rank_layout(a.gpus)(fake_infos(a.ranks))
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    env = dict(os.environ, MPIR_CVAR_CH4_PROGRESS_THROTTLE="1", MPIEXEC_TIMEOUT="300")
    out = []
    print(f"{a.ranks - 1} worker ranks ({a.gpus} with a virtual GPU), counts / {a.div}, "
          f"durations x {a.time_scale}")
    print(f"{'workflow':<8} {'real seq':>9} {'sim seq':>9} {'real async':>10} {'sim async':>10} "
          f"{'I real':>7} {'I sim':>7} {'dI pt':>6} {'seq +%':>7} {'async +%':>8}")
    with tempfile.TemporaryDirectory(prefix="mpiwf-rvs-") as tmp:
        for name in a.workflows.split(","):
            wf = shrink(name, a.div, a.time_scale)
            r: dict[str, float | str] = {"workflow": name}
            for mode in ("sequential", "async"):
                trace = os.path.join(tmp, f"{name}-{mode}.h5")
                cmd = [mpiexec, "-n", str(a.ranks), sys.executable, os.path.abspath(__file__),
                       "--child", "--workflow", name, "--mode", mode, "--trace", trace,
                       "--rundir", os.path.join(tmp, "run"), "--gpus", str(a.gpus),
                       "--div", str(a.div), "--time-scale", str(a.time_scale)]
                subprocess.run(cmd, check=True, env=env, timeout=330)
                r[f"real_{mode}"] = makespan(load(trace).tasks)
                r[f"sim_{mode}"] = simulate(wf, workers, mode).makespan
            f = {k: float(v) for k, v in r.items() if k != "workflow"}
            r["i_real"] = 1 - f["real_async"] / f["real_sequential"]
            r["i_sim"] = 1 - f["sim_async"] / f["sim_sequential"]
            out.append(r)
            print(f"{name:<8} {f['real_sequential']:9.3f} {f['sim_sequential']:9.3f} "
                  f"{f['real_async']:10.3f} {f['sim_async']:10.3f} "
                  f"{100 * float(r['i_real']):7.1f} {100 * float(r['i_sim']):7.1f} "
                  f"{100 * (float(r['i_real']) - float(r['i_sim'])):+6.1f} "
                  f"{100 * (f['real_sequential'] / f['sim_sequential'] - 1):+7.2f} "
                  f"{100 * (f['real_async'] / f['sim_async'] - 1):+8.2f}", flush=True)
    ok_i = all(abs(float(r["i_real"]) - float(r["i_sim"])) <= 0.03 for r in out)
    ok_t = all(float(r[f"real_{m}"]) <= 1.05 * float(r[f"sim_{m}"])
               for r in out for m in ("sequential", "async"))
    print(f"[{'met' if ok_i else 'NOT MET'}] |I_real - I_sim| <= 3 points")
    print(f"[{'met' if ok_t else 'NOT MET'}] real makespan <= simulated + 5 %")
    if a.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Reproduce the paper's Summit table: model, simulation and measurement side by side.

    python benchmarks/paper_table.py [--layout summit168] [--nodes 16] [--json]

For DG1, DG2 and DeepDriveMD (apps/paper/*.yaml) on 16 Summit nodes counted as the
paper counted them (168 hardware threads + 6 GPUs per node): the model's T_seq,
T_async and I (formula: stage sums and critical path; and the resource-aware
list-scheduling bound), the simulated sequential and asynchronous makespans (the
real scheduler on a virtual clock, critical-path order and FIFO order), the
paper's measured values, and the differences. Ends with the targets and whether
each is met.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mpiwf.layouts import workers as layout_workers  # noqa: E402
from mpiwf.model import model  # noqa: E402
from mpiwf.simulate import simulate  # noqa: E402
from mpiwf.spec import load  # noqa: E402

#: Measured on Summit (paper-reference.md): T_seq, T_async (s), I.
MEASURED = {"dg1": (1902.5, 1909.1, -0.003), "dg2": (1800.1, 1332.6, 0.260),
            "ddmd": (1660.1, 1331.5, 0.198)}
#: The paper's model I.
PAPER_MODEL = {"dg1": 0.0, "dg2": 0.261, "ddmd": 0.235}


def rows(layout: str, nodes: int) -> list[dict[str, float | str]]:
    """One dict per workflow with every number of the table."""
    w = layout_workers(layout, nodes)
    out: list[dict[str, float | str]] = []
    for name in ("dg1", "dg2", "ddmd"):
        wf = load(os.path.join(ROOT, "apps", "paper", f"{name}.yaml"))
        m = model(wf, w)
        seq = simulate(wf, w, "sequential").makespan
        cp = simulate(wf, w, "async").makespan
        fifo = simulate(wf, w, "async", order="fifo").makespan
        ms, ma, mi = MEASURED[name]
        out.append({
            "workflow": name,
            "model_t_seq": m.t_seq_stages, "model_t_async": m.t_async_path,
            "model_i": 1 - m.t_async_path / m.t_seq_stages,
            "model_t_async_resource": m.t_async, "model_i_resource": m.improvement,
            "sim_seq": seq, "sim_async": cp, "sim_i": 1 - cp / seq,
            "sim_async_fifo": fifo, "sim_i_fifo": 1 - fifo / seq,
            "measured_seq": ms, "measured_async": ma, "measured_i": mi,
            "paper_model_i": PAPER_MODEL[name],
        })
    return out


def targets(tab: list[dict[str, float | str]]) -> list[tuple[str, bool, str]]:
    """(target, met, detail) for each target of the issue."""
    by = {str(r["workflow"]): r for r in tab}
    out = []
    for name in ("dg1", "dg2"):
        r = by[name]
        d = 100 * (float(r["sim_i"]) - float(r["model_i"]))
        out.append((f"{name}: simulated I within +-2 points of the model", abs(d) <= 2.0,
                    f"{100 * float(r['sim_i']):.1f} % vs {100 * float(r['model_i']):.1f} % "
                    f"({d:+.1f} pt)"))
    r = by["ddmd"]
    out.append(("ddmd: async with critical-path priority >= 23 %", float(r["sim_i"]) >= 0.23,
                f"{100 * float(r['sim_i']):.1f} % (FIFO order {100 * float(r['sim_i_fifo']):.1f} "
                f"%, measured {100 * float(r['measured_i']):.1f} %). With 96 GPUs the 288 "
                "simulations fill every GPU until 1020 s, so the 288 agents and the "
                "trainings queue behind them; no order reaches the 1205 s critical path "
                "(see README)"))
    return out


def main() -> int:
    """Print the table (or JSON); exit 0 even when a target is missed (it says so)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layout", default="summit168")
    ap.add_argument("--nodes", type=int, default=16)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    tab = rows(a.layout, a.nodes)
    tg = targets(tab)
    if a.json:
        print(json.dumps({"rows": tab, "targets": [dict(target=t, met=m, detail=d)
                                                   for t, m, d in tg]}))
        return 0
    print(f"{a.nodes} x {a.layout}; times in s, I in %; sim = real scheduler on a virtual "
          "clock (critical-path order unless FIFO)")
    hdr = (f"{'workflow':<8} {'model':>22} {'model(res)':>12} {'simulated':>22} "
           f"{'sim FIFO':>14} {'measured':>22} {'dI sim-model':>12} {'dI sim-meas':>11}")
    print(hdr)
    print(f"{'':<8} {'T_seq  T_async     I':>22} {'T_async   I':>12} "
          f"{'T_seq  T_async     I':>22} {'T_async    I':>14} {'T_seq  T_async     I':>22} "
          f"{'pt':>12} {'pt':>11}")
    for r in tab:
        f = {k: float(v) for k, v in r.items() if k != "workflow"}
        print(f"{r['workflow']:<8} {f['model_t_seq']:7.1f} {f['model_t_async']:7.1f} "
              f"{100 * f['model_i']:6.1f} {f['model_t_async_resource']:6.1f} "
              f"{100 * f['model_i_resource']:5.1f} {f['sim_seq']:7.1f} {f['sim_async']:7.1f} "
              f"{100 * f['sim_i']:6.1f} {f['sim_async_fifo']:7.1f} {100 * f['sim_i_fifo']:6.1f} "
              f"{f['measured_seq']:7.1f} {f['measured_async']:7.1f} {100 * f['measured_i']:6.1f} "
              f"{100 * (f['sim_i'] - f['model_i']):+12.1f} "
              f"{100 * (f['sim_i'] - f['measured_i']):+11.1f}")
    print("paper's model I: " + ", ".join(f"{r['workflow']} {100 * float(r['paper_model_i']):.1f} %"
                                          for r in tab))
    print("makespan differences sim - measured (s): " + ", ".join(
        f"{r['workflow']} seq {float(r['sim_seq']) - float(r['measured_seq']):+.1f} async "
        f"{float(r['sim_async']) - float(r['measured_async']):+.1f}" for r in tab))
    print("targets:")
    for t, met, d in tg:
        print(f"  [{'met' if met else 'NOT MET'}] {t}: {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

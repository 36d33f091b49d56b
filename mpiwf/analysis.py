"""Offline analysis of traces: the paper's metrics, vectorised over the task table.

Works the same on real and simulated traces. This module never imports mpi4py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .trace import Trace, load

DONE = 4


def _final_rows(t: np.ndarray) -> np.ndarray:
    """Rows of attempts that ran (have a start and an end)."""
    ok = np.isfinite(t["started"]) & np.isfinite(t["ended"]) & (t["worker"] >= 0)
    return t[ok]


def totals(tr: Trace) -> tuple[int, int]:
    """Total cores and GPUs of the run's workers."""
    cores = sum(int(w.get("cores", 0)) for w in tr.workers)
    gpus = sum(int(w.get("gpus", 0)) for w in tr.workers)
    return cores, gpus


def makespan(tasks: np.ndarray) -> float:
    """First start to last end (seconds)."""
    r = _final_rows(tasks)
    if not len(r):
        return 0.0
    return float(r["ended"].max() - r["started"].min())


def utilization(tasks: np.ndarray, total_cores: int, total_gpus: int,
                span: float | None = None) -> dict[str, float]:
    """U_r = sum over tasks of r(task) * (end - start) / (R_total * makespan)."""
    r = _final_rows(tasks)
    ms = makespan(tasks) if span is None else span
    out = {"cpu": 0.0, "gpu": 0.0}
    if ms <= 0 or not len(r):
        return out
    dur = r["ended"] - r["started"]
    if total_cores:
        out["cpu"] = float(np.sum(r["cores"] * dur) / (total_cores * ms))
    if total_gpus:
        out["gpu"] = float(np.sum(r["gpus"] * dur) / (total_gpus * ms))
    return out


def per_set(tr: Trace) -> list[dict[str, Any]]:
    """Per set: count, mean/std/min/max duration and mean queue wait (dispatched-ready)."""
    t = _final_rows(tr.tasks)
    out = []
    sid = t["set"]
    dur = t["ended"] - t["started"]
    wait = t["dispatched"] - t["ready"]
    for s in tr.sets:
        m = sid == s["sid"]
        n = int(m.sum())
        d = dur[m]
        out.append({"set": s["name"], "tasks": n,
                    "mean": float(d.mean()) if n else float("nan"),
                    "std": float(d.std()) if n else float("nan"),
                    "min": float(d.min()) if n else float("nan"),
                    "max": float(d.max()) if n else float("nan"),
                    "wait": float(np.nanmean(wait[m])) if n else float("nan")})
    return out


def summarize(tr: Trace) -> dict[str, Any]:
    """The headline numbers of one run."""
    t = tr.tasks
    ms = makespan(t)
    cores, gpus = totals(tr)
    ndone = int(np.sum(t["status"] == DONE))
    status_counts = {int(k): int(v) for k, v in zip(*np.unique(t["status"], return_counts=True))}
    from .trace import STATUS_NAMES

    return {
        "trace": tr.path,
        "run": tr.run,
        "workflow": tr.attrs.get("workflow"),
        "mode": tr.mode,
        "simulated": tr.simulated,
        "partial": tr.partial,
        "makespan": ms,
        "tasks": ndone,
        "rows": int(len(t)),
        "throughput": ndone / ms if ms > 0 else 0.0,
        "utilization": utilization(t, cores, gpus, ms),
        "resources": {"cores": cores, "gpus": gpus, "workers": len(tr.workers)},
        "status": {STATUS_NAMES[k] if k < len(STATUS_NAMES) else str(k): v
                   for k, v in status_counts.items()},
        "sets": per_set(tr),
    }


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Run ``b`` against baseline ``a``: I = 1 - T_b / T_a, speed-up, utilization change."""
    ta, tb = a["makespan"], b["makespan"]
    return {
        "baseline": a["trace"], "other": b["trace"],
        "improvement": 1.0 - tb / ta if ta > 0 else float("nan"),
        "speedup": ta / tb if tb > 0 else float("nan"),
        "utilization_change": {k: b["utilization"][k] - a["utilization"][k]
                               for k in ("cpu", "gpu")},
    }


def analyze_paths(paths: Sequence[str], run: int = -1) -> list[dict[str, Any]]:
    """:func:`summarize` each trace file."""
    return [summarize(load(p, run)) for p in paths]


def format_summary(s: dict[str, Any]) -> str:
    """Human-readable lines for one summary."""
    u = s["utilization"]
    lines = [
        f"trace       {s['trace']} (run {s['run']}){'  [PARTIAL: run did not end cleanly]' if s['partial'] else ''}",  # noqa: E501
        f"workflow    {s['workflow']}  mode {s['mode']}{'  (simulated)' if s['simulated'] else ''}",  # noqa: E501
        f"makespan    {s['makespan']:.3f} s",
        f"tasks       {s['tasks']} done of {s['rows']} attempt rows  {s['status']}",
        f"throughput  {s['throughput']:.1f} tasks/s",
        f"utilization cpu {100 * u['cpu']:.1f} %  gpu {100 * u['gpu']:.1f} %  "
        f"({s['resources']['cores']} cores, {s['resources']['gpus']} GPUs)",
        "per set     name: tasks, mean duration (s), mean queue wait (s)",
    ]
    for p in s["sets"]:
        lines.append(f"  {p['set']}: {p['tasks']}, {p['mean']:.4g}, {p['wait']:.4g}")
    return "\n".join(lines)

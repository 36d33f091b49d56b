"""Exports of a trace's task table: pandas DataFrame, CSV, Chrome trace-event JSON.

The Chrome trace-event file opens in Perfetto (ui.perfetto.dev) or chrome://tracing:
one process per node, one thread (track) per worker rank, one complete event per
attempt that ran, coloured by task set. This module never imports mpi4py.
"""

from __future__ import annotations

import csv
import json
from typing import Any

import numpy as np

from .errors import MpiwfError
from .trace import STATUS_NAMES, Trace

#: Columns of the CSV export, in order (the task table plus decoded names).
CSV_COLUMNS = ("task", "set", "set_name", "index", "attempt", "status", "status_name",
               "worker", "nworkers", "node", "cores", "gpus", "created", "ready",
               "dispatched", "started", "ended", "received", "name", "host")


def _columns(tr: Trace) -> dict[str, np.ndarray]:
    t = tr.tasks
    names = {int(s["sid"]): str(s["name"]) for s in tr.sets}
    sid = t["set"]
    uniq, inv = np.unique(sid, return_inverse=True)
    set_name = np.array([names.get(int(k), str(k)) for k in uniq], dtype=object)[inv]
    st = t["status"].astype(np.int64)
    sn = np.array(list(STATUS_NAMES) + ["?"], dtype=object)
    status_name = sn[np.where((st >= 0) & (st < len(STATUS_NAMES)), st, len(STATUS_NAMES))]
    out: dict[str, np.ndarray] = {}
    for c in CSV_COLUMNS:
        if c == "set_name":
            out[c] = set_name
        elif c == "status_name":
            out[c] = status_name
        elif c in ("name", "host"):
            out[c] = np.char.decode(t[c], "utf-8", "replace").astype(object)
        else:
            out[c] = t[c]
    return out


def to_dataframe(tr: Trace) -> Any:
    """The task table as a :class:`pandas.DataFrame`, one row per attempt.

    Columns are :data:`CSV_COLUMNS`; names and hosts are decoded to ``str``.

    Raises:
        MpiwfError: pandas is not installed (it is an optional dependency).
    """
    try:
        import pandas as pd
    except ImportError:
        raise MpiwfError("to_dataframe needs pandas, an optional dependency: "
                         "pip install pandas") from None
    return pd.DataFrame(_columns(tr))


def write_csv(tr: Trace, path: str) -> int:
    """Write the task table as CSV with a header row (:data:`CSV_COLUMNS`).

    Times are written with full float precision (``repr``); a NaN time is empty.

    Returns:
        The number of data rows written.
    """
    cols = _columns(tr)
    lists = []
    for c in CSV_COLUMNS:
        a = cols[c]
        if a.dtype.kind == "f":
            lists.append(["" if x != x else repr(x) for x in a.tolist()])
        else:
            lists.append(a.tolist())
    try:
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(CSV_COLUMNS)
            w.writerows(zip(*lists))
    except OSError as exc:
        raise MpiwfError(f"{path}: cannot write ({exc.strerror})") from None
    return len(tr.tasks)


def chrome_events(tr: Trace) -> dict[str, Any]:
    """The trace as a Chrome trace-event object (``{"traceEvents": [...]}``).

    One process per node (``pid`` = node), one thread per worker (``tid`` = rank),
    named after the host and rank; each attempt that ran is a complete (``X``) event
    in microseconds since the run's start, with set, status, attempt and the
    queue / launch / report overheads in ``args``.
    """
    t = tr.tasks
    ran = np.isfinite(t["started"]) & np.isfinite(t["ended"]) & (t["worker"] >= 0)
    r = t[ran]
    names = {int(s["sid"]): str(s["name"]) for s in tr.sets}
    events: list[dict[str, Any]] = []
    nodes: dict[int, str] = {}
    for w in tr.workers:
        node, rank = int(w.get("node", 0)), int(w.get("rank", 0))
        host = str(w.get("host", ""))
        nodes.setdefault(node, host)
        events.append({"name": "thread_name", "ph": "M", "pid": node, "tid": rank,
                       "args": {"name": f"rank {rank}"}})
        events.append({"name": "thread_sort_index", "ph": "M", "pid": node, "tid": rank,
                       "args": {"sort_index": rank}})
    for node in {int(x) for x in r["node"].tolist()} - set(nodes):
        nodes[node] = ""
    for node, host in sorted(nodes.items()):
        events.append({"name": "process_name", "ph": "M", "pid": node, "tid": 0,
                       "args": {"name": f"node {node} {host}".strip()}})
    us = 1e6
    ts = (r["started"] * us).tolist()
    dur = ((r["ended"] - r["started"]) * us).tolist()
    queue = (r["dispatched"] - r["ready"]).tolist()
    launch = (r["started"] - r["dispatched"]).tolist()
    report = (r["received"] - r["ended"]).tolist()
    nm = np.char.decode(r["name"], "utf-8", "replace").tolist()
    for i, (s, st, att, node, rank, task) in enumerate(zip(
            r["set"].tolist(), r["status"].tolist(), r["attempt"].tolist(),
            r["node"].tolist(), r["worker"].tolist(), r["task"].tolist())):
        sname = names.get(s, str(s))
        events.append({
            "name": nm[i] or sname, "cat": sname, "ph": "X", "ts": ts[i], "dur": dur[i],
            "pid": node, "tid": rank,
            "args": {"task": task, "set": sname, "attempt": att,
                     "status": STATUS_NAMES[st] if 0 <= st < len(STATUS_NAMES) else st,
                     "queue_s": _num(queue[i]), "launch_s": _num(launch[i]),
                     "report_s": _num(report[i])}})
    meta = {k: v for k, v in tr.attrs.items()
            if isinstance(v, (str, int, bool)) or (isinstance(v, float) and np.isfinite(v))}
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"trace": tr.path, "run": tr.run, "partial": tr.partial, **meta}}


def _num(x: float) -> float | None:
    return x if np.isfinite(x) else None


def write_chrome(tr: Trace, path: str) -> int:
    """Write :func:`chrome_events` as JSON to ``path``.

    Returns:
        The number of task events written.
    """
    obj = chrome_events(tr)
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(obj, f, separators=(",", ":"), allow_nan=False)
    except OSError as exc:
        raise MpiwfError(f"{path}: cannot write ({exc.strerror})") from None
    return sum(1 for e in obj["traceEvents"] if e["ph"] == "X")

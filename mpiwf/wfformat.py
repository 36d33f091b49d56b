"""Import WfCommons WfFormat (schema 1.4 / 1.5) instances as workflows.

Every WfFormat task becomes a set of one task; ``parents``/``children`` become
task-level dependencies; ``runtimeInSeconds`` the duration (times ``time_scale``)
and ``coresCount`` the cores (default 1). Tasks run the ``sleep`` kernel for their
(scaled) runtime unless ``kernel`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import SpecError
from .workflow import Workflow


def _tasks(doc: Mapping[str, Any]) -> tuple[list[Any], dict[str, Mapping[str, Any]]]:
    wf = doc["workflow"]
    if "specification" in wf:  # schema 1.5
        spec = wf["specification"]
        if not isinstance(spec, Mapping) or not isinstance(spec.get("tasks"), list):
            raise SpecError("workflow.specification.tasks", "missing or not a list")
        tasks = spec["tasks"]
        execu = wf.get("execution", {})
        if not isinstance(execu, Mapping):
            raise SpecError("workflow.execution", "must be a mapping")
        ex_tasks = execu.get("tasks", [])
        if not isinstance(ex_tasks, list):
            raise SpecError("workflow.execution.tasks", "must be a list")
        ex = {}
        for i, t in enumerate(ex_tasks):
            if not isinstance(t, Mapping) or not isinstance(t.get("id"), str):
                raise SpecError(f"workflow.execution.tasks[{i}].id", "missing or not a string")
            ex[t["id"]] = t
        return tasks, ex
    tasks = wf.get("tasks")  # schema 1.4: runtime fields on the tasks themselves
    if not isinstance(tasks, list):
        raise SpecError("workflow.tasks", "missing or not a list")
    return tasks, {}


def from_wfformat(doc: Any, source: str = "wfformat", time_scale: float = 1.0,
                  kernel: str = "sleep", default_cores: int = 1) -> Workflow:
    """Build a :class:`Workflow` from parsed WfFormat JSON.

    Args:
        doc: the parsed JSON document.
        source: file name, for messages.
        time_scale: factor applied to every runtime.
        kernel: kernel each task runs with its scaled runtime as argument.
        default_cores: cores of a task whose ``coresCount`` is absent.

    Raises:
        SpecError: malformed instance (the message names the field).
    """
    if not isinstance(doc, Mapping) or not isinstance(doc.get("workflow"), Mapping):
        raise SpecError("workflow", "not a WfFormat instance (no 'workflow' mapping)")
    if isinstance(time_scale, bool) or not isinstance(time_scale, (int, float)) \
            or not time_scale > 0 or time_scale == float("inf"):
        raise SpecError("time_scale", f"must be a finite number > 0, got {time_scale!r}")
    tasks, ex = _tasks(doc)
    if not tasks:
        raise SpecError("workflow.tasks", "empty")
    name = doc.get("name", source)
    wf = Workflow(str(name) if name else "wfformat")
    ids: list[str] = []
    for i, t in enumerate(tasks):
        p = f"workflow.tasks[{i}]"
        if not isinstance(t, Mapping):
            raise SpecError(p, "must be a mapping")
        tid = t.get("id", t.get("name"))
        if not isinstance(tid, str) or not tid:
            raise SpecError(f"{p}.id", "missing or not a string")
        info = {**t, **ex.get(tid, {})}
        rt = info.get("runtimeInSeconds", info.get("runtime", 0.0))
        if isinstance(rt, bool) or not isinstance(rt, (int, float)) or rt < 0 or rt != rt:
            raise SpecError(f"{p}.runtimeInSeconds", f"must be a number >= 0, got {rt!r}")
        cores: Any = default_cores
        for key in ("coresCount", "coreCount", "cores"):  # 1.4/1.5 spellings, then 1.3
            if key in info:
                cores = info[key]
                break
        if cores is None:
            cores = default_cores
        if isinstance(cores, float) and cores.is_integer():
            cores = int(cores)
        if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
            raise SpecError(f"{p}.coresCount", f"must be a whole number >= 1, got {cores!r}")
        gpus = info.get("gpuCount", info.get("gpusCount", 0))
        if gpus is None:
            gpus = 0
        if isinstance(gpus, float) and gpus.is_integer():
            gpus = int(gpus)
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
            raise SpecError(f"{p}.gpuCount", f"must be a whole number >= 0, got {gpus!r}")
        dur = float(rt) * time_scale
        wf.add_set(tid, 1, kernel, (dur,), cores=cores, gpus=gpus, duration=dur, path=p)
        ids.append(tid)
    known = set(ids)
    edges: set[tuple[str, str]] = set()
    for i, t in enumerate(tasks):
        tid = ids[i]
        for field in ("parents", "children"):
            refs = t.get(field, [])
            if refs is None:
                refs = []
            if not isinstance(refs, list):
                raise SpecError(f"workflow.tasks[{i}].{field}", "must be a list")
            for r in refs:
                if not isinstance(r, str) or r not in known:
                    raise SpecError(f"workflow.tasks[{i}].{field}", f"unknown task {r!r}")
                edges.add((r, tid) if field == "parents" else (tid, r))
    for a, b in sorted(edges):
        if a == b:
            raise SpecError("workflow.tasks", f"task {a!r} depends on itself")
        wf.set_deps.append((wf.by_name[a].sid, wf.by_name[b].sid, 0))
    wf.validate(check_kernels=False)
    return wf


def instance_info(doc: Any) -> dict[str, Any]:
    """What a WfFormat instance recorded about its own execution.

    Returns:
        ``schema`` (version string), ``name``, ``recorded_makespan`` (seconds, or
        ``None``), ``machines`` (count) and ``machine_cores`` (sum of their
        ``cpu.coreCount``/``cpu.count``, or ``None``).
    """
    out: dict[str, Any] = {"schema": None, "name": None, "recorded_makespan": None,
                           "machines": 0, "machine_cores": None}
    if not isinstance(doc, Mapping) or not isinstance(doc.get("workflow"), Mapping):
        return out
    wf = doc["workflow"]
    out["schema"] = doc.get("schemaVersion")
    out["name"] = doc.get("name")
    execu = wf.get("execution") if isinstance(wf.get("execution"), Mapping) else wf
    ms = execu.get("makespanInSeconds", wf.get("makespanInSeconds", wf.get("makespan")))
    if isinstance(ms, (int, float)) and not isinstance(ms, bool):
        out["recorded_makespan"] = float(ms)
    machines = execu.get("machines", wf.get("machines"))
    if isinstance(machines, list):
        out["machines"] = len(machines)
        total = 0
        for m in machines:
            cpu = m.get("cpu") if isinstance(m, Mapping) else None
            c = cpu.get("coreCount", cpu.get("count")) if isinstance(cpu, Mapping) else None
            if isinstance(c, int) and not isinstance(c, bool) and c > 0:
                total += c
        out["machine_cores"] = total or None
    return out

"""Heterogeneous runs under MPI: multi-rank tasks, virtual GPUs, executables, doctor."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import pytest
from mpi4py import MPI

from mpiwf import Config, Workflow
from mpiwf.binding import Layout
from mpiwf.commands import doctor
from mpiwf.context import context
from mpiwf.errors import SpecError
from mpiwf.kernels import register
from mpiwf.master import TaskEvent
from mpiwf.runner import run
from mpiwf.trace import load

CFG = Config(progress_interval=0, validate=True)


@register("test_allreduce")
def allreduce_kernel(hold: float = 0.0) -> dict[str, Any]:
    """Sum (sub-communicator rank + 1) over the task's ranks; hold the gang a while."""
    ctx = context()
    assert ctx is not None and ctx.comm is not None, "a multi-rank task gets a communicator"
    sub = ctx.comm
    total = sub.allreduce(sub.Get_rank() + 1, op=MPI.SUM)
    world = sub.allgather(MPI.COMM_WORLD.Get_rank())
    if hold:
        time.sleep(hold)
    sub.Barrier()
    return {"sum": total, "size": sub.Get_size(), "world": world, "me": ctx.rank}


@register("test_member_fails")
def member_fails() -> str:
    """Fail on every member of the gang but its leader (no collective after that)."""
    ctx = context()
    assert ctx is not None and ctx.comm is not None
    if ctx.comm.Get_rank() != 0:
        raise RuntimeError(f"member {ctx.comm.Get_rank()} failed")
    return "leader ok"


@register("test_binding")
def report_binding() -> dict[str, Any]:
    """What the worker process is bound to while it runs a task."""
    return {"affinity": sorted(os.sched_getaffinity(0)),
            "omp": os.environ.get("OMP_NUM_THREADS"), "rank": MPI.COMM_WORLD.Get_rank()}


def _collect(events: list[TaskEvent]) -> Any:
    def cb(ev: TaskEvent) -> None:
        events.append(ev)
    return cb


def test_multirank_tasks_get_a_subcommunicator_while_others_run(comm: MPI.Comm,
                                                                shared_dir: str) -> None:
    size = comm.Get_size()
    nworkers = max(1, size - 1)
    r = min(3, nworkers - 1)  # leave one worker for the side tasks
    wf = Workflow("mpi")
    if r < 2:
        # a 2-rank task cannot be placed on fewer than 3 workers with a spare one:
        # a request larger than the machine is rejected on every rank before it runs
        wf.add_set("big", 1, "test_allreduce", ranks=nworkers + 1)
        with pytest.raises(SpecError, match="big"):
            run(wf, CFG, trace_path=None, comm=comm)
        return
    wf.add_set("mpi", 2, "test_allreduce", (0.3,), ranks=r, duration=0.3)
    wf.add_set("side", 12, "sleep", (0.05,), duration=0.05)
    wf.add_set("all", 1, "test_allreduce", ranks=nworkers, after=["mpi", "side"])
    events: list[TaskEvent] = []
    path = os.path.join(shared_dir, "mpi.h5")
    s = run(wf, CFG, trace_path=path, comm=comm, callbacks=[_collect(events)])
    if comm.Get_rank() != 0:
        return
    assert s is not None and s.ok, s
    mpi_ev = [e for e in events if e.set in ("mpi", "all")]
    assert len(mpi_ev) == 3  # one report per task: the gang's other ranks stay silent
    for e in mpi_ev:
        n = r if e.set == "mpi" else nworkers
        assert e.value["size"] == n
        assert e.value["sum"] == n * (n + 1) // 2
        assert len(set(e.value["world"])) == n and 0 not in e.value["world"]
        assert e.value["me"] == e.value["world"][0]  # the leader reports
    t = load(path).tasks
    assert sorted(t["task"].tolist()) == list(range(15))  # no duplicate rows
    sets = t["set"].tolist()
    rows = {int(x["task"]): x for x in t}
    for tid in (0, 1):
        assert rows[tid]["nworkers"] == r
    # side tasks ran on the spare worker while a multi-rank task held the others
    overlap = 0
    for tid in range(2, 14):
        s_, e_ = rows[tid]["started"], rows[tid]["ended"]
        if any(s_ < rows[m]["ended"] and rows[m]["started"] < e_ for m in (0, 1)):
            overlap += 1
    assert overlap >= 1, t
    assert sets.count(0) == 2


def test_a_failing_gang_member_fails_the_task(comm: MPI.Comm, shared_dir: str) -> None:
    if comm.Get_size() < 3:
        return  # no multi-rank task fits (the rejection is tested above)
    wf = Workflow("member")
    wf.add_set("m", 3, "test_member_fails", ranks=2, retries=1)
    wf.add_set("after", 1, "noop", after=["m"])
    path = os.path.join(shared_dir, "member.h5")
    s = run(wf, CFG, trace_path=path, comm=comm)
    if comm.Get_rank() != 0:
        return
    assert s is not None and s.failed == 3 and s.skipped == 1 and s.done == 0
    tr = load(path)
    assert len(tr.tasks) == 6  # two attempts of each, one row per attempt
    assert len(tr.errors) == 6
    assert all(e["message"].startswith("member 1 failed") for e in tr.errors)


def test_virtual_gpus_are_placed_marked_and_refused(comm: MPI.Comm, shared_dir: str) -> None:
    wf = Workflow("vgpu")
    wf.add_set("gpu", 3, "echo", gpus=1)
    wf.add_set("real", 1, "gpu_matmul", (64, 1), gpus=1)
    wf.add_set("cpu", 3, "cpu_matmul", (32,))
    path = os.path.join(shared_dir, "vgpu.h5")
    s = run(wf, CFG, trace_path=path, comm=comm, bind=Layout(gpus_per_node=1,
                                                             virtual_gpus=True))
    if comm.Get_rank() != 0:
        return
    assert s is not None and s.done == 6 and s.failed == 1
    tr = load(path)
    lay = tr.attrs["binding"]
    lay = json.loads(lay) if isinstance(lay, str) else lay
    assert lay["virtual_gpus"] is True and lay["gpus_per_node"] == 1
    workers = tr.workers
    gpu_workers = [w for w in workers if w["gpus"]]
    assert len(gpu_workers) == 1 and gpu_workers[0]["virtual_gpu"]
    assert all(not w["virtual_gpu"] for w in workers if not w["gpus"])
    t = tr.tasks
    gpu_rank = gpu_workers[0]["rank"]
    for x in t:
        if x["set"] in (0, 1):
            assert x["worker"] == gpu_rank
    (err,) = [e for e in tr.errors]
    assert err["type"] == "GPUUnavailable" and "virtual" in err["message"]


def test_executables_write_output_and_map_exit_status(comm: MPI.Comm, shared_dir: str) -> None:
    wf = Workflow("exec")
    code = ("import os,sys; print(os.environ['MPIWF_TASK_NAME'], "
            "os.environ['OMP_NUM_THREADS'], len(os.sched_getaffinity(0)))")
    wf.add_set("ok", 2, "exec", (sys.executable, "-c", code))
    wf.add_set("bad", 1, "exec", (sys.executable, "-c", "import sys; sys.exit('boom')"))
    rundir = os.path.join(shared_dir, "run")
    s = run(wf, CFG.replace(rundir=rundir), trace_path=os.path.join(shared_dir, "e.h5"),
            comm=comm)
    if comm.Get_rank() != 0:
        return
    assert s is not None and s.done == 2 and s.failed == 1
    tr = load(os.path.join(shared_dir, "e.h5"))
    workers = {int(w["rank"]): w for w in tr.workers}
    ran_on = {int(x["index"]): int(x["worker"]) for x in tr.tasks if x["set"] == 0}
    for i in range(2):
        with open(os.path.join(rundir, "tasks", "ok", str(i), "stdout")) as f:
            name, omp, ncores = f.read().split()
        assert name == f"ok[{i}]"
        w = workers[ran_on[i]]
        assert int(omp) == w["cores"]  # the binding reached the child
        if w["core_ids"]:  # pinned: the child inherits exactly the worker's cores
            assert int(ncores) == w["cores"]
    with open(os.path.join(rundir, "tasks", "bad", "0", "stderr")) as f:
        assert "boom" in f.read()
    (err,) = tr.errors
    assert "exited with status 1" in err["message"] and "boom" in err["message"]


def test_doctor_reports_every_rank(comm: MPI.Comm) -> None:
    before = (sorted(os.sched_getaffinity(0)), os.environ.get("OMP_NUM_THREADS"))
    rep = doctor.gather(comm, Layout())
    # a report binds nothing for good: the next run discovers the machine as it was
    assert (sorted(os.sched_getaffinity(0)), os.environ.get("OMP_NUM_THREADS")) == before
    if comm.Get_rank() != 0:
        assert rep is None
        return
    assert rep is not None
    rows = [row for section in doctor.SECTIONS for row in section(rep)]
    ranks = [r for r in rows if r[0] == "ranks"]
    assert [r[1] for r in ranks] == [f"rank {i}" for i in range(comm.Get_size())]
    if comm.Get_size() > 1:
        assert ranks[0][2].startswith("master") and all(r[2].startswith("worker")
                                                        for r in ranks[1:])
    assert any(r[:2] == ("mpi", "ranks") and r[2] == str(comm.Get_size()) for r in rows)
    text = doctor.render(rows)
    assert len(text.splitlines()) == len(rows) + 2


def test_split_binding_is_applied_in_workers_and_released(comm: MPI.Comm,
                                                          shared_dir: str) -> None:
    before = sorted(os.sched_getaffinity(0))
    nw = max(1, comm.Get_size() - 1)
    wf = Workflow("bind")
    wf.add_set("b", 4 * nw, "test_binding")
    events: list[TaskEvent] = []
    path = os.path.join(shared_dir, "bind.h5")
    s = run(wf, CFG, trace_path=path, comm=comm, bind=Layout("split"),
            callbacks=[_collect(events)])
    assert sorted(os.sched_getaffinity(0)) == before  # released when the run ended
    if comm.Get_rank() != 0:
        return
    assert s is not None and s.ok
    workers = {int(w["rank"]): w for w in load(path).workers}
    seen = set()
    for e in events:
        w = workers[e.value["rank"]]
        ids = [int(c) for c in str(w["core_ids"]).split(",") if c]  # "0,1" in the trace
        assert ids and e.value["affinity"] == sorted(ids), (e.value, w["core_ids"])
        assert e.value["omp"] == str(w["cores"]) == str(len(ids))
        seen.add(e.value["rank"])
    assert len(seen) >= 1

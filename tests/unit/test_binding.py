"""Binding plans, layouts with virtual GPUs, placement policy, GPU/CPU kernels, exec."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from mpiwf import Scheduler, Workflow
from mpiwf.binding import (
    Layout,
    apply,
    binding_env,
    bound,
    load_layout,
    machine,
    plan,
    release,
    visible_gpus,
    warnings_for,
)
from mpiwf.context import TaskContext, set_context
from mpiwf.errors import SpecError
from mpiwf.executables import ExecError, run_executable
from mpiwf.gpu_kernels import (
    GPUUnavailable,
    cpu_matmul,
    cpu_md_step,
    cpu_stencil,
    cpu_train_step,
    gpu_matmul,
    gpu_train_step,
)
from mpiwf.resources import WorkerSpec, capacity
from mpiwf.simulate import simulate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def infos(hosts: list[tuple[str, int]], cpus: int, gpus: tuple[int, ...] = (),
          affinity: list[tuple[int, ...]] | None = None) -> list[dict[str, Any]]:
    """Discovery reports: rank 0 (master) on the first host, then the workers."""
    out: list[dict[str, Any]] = []
    rank = 0
    for h, n in hosts:
        for _ in range(n):
            aff = affinity[rank] if affinity else tuple(range(cpus))
            out.append({"rank": rank, "host": h, "affinity": aff, "gpu_ids": gpus,
                        "ncpus": cpus, "gpu_source": "none"})
            rank += 1
    return out


# ------------------------------------------------------------------ plans
def test_split_gives_disjoint_contiguous_core_blocks_and_one_gpu_per_worker() -> None:
    ws = plan(infos([("a", 4), ("b", 4)], 8, gpus=(0, 1)), Layout("split"))
    assert [w.rank for w in ws] == [1, 2, 3, 4, 5, 6, 7]
    a = [w for w in ws if w.host == "a"]
    b = [w for w in ws if w.host == "b"]
    assert [w.core_ids for w in a] == [(0, 1, 2), (3, 4, 5), (6, 7)]
    assert [w.core_ids for w in b] == [(0, 1), (2, 3), (4, 5), (6, 7)]
    assert {w.node for w in a} == {0} and {w.node for w in b} == {1}
    for group in (a, b):
        assert [w.gpu_ids for w in group[:2]] == [(0,), (1,)]
        assert all(not w.gpus for w in group[2:])
        assert not any(w.virtual_gpu for w in group)
    assert not warnings_for(ws)


def test_more_workers_than_cores_share_cores_and_are_warned() -> None:
    ws = plan(infos([("a", 4)], 2), Layout("split"))
    assert [w.core_ids for w in ws] == [(0,), (1,), (0,)]
    (msg,) = warnings_for(ws)
    assert "ranks 1, 3" in msg and "same core 0" in msg


def test_auto_keeps_a_launcher_binding_and_splits_an_unbound_node() -> None:
    aff = [tuple(range(8)), (0, 1), (2, 3), (4, 5)]
    ws = plan(infos([("a", 4)], 8, affinity=aff), Layout("auto"))
    assert [w.core_ids for w in ws] == [(0, 1), (2, 3), (4, 5)]
    ws = plan(infos([("a", 4)], 8), Layout("auto"))  # every rank may use every core
    assert [w.cores for w in ws] == [3, 3, 2]
    ws = plan(infos([("a", 4)], 2), Layout("auto"))  # oversubscribed: let the OS balance
    assert [(w.cores, w.core_ids) for w in ws] == [(1, ())] * 3
    ws = plan(infos([("a", 4)], 8), Layout("none"))
    assert [(w.cores, w.core_ids, w.gpu_ids) for w in ws] == [(1, (), ())] * 3


def test_one_rank_run_makes_rank_0_the_worker() -> None:
    (w,) = plan(infos([("a", 1)], 4, gpus=(0,)))
    assert (w.rank, w.cores, w.gpu_ids, w.virtual_gpu) == (0, 4, (0,), False)


def test_virtual_gpus_are_marked_and_real_ones_must_exist() -> None:
    lay = Layout("split", gpus_per_node=2, virtual_gpus=True)
    ws = plan(infos([("a", 4)], 2), lay)
    assert [(w.gpu_ids, w.virtual_gpu) for w in ws] == [((0,), True), ((1,), True), ((), False)]
    assert any("virtual" in m for m in warnings_for(ws))
    with pytest.raises(SpecError, match="has 0 GPU.*declares 2.*virtual"):
        plan(infos([("a", 4)], 2), Layout(gpus_per_node=2))
    # real GPUs: four ranks sharing one are warned about
    ws = plan(infos([("a", 5)], 16, gpus=(0,)),
              Layout("split", workers=tuple({"rank": r, "gpus": 1} for r in (1, 2, 3, 4))))
    assert all(w.gpu_ids == (0,) and not w.virtual_gpu for w in ws)
    assert any("4 GPU workers share 1 GPU" in m for m in warnings_for(ws))


def test_declared_cores_and_virtual_nodes() -> None:
    lay = Layout("split", cores_per_node=6, workers_per_node=2, gpus_per_node=1,
                 virtual_gpus=True)
    ws = plan(infos([("a", 5)], 2), lay)
    assert [w.node for w in ws] == [0, 0, 1, 1]
    assert [w.cores for w in ws] == [3, 3, 3, 3]
    assert all(w.core_ids == () for w in ws)  # more cores than the host has: not pinned
    assert capacity(ws) == [(2, 6, 1), (2, 6, 1)]


def test_explicit_worker_rows_and_their_errors() -> None:
    lay = Layout(virtual_gpus=True, workers=({"rank": 2, "node": 5, "cores": 4, "gpus": 2},))
    ws = plan(infos([("a", 3)], 2), lay)
    w2 = ws[1]
    assert (w2.node, w2.cores, w2.gpus, w2.virtual_gpu) == (5, 4, 2, True)
    with pytest.raises(SpecError, match="rank 7 is not a worker"):
        plan(infos([("a", 3)], 2), Layout(workers=({"rank": 7},)))
    with pytest.raises(SpecError, match="node has 0 GPU.*declare them virtual"):
        plan(infos([("a", 3)], 2), Layout(workers=({"rank": 1, "gpus": 1},)))


def test_layout_files_and_their_errors(tmp_path: Any) -> None:
    p = tmp_path / "lay.yaml"
    p.write_text("strategy: split\ngpus_per_node: 6\ncores_per_node: 42\nvirtual_gpus: true\n")
    lay = load_layout(str(p))
    assert (lay.strategy, lay.gpus_per_node, lay.cores_per_node, lay.virtual_gpus) == \
        ("split", 6, 42, True)
    j = tmp_path / "lay.json"
    j.write_text(json.dumps({"workers": [{"rank": 1, "gpus": 1}], "virtual_gpus": True}))
    assert load_layout(str(j)).workers == ({"rank": 1, "gpus": 1},)
    for text, problem in [("gpus_per_nod: 2\n", "unknown layout field"),
                          ("strategy: packed\n", "unknown binding strategy"),
                          ("cores_per_node: -1\n", "cores_per_node"),
                          ("virtual_gpus: 2\n", "true or false"),
                          ("workers: [{rank: 1, mem: 2}]\n", "unknown field"),
                          ("[1, 2]\n", "mapping")]:
        p.write_text(text)
        with pytest.raises(SpecError, match=problem):
            load_layout(str(p))
    with pytest.raises(SpecError, match="no such layout file"):
        load_layout(str(tmp_path / "missing.yaml"))
    for empty in ("", "# only a comment\n"):  # a slip, not "no layout"
        p.write_text(empty)
        with pytest.raises(SpecError, match="empty layout file"):
            load_layout(str(p))
    p.write_text("{}\n")  # an empty mapping: every field its default
    assert load_layout(str(p)).strategy == load_layout(str(j)).strategy
    # read as simulate --layout reads one: one SpecError, never a decode error
    for raw, problem in [(b"\x89HDF\r\n\x1a\n\xff", "not UTF-8 text"),
                         (b"strategy: [\n", "YAML syntax error at line 2")]:
        p.write_bytes(raw)
        with pytest.raises(SpecError, match=problem):
            load_layout(str(p))
    j.write_text("[" * 100000)
    with pytest.raises(SpecError, match="JSON nesting too deep"):
        load_layout(str(j))
    with pytest.raises(SpecError, match="is a directory, not a layout file"):
        load_layout(str(tmp_path))


def test_bad_layout_flags_exit_2_with_one_line(tmp_path: Any) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("sets:\n  - {name: a, kernel: noop}\n")
    binary = tmp_path / "trace.h5"  # a file that is not UTF-8 text
    binary.write_bytes(b"\x89HDF\r\n\x1a\n\x00\xff")
    run = ["run", str(spec), "--trace", ""]
    for cmd, extra in ((run, ["--layout", str(tmp_path / "none.yaml")]),
                       (run, ["--cores-per-node", "0"]), (run, ["--layout", str(binary)]),
                       (["doctor"], ["--layout", str(binary)])):
        r = subprocess.run([sys.executable, "-m", "mpiwf", *cmd, *extra], capture_output=True,
                           text=True, cwd=ROOT, timeout=60)
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
        if binary.name in extra[-1]:
            assert r.stderr.startswith(f"mpiwf {cmd[0]}: error: {binary}: not UTF-8 text")


def test_visible_gpus_from_the_environment() -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ((2, 3), "CUDA_VISIBLE_DEVICES")
    assert visible_gpus({"ROCR_VISIBLE_DEVICES": "1"}) == ((1,), "ROCR_VISIBLE_DEVICES")
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == ((), "CUDA_VISIBLE_DEVICES")
    ids, _src = visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-aaaa,GPU-bbbb"})
    assert ids == (0, 1)
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == ((), "CUDA_VISIBLE_DEVICES")
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0,2,-1,3"})[0] == (0, 2)
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "NoDevFiles"})[0] == ()
    assert visible_gpus({}, probe=False) == ((), "none")


def test_apply_binds_every_thread_and_the_blas_pool() -> None:
    """sched_setaffinity(0) moves the calling thread only: threads started before the
    binding (NumPy's BLAS pool starts at import) kept the whole node, so a one-core
    worker's matmul ran on its neighbours' cores. apply() moves them all and sizes an
    OpenBLAS already loaded to the worker's cores; release() puts both back."""
    import threading

    from mpiwf import binding

    release()
    cores = binding.affinity()
    assert len(cores) >= 2, "needs two cores to show a move"
    stop = threading.Event()
    th = threading.Thread(target=stop.wait)
    th.start()
    try:
        tid = th.native_id
        assert tid is not None and os.sched_getaffinity(tid) == set(cores)
        blas = binding._set_blas_threads(len(cores))  # a known start (a no-op here)
        done = apply(WorkerSpec(1, cores=1, core_ids=(cores[-1],)), {})
        assert os.sched_getaffinity(tid) == {cores[-1]} == os.sched_getaffinity(0)
        assert done["threads_pinned"] >= 1
        np.ones((64, 64)) @ np.ones((64, 64))  # the pool, if any, runs inside the core
        if done.get("blas_threads"):  # NumPy's wheels bundle OpenBLAS
            assert done["blas_threads"] == 1 and binding._set_blas_threads(1) == []
        release()
        assert os.sched_getaffinity(tid) == set(cores) == os.sched_getaffinity(0)
        assert binding._set_blas_threads(len(cores)) == []  # its count was restored
        assert blas == []
    finally:
        release()
        stop.set()
        th.join()


def test_release_after_two_applies_frees_a_thread_started_between() -> None:
    """A thread started after a first apply() inherits its cores; a second apply()
    moves it on. release() gives it the process's own cores back, not the first
    binding's (which it never had before apply)."""
    import threading

    from mpiwf import binding

    release()
    cores = binding.affinity()
    assert len(cores) >= 2, "needs two cores to show a move"
    stop = threading.Event()
    th = None
    try:
        apply(WorkerSpec(1, cores=1, core_ids=(cores[0],)), {})
        th = threading.Thread(target=stop.wait)
        th.start()
        apply(WorkerSpec(1, cores=1, core_ids=(cores[-1],)), {})
        assert th.native_id is not None
        assert os.sched_getaffinity(th.native_id) == {cores[-1]}
        release()
        assert os.sched_getaffinity(th.native_id) == set(cores) == os.sched_getaffinity(0)
    finally:
        release()
        stop.set()
        if th is not None:
            th.join()


@pytest.mark.parametrize("env", [{"OPENBLAS_NUM_THREADS": "2"}, {"OMP_NUM_THREADS": "2"}])
def test_a_blas_thread_count_the_user_set_stays(env: dict[str, str]) -> None:
    """OpenBLAS read the user's count at load (the DeepDriveMD app sets 1): apply()
    leaves it, where it sizes a pool the library chose itself."""
    from mpiwf import binding

    release()
    cores = binding.affinity()
    assert len(cores) >= 2, "needs two cores to show a change"
    binding._set_blas_threads(len(cores))
    try:
        done = apply(WorkerSpec(1, cores=1, core_ids=(cores[0],)), dict(env))
        assert "blas_threads" not in done
        assert done["blas_threads_set_by"] == next(iter(env))
        assert binding._set_blas_threads(len(cores)) == []  # untouched
        release()
        done = apply(WorkerSpec(1, cores=1, core_ids=(cores[0],)), {})
        assert done.get("blas_threads", 1) == 1  # sized where the user set nothing
    finally:
        release()


def test_apply_sets_threads_and_visible_gpus() -> None:
    release()
    env: dict[str, str] = {}
    first = env
    done = apply(WorkerSpec(3, cores=4, gpus=1, gpu_ids=(2,)), env, set_affinity=False)
    assert env == {"OMP_NUM_THREADS": "4", "CUDA_VISIBLE_DEVICES": "2"}
    assert done["CUDA_VISIBLE_DEVICES"] == "2"
    env = {"ROCR_VISIBLE_DEVICES": "0,1"}
    apply(WorkerSpec(3, cores=2, gpus=1, gpu_ids=(1,)), env, set_affinity=False)
    assert env["ROCR_VISIBLE_DEVICES"] == "1" and "CUDA_VISIBLE_DEVICES" not in env
    env = {"CUDA_VISIBLE_DEVICES": "GPU-aa,GPU-bb"}  # UUIDs: the ids are positions
    apply(WorkerSpec(3, cores=2, gpus=1, gpu_ids=(1,)), env, set_affinity=False)
    assert env["CUDA_VISIBLE_DEVICES"] == "GPU-bb"
    env = {}
    apply(WorkerSpec(3, cores=1, gpus=1, gpu_ids=(0,), virtual_gpu=True), env,
          set_affinity=False)
    assert env == {"OMP_NUM_THREADS": "1"}  # a virtual GPU is never made visible
    assert binding_env()["MPIWF_VIRTUAL_GPU"] == "1"
    release()  # back to what the first apply found (an empty environment)
    assert first == {} and bound() is None and binding_env() == {}


# ------------------------------------------------------------------ placement policy
def test_summit_machine_from_a_layout_reproduces_the_paper() -> None:
    ws = machine(16, 168, 6)  # 168 hardware threads and 6 GPUs per node, as in the paper
    assert capacity(ws) == [(174, 168, 6)] * 16
    assert all(w.virtual_gpu == bool(w.gpus) for w in ws)
    from tests.unit.test_scheduler import paper_dg2

    seq = simulate(paper_dg2(), ws, "sequential")
    asy = simulate(paper_dg2(), ws, "async", validate=True)
    assert seq.makespan == pytest.approx(385 + 154 + 769 + 462)
    assert asy.makespan == pytest.approx(385 + 154 + 769)


def test_gpu_tasks_get_gpu_workers_on_one_node_on_summit() -> None:
    ws = machine(16, 42, 6)
    wf = Workflow("mix")
    wf.add_set("train", 40, "sleep", (10,), cores=4, gpus=1)
    wf.add_set("sim", 300, "sleep", (5,), cores=2)
    wf.add_set("mpi", 4, "sleep", (3,), ranks=60, cores=60)
    res = simulate(wf, ws, validate=True)
    rows = res.rows
    assert len(rows) == 344
    s = Scheduler(wf, ws, validate=True)
    s.start()
    decided = s.schedule()
    for tid, gang in decided:
        ts = wf.set_of(tid)
        assert sum(ws[w].gpus for w in gang) >= ts.gpus
        assert sum(ws[w].cores for w in gang) >= ts.cores
        nodes = {ws[w].node for w in gang}
        assert len(nodes) == 1 or ts.ranks > 1  # only multi-rank tasks span nodes
    # a 60-rank task fits no 42-core node: it spans nodes, on CPU-only workers
    wf2 = Workflow("mpi")
    wf2.add_set("mpi", 4, "sleep", (3,), ranks=60, cores=60)
    s2 = Scheduler(wf2, ws, validate=True)
    s2.start()
    decided = s2.schedule()
    assert len(decided) == 4
    for _tid, gang in decided:
        assert len(gang) == 60 and len({ws[w].node for w in gang}) >= 2
        assert not any(ws[w].gpus for w in gang)


def test_cpu_work_prefers_cpu_only_workers() -> None:
    # one node: 8 workers with one core each; the first two also own a GPU
    ws = plan(infos([("a", 9)], 8, gpus=(0, 1)), Layout("split"))
    assert [w.gpus for w in ws] == [1, 1, 0, 0, 0, 0, 0, 0]
    wf = Workflow("pref")
    wf.add_set("cpu", 6, "sleep", (1,))
    wf.add_set("gpu", 2, "sleep", (1,), gpus=1, stage=0)
    s = Scheduler(wf, ws, validate=True)
    s.start()
    placed: dict[str, list[tuple[int, ...]]] = {}
    for tid, gang in s.schedule():
        placed.setdefault(wf.set_of(tid).name, []).append(gang)
    assert all(ws[g[0]].gpus == 0 for g in placed["cpu"])  # GPU workers left free
    assert sorted(ws[g[0]].gpus for g in placed["gpu"]) == [1, 1]
    # with more CPU tasks than CPU-only workers, the GPU workers' cores are used too
    wf2 = Workflow("spill")
    wf2.add_set("cpu", 8, "sleep", (1,))
    s2 = Scheduler(wf2, ws, validate=True)
    s2.start()
    assert len(s2.schedule()) == 8


def test_small_tasks_backfill_around_a_waiting_big_one() -> None:
    ws = plan(infos([("a", 5)], 4), Layout("split"))  # 4 one-core workers
    wf = Workflow("bf")
    wf.add_set("long", 1, "sleep", (100,))  # first by critical path: it holds one worker
    wf.add_set("big", 1, "sleep", (50,), cores=4)
    wf.add_set("small", 9, "sleep", (1,))
    res = simulate(wf, ws, validate=True)
    r = {int(x["task"]): x for x in res.rows}
    big = r[1]
    assert big["started"] >= r[0]["ended"]  # needs the whole node
    small_before = [t for t in range(2, 11) if r[t]["ended"] <= big["started"]]
    assert len(small_before) == 9  # they ran on the free workers meanwhile
    assert res.makespan == pytest.approx(150)


# ------------------------------------------------------------------ kernels
def test_cpu_kernels_compute_what_they_claim() -> None:
    m = cpu_matmul(64, 2, "float64", seed=3)
    rng = np.random.default_rng(3)
    a = rng.standard_normal((64, 64), dtype=np.float32).astype("float64")
    b = rng.standard_normal((64, 64), dtype=np.float32).astype("float64")
    assert m["checksum"] == pytest.approx(float((a @ b).mean()))
    s1, s2 = cpu_stencil(32, 10), cpu_stencil(32, 200)
    assert 0 < s1["checksum"] < s2["checksum"] < 1  # heat spreads from the hot edge
    md0 = cpu_md_step(64, 1, 1e-4)
    md1 = cpu_md_step(64, 20, 1e-4)
    e0, e1 = md0["kinetic"] + md0["potential"], md1["kinetic"] + md1["potential"]
    assert abs(e1 - e0) < 1e-2 * abs(e0)  # velocity Verlet conserves energy
    t = cpu_train_step(64, 32, 64, steps=50, lr=0.05)
    assert t["loss_last"] < t["loss_first"]


def test_gpu_kernels_refuse_virtual_gpus_and_cpu_workers() -> None:
    set_context(TaskContext(0, "g[0]", "g", 0, rank=3, gpus=(0,), virtual_gpu=True))
    try:
        with pytest.raises(GPUUnavailable, match="rank 3.*virtual"):
            gpu_matmul(16, 1)
        set_context(TaskContext(0, "g[0]", "g", 0, rank=2))
        with pytest.raises(GPUUnavailable, match="holds no GPU"):
            gpu_train_step()
    finally:
        set_context(None)


def test_exec_kernel_output_files_and_status(tmp_path: Any) -> None:
    set_context(TaskContext(5, "x[1]", "x", 1, rundir=str(tmp_path)))
    try:
        res = run_executable(sys.executable, "-c",
                             "import os; print(os.environ['MPIWF_TASK'], os.getcwd())",
                             env={"EXTRA": 1})
        taskdir = os.path.join(str(tmp_path), "tasks", "x", "1")
        assert res["stdout"] == os.path.join(taskdir, "stdout")
        with open(res["stdout"]) as f:
            assert f.read().split() == ["5", taskdir]
        with pytest.raises(ExecError, match="status 3: bad thing"):
            run_executable(sys.executable, "-c",
                           "import sys; sys.stderr.write('bad thing\\n'); sys.exit(3)")
        with pytest.raises(ExecError, match="no such program"):
            run_executable("/nonexistent/prog")
        with pytest.raises(ExecError, match="killed after"):
            run_executable(sys.executable, "-c", "import time; time.sleep(5)", timeout=0.2)
    finally:
        set_context(None)

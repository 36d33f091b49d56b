"""The pure scheduler, driven by the simulator with every invariant checked."""

from __future__ import annotations

import os

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from mpiwf import Scheduler, Workflow, load, uniform_workers
from mpiwf.errors import RunError
from mpiwf.scheduler import DONE, READY, SKIPPED, TransitionError
from mpiwf.simulate import simulate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def paper_dg2() -> Workflow:
    """DG2 of paper-reference.md, from the one spec in apps/paper."""
    return load(os.path.join(ROOT, "apps", "paper", "dg2.yaml"))


def test_paper_dg2_on_16_summit_nodes_matches_model() -> None:
    workers = uniform_workers(16, 168, 1, 6, gpu_workers_own_cores=False)
    seq = simulate(paper_dg2(), workers, "sequential", validate=False)
    asy = simulate(paper_dg2(), workers, "async", validate=True)
    assert seq.makespan == pytest.approx(385 + 154 + 769 + 462)
    assert asy.makespan == pytest.approx(385 + 154 + 769)
    assert 1 - asy.makespan / seq.makespan == pytest.approx(0.261, abs=0.001)


def test_transition_table_is_enforced() -> None:
    wf = Workflow()
    wf.add_set("a", 2)
    s = Scheduler(wf, uniform_workers(1, 1), validate=True)
    s.start()
    with pytest.raises(TransitionError, match="illegal transition ready -> done"):
        s.task_done(0)
    (tid, gang), = s.schedule()
    s.task_done(tid)
    with pytest.raises(TransitionError):
        s.task_done(tid)


def test_retries_then_skip_dependents() -> None:
    wf = Workflow()
    wf.add_set("a", 1, retries=1)
    wf.add_set("b", 2, after=["a"])
    wf.add_set("c", 1)
    s = Scheduler(wf, uniform_workers(1, 2), validate=True)
    s.start()
    d = dict(s.schedule())
    assert set(d) == {0, 3}
    assert s.task_failed(0) is True and s.state[0] == READY and s.attempts[0] == 1
    assert [t for t, _ in s.schedule()] == [0]
    assert s.task_failed(0) is False
    assert s.state[1] == s.state[2] == SKIPPED
    s.task_done(3)
    assert s.finished and (s.n_done, s.n_failed, s.n_skipped) == (1, 1, 2)


def test_critical_path_first_then_fifo() -> None:
    wf = Workflow()
    wf.add_set("short", 2, "sleep", (1.0,))
    wf.add_set("long", 2, "sleep", (5.0,))
    wf.add_set("tail", 1, "sleep", (1.0,), after=["short"])
    # priorities: short 2.0, long 5.0 -> long first
    s = Scheduler(wf, uniform_workers(1, 1), validate=True)
    s.start()
    order = []
    while not s.finished:
        for tid, _g in s.schedule():
            order.append(wf.set_of(tid).name)
            s.task_done(tid)
    assert order == ["long", "long", "short", "short", "tail"]


def test_gangs_cover_cores_and_gpus_on_one_node() -> None:
    wf = Workflow()
    wf.add_set("g", 2, cores=3, gpus=1)
    wf.add_set("c", 4, cores=2)
    workers = uniform_workers(2, 6, 1, 1)  # per node: 6 one-core workers, 1 with a GPU
    s = Scheduler(wf, workers, validate=True)
    s.start()
    decided = s.schedule()
    for tid, gang in decided:
        nodes = {workers[w].node for w in gang}
        assert len(nodes) == 1
        ts = wf.set_of(tid)
        assert sum(workers[w].cores for w in gang) >= ts.cores
        assert sum(workers[w].gpus for w in gang) >= ts.gpus
    used = [w for _t, g in decided for w in g]
    assert len(used) == len(set(used))
    assert {wf.set_of(t).name for t, _ in decided} == {"g", "c"}


def test_prefetch_window_and_round_robin() -> None:
    wf = Workflow()
    wf.add_set("null", 100)
    s = Scheduler(wf, uniform_workers(1, 3), prefetch=4, short_task=0.01, validate=True)
    s.start()
    d = s.schedule()
    assert len(d) == 15  # 3 workers x (1 + 4)
    per = {}
    for _t, (w,) in d:
        per[w] = per.get(w, 0) + 1
    assert sorted(per.values()) == [5, 5, 5]
    s.task_done(d[0][0])
    assert len(s.schedule()) == 1


def test_added_sets_are_scheduled_in_every_mode() -> None:
    for mode in ("async", "sequential", "doa=2"):
        wf = Workflow()
        wf.add_set("a", 3, "sleep", (1.0,))
        added = []

        def grow(tid: int, now: float, wf: Workflow = wf, added: list = added) -> None:
            if wf.set_of(tid).name == "a" and not added:
                added.append(wf.add_set("b", 2, "sleep", (1.0,), after=["a"]))

        r = simulate(wf, uniform_workers(1, 2), mode, on_done=grow, validate=True)
        assert r.tasks == 5, mode
        assert r.makespan == pytest.approx(3.0)


def test_stall_is_reported() -> None:
    wf = Workflow()
    wf.add_set("big", 1, cores=8)
    with pytest.raises(RunError, match="stalled"):
        simulate(wf, uniform_workers(1, 2), validate=True)


@st.composite
def random_workflows(draw: st.DrawFn) -> Workflow:
    nsets = draw(st.integers(1, 7))
    wf = Workflow("random")
    for i in range(nsets):
        n = draw(st.integers(1, 6))
        earlier = [s.name for s in wf.sets]
        after = draw(st.lists(st.sampled_from(earlier), max_size=3, unique=True)) \
            if earlier else []
        same = [s.name for s in wf.sets if s.n == n and s.name not in after]
        after_each = draw(st.lists(st.sampled_from(same), max_size=1)) if same else []
        wf.add_set(f"s{i}", n, "sleep", (float(draw(st.integers(1, 9))),),
                   cores=draw(st.integers(1, 3)), gpus=draw(st.integers(0, 1)),
                   after=after, after_each=after_each, retries=0)
    return wf


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wf=random_workflows(), mode=st.sampled_from(["async", "sequential", "doa=2"]),
       nodes=st.integers(1, 2), prefetch=st.integers(0, 2))
def test_random_dags_respect_dependencies_stages_and_resources(
        wf: Workflow, mode: str, nodes: int, prefetch: int) -> None:
    workers = uniform_workers(nodes, 4, 1, 2)
    r = simulate(wf, workers, mode, validate=True)
    rows = r.rows
    assert r.tasks == wf.ntasks and all(rows["status"] == DONE)
    start = dict(zip(rows["task"].tolist(), rows["started"].tolist()))
    end = dict(zip(rows["task"].tolist(), rows["ended"].tolist()))
    for a, b, kind in wf.set_deps:
        pa, pb = wf.sets[a], wf.sets[b]
        for i, tb in enumerate(pb.task_ids()):
            parents = pa.task_ids() if kind == 0 else [pa.offset + i]
            assert all(start[tb] >= end[t] - 1e-9 for t in parents)
    stages = wf.stages()
    if mode == "sequential":
        for sa in wf.sets:
            for sb in wf.sets:
                if stages[sb.sid] > stages[sa.sid]:
                    assert min(start[t] for t in sb.task_ids()) >= \
                        max(end[t] for t in sa.task_ids()) - 1e-9
    # async never loses to sequential by more than list-scheduling anomalies allow
    seq = simulate(wf, workers, "sequential").makespan
    assert r.makespan <= seq * 2 + 1e-9


def test_a_skipped_one_to_one_child_does_not_hold_back_its_siblings() -> None:
    wf = Workflow()
    wf.add_set("a", 2, "noop", duration=1.0)
    wf.add_set("b", 1, "noop", duration=1.0)
    wf.add_set("c", 2, "noop", duration=1.0, after=["b"], after_each=["a"])
    s = Scheduler(wf, uniform_workers(1, 3), validate=True)
    s.start()
    s.schedule()
    assert not s.task_failed(0)  # a[0] fails for good: c[0] is skipped
    s.task_done(1)
    s.task_done(2)  # b done: c[1] (its parent a[1] done) must run
    assert s.state[3] == SKIPPED
    assert [t for t, _g in s.schedule()] == [4]
    s.task_done(4)
    assert s.finished and s.n_done == 3 and s.n_failed == 1 and s.n_skipped == 1


def test_sets_added_after_a_failure_run_their_other_tasks() -> None:
    wf = Workflow()
    wf.add_set("a", 3, "noop", duration=1.0)
    s = Scheduler(wf, uniform_workers(1, 3), validate=True)
    s.start()
    s.schedule()
    s.task_failed(0)
    s.task_done(1)
    s.task_done(2)
    wf.add_set("c", 3, "noop", duration=1.0, after_each=["a"])  # c[0] after a failed task
    wf.add_set("d", 1, "noop", duration=1.0)
    wf.add_edge(0, 6)  # d[0] waits for the failed a[0] too
    s.tasks_added()
    assert s.state[3] == SKIPPED and s.state[6] == SKIPPED
    assert sorted(t for t, _g in s.schedule()) == [4, 5]


def test_a_set_no_remaining_worker_can_hold_is_unplaceable() -> None:
    from mpiwf.resources import WorkerSpec

    wf = Workflow()
    wf.add_set("a", 4, "noop", cores=2, duration=0.0)
    ws = [WorkerSpec(rank=1, node=0, host="h", cores=2, gpus=0),
          WorkerSpec(rank=2, node=0, host="h", cores=1, gpus=0),
          WorkerSpec(rank=3, node=0, host="h", cores=1, gpus=0)]
    s = Scheduler(wf, ws, prefetch=4, short_task=0.05, validate=True)
    s.start()
    assert {g for _t, g in s.schedule()} == {(0,)}
    assert s.worker_lost(0) == [0, 1, 2, 3]
    # two 1-core workers add up to 2 cores on the node, but no one of them has 2
    assert s.unplaceable() == [0]


@pytest.mark.parametrize("window", [0, 1, 2])
def test_resume_counts_recorded_tasks_of_held_stages_done_when_they_open(window: int) -> None:
    """A resume in ``sequential`` (window 1) or ``doa=K`` mode: tasks recorded done in
    stages the window still holds are counted done when their stage opens, never
    dispatched (they used to stay pending and run again)."""
    wf = Workflow()
    wf.add_set("a", 1)           # failed in the first run: runs again
    wf.add_set("b", 4)           # done in the first run
    wf.add_set("c", 2, after=["b"])  # b's children: c0 done, c1 not
    wf.add_set("d", 1)
    wf.set_stage_order([["a"], ["b"], ["c", "d"]])
    s = Scheduler(wf, uniform_workers(1, 2), window=window, validate=True)
    s.start()
    recorded = {1, 2, 3, 4, 5}
    marked = s.mark_done(recorded)
    assert marked == {0: 5, 1: 0, 2: 4}[window]  # the open stages' now, the rest later
    ran = []
    while not s.finished:
        batch = s.schedule()
        assert batch, "stalled"
        for tid, _ in batch:
            assert tid not in recorded, (window, tid)
            ran.append(tid)
            s.task_done(tid)
    assert sorted(ran) == [0, 6, 7]
    assert s.n_resumed == 5 and not s.resume_left and s.n_done == 8


def test_resume_counts_a_recorded_child_done_when_its_rerun_parent_ends() -> None:
    wf = Workflow()
    wf.add_set("a", 2)
    wf.add_set("b", 2, after_each=["a"])
    s = Scheduler(wf, uniform_workers(1, 2), validate=True)
    s.start()
    assert s.mark_done({1, 2, 3}) == 2  # a[1] and b[1] now; b[0] waits for a[0]
    assert s.resume_left == {2}
    (t, _), = s.schedule()
    assert t == 0
    s.task_done(0)  # a[0] ends: b[0], recorded done, is counted done, never dispatched
    assert s.finished and s.n_resumed == 3 and s.schedule() == []

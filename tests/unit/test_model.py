"""The asynchronicity model on small DAGs computed by hand, layouts, the paper's specs."""

from __future__ import annotations

import json
import os

import pytest

from mpiwf import Workflow, uniform_workers
from mpiwf.errors import SpecError
from mpiwf.layouts import LAYOUTS, get
from mpiwf.model import critical_path, model, structural_doa
from mpiwf.resources import capacity
from mpiwf.simulate import simulate
from mpiwf.spec import load

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAPER = os.path.join(ROOT, "apps", "paper")


def diamond() -> Workflow:
    wf = Workflow("diamond")
    wf.add_set("a", 4, "sleep", (2.0,))
    wf.add_set("b", 1, "sleep", (3.0,), after=["a"])
    wf.add_set("c", 1, "sleep", (1.0,), after=["a"])
    wf.add_set("d", 1, "sleep", (5.0,), after=["c"])
    return wf


def test_hand_computed_diamond_on_two_workers() -> None:
    # a: 4 tasks on 2 workers = 2 waves of 2 s -> d(a) = 4; levels a | b c | d
    m = model(diamond(), uniform_workers(1, 2))
    assert m.waves == {"a": 2, "b": 1, "c": 1, "d": 1}
    assert m.effective == {"a": 4.0, "b": 3.0, "c": 1.0, "d": 5.0}
    assert m.t_seq == m.t_seq_stages == 4 + 3 + 5
    assert m.t_async == m.t_async_path == 4 + 1 + 5
    assert m.improvement == pytest.approx(1 - 10 / 12)
    assert m.critical_path == ["a", "c", "d"]
    assert m.stages == [["a"], ["b", "c"], ["d"]]
    assert m.doa == 1 and m.doa_sets == ["d"]  # d waits for c only, not for b
    assert not m.contended and m.t_async_list == 10.0 and m.t_seq_list == 12.0


def test_without_machine_every_set_fits() -> None:
    m = model(diamond())
    assert m.t_seq == 2 + 3 + 5 and m.t_async == 2 + 1 + 5
    assert m.t_async_list is None


def test_contention_gives_the_list_scheduling_bound() -> None:
    wf = Workflow()
    wf.add_set("x", 2, "sleep", (1.0,))
    wf.add_set("y", 2, "sleep", (1.0,))
    m = model(wf, uniform_workers(1, 2))
    assert m.t_async_path == 1.0 and m.t_seq_stages == 1.0  # each set alone fits
    assert m.contended and m.t_async == 2.0 and m.t_seq == 2.0
    assert m.improvement == 0.0


def test_critical_path_and_doa_of_explicit_stages() -> None:
    wf = Workflow()
    wf.add_set("s1", 1, "sleep", (4.0,))
    wf.add_set("a1", 1, "sleep", (1.0,), after=["s1"])
    wf.add_set("s2", 1, "sleep", (4.0,), after=["s1"])
    wf.add_set("a2", 1, "sleep", (1.0,), after=["s2"])
    wf.set_stage_order([["s1"], ["a1"], ["s2"], ["a2"]])
    length, path = critical_path(wf, [4.0, 1.0, 4.0, 1.0])
    assert length == 9.0 and [wf.sets[s].name for s in path] == ["s1", "s2", "a2"]
    assert [wf.sets[s].name for s in structural_doa(wf)] == ["s2"]
    m = model(wf)
    assert m.t_seq == 10.0 and m.t_async == 9.0


def test_gpu_waves_follow_the_scheduler_placement() -> None:
    wf = Workflow()
    wf.add_set("g", 10, "sleep", (1.0,), cores=2, gpus=1)
    w = get("summit").workers(1)  # 42 cores, 6 GPUs: 6 at once
    assert model(wf, w).waves == {"g": 2}


def test_layouts() -> None:
    s42 = capacity(get("summit").workers(2))
    assert s42 == [(48, 42, 6), (48, 42, 6)]
    assert capacity(get("summit-smt4").workers(1)) == [(174, 168, 6)]
    for name in ("frontier", "perlmutter", "polaris"):
        lay = LAYOUTS[name]
        assert capacity(lay.workers(3)) == [(lay.cores + lay.gpus, lay.cores, lay.gpus)] * 3
    with pytest.raises(SpecError, match="unknown layout 'nope'"):
        get("nope")


def test_layout_file(tmp_path: str) -> None:
    p = os.path.join(str(tmp_path), "mine.json")
    with open(p, "w") as fh:
        json.dump({"name": "mine", "cores": 8, "gpus": 2, "nodes": 3, "cores_per_worker": 4},
                  fh)
    lay = get(p)
    assert capacity(lay.workers()) == [(4, 8, 2)] * 3
    with open(p, "w") as fh:
        json.dump({"cores": 8, "gpu": 2}, fh)
    with pytest.raises(SpecError, match="unknown layout field"):
        get(p)
    with open(p, "w") as fh:
        json.dump({"cores": 8, "cores_per_worker": 3}, fh)
    with pytest.raises(SpecError, match="must divide"):
        get(p)


@pytest.mark.parametrize("name,t_seq,t_async", [("dg1", 1876.0, 1876.0),
                                                 ("dg2", 1770.0, 1308.0),
                                                 ("ddmd", 1575.0, 1205.0)])
def test_paper_specs_model(name: str, t_seq: float, t_async: float) -> None:
    wf = load(os.path.join(PAPER, f"{name}.yaml"))
    m = model(wf, get("summit168").workers(16))
    assert m.t_seq_stages == t_seq and m.t_async_path == t_async
    assert wf.ntasks == (627 if name == "ddmd" else 256)


def test_paper_ddmd_stage_order_and_streaming_dependencies() -> None:
    wf = load(os.path.join(PAPER, "ddmd.yaml"))
    assert len(wf.stages()) == 12 and max(wf.stages()) == 11
    _, parents = wf.set_graph()
    names = {ts.sid: ts.name for ts in wf.sets}
    got = {names[s]: sorted(names[p] for p in parents[s]) for s in range(len(wf.sets))}
    for i in (1, 2, 3):
        assert got[f"Agg{i}"] == [f"Sim{i}"]
        assert got[f"Train{i}"] == [f"Agg{i}"]
        assert got[f"Agent{i}"] == [f"Train{i}"]
    assert got["Sim2"] == ["Sim1"] and got["Sim3"] == ["Sim2"]  # never the analysis


def test_simulator_agrees_with_model_where_it_must() -> None:
    w = get("summit168").workers(16)
    for name in ("dg1", "dg2"):
        wf = load(os.path.join(PAPER, f"{name}.yaml"))
        m = model(wf, w, simulate_bound=False)
        assert simulate(wf, w, "sequential").makespan == pytest.approx(m.t_seq)
        assert simulate(wf, w, "async", validate=True).makespan == pytest.approx(m.t_async)
    # a layered DAG that always fits: async = critical path, sequential = stage sums
    wf = Workflow()
    prev: list[str] = []
    for lvl in range(4):
        names = []
        for k in range(3):
            nm = f"L{lvl}_{k}"
            wf.add_set(nm, 2, "sleep", (float(1 + (lvl * 3 + k) % 5),), after=prev[k:k + 1])
            names.append(nm)
        prev = names
    m = model(wf, uniform_workers(1, 6))
    assert simulate(wf, uniform_workers(1, 6), "async", validate=True).makespan == m.t_async_path
    assert simulate(wf, uniform_workers(1, 6), "sequential").makespan == m.t_seq_stages


def test_ddmd_critical_path_order_beats_fifo() -> None:
    wf = load(os.path.join(PAPER, "ddmd.yaml"))
    w = get("summit168").workers(16)
    cp = simulate(wf, w, "async", validate=True).makespan
    fifo = simulate(wf, w, "async", order="fifo", validate=True).makespan
    seq = simulate(wf, w, "sequential").makespan
    assert seq == 1575.0
    # FIFO gives Train1 a GPU before the third simulations: one of them starts a
    # training length later, and the last iteration's analysis with it
    assert fifo - cp >= 62.5
    assert cp >= 1205.0  # never below the critical path

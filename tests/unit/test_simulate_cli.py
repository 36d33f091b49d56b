"""Simulator determinism and traces, WfFormat import of the shared instances, the CLI."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mpiwf import Workflow, uniform_workers
from mpiwf.analysis import summarize, utilization
from mpiwf.cli import main as cli_main
from mpiwf.errors import SpecError
from mpiwf.layouts import get
from mpiwf.simulate import simulate, simulate_to_trace
from mpiwf.spec import load, read_document
from mpiwf.trace import load as load_trace
from mpiwf.wfformat import from_wfformat, instance_info

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INSTANCES = sorted(glob.glob(os.path.join(ROOT, "..", "shared", "data", "wfinstances",
                                          "*.json")))
if not INSTANCES:
    INSTANCES = sorted(glob.glob("/work/shared/data/wfinstances/*.json"))


def noisy() -> Workflow:
    wf = Workflow("noisy")
    wf.add_set("a", 20, "sleep", (1.0,), duration_dist={"dist": "normal", "std": 0.3})
    wf.add_set("b", 20, "sleep", (2.0,), after_each=["a"],
               duration_dist={"dist": "lognormal", "sigma": 0.2})
    wf.add_set("c", 5, "sleep", (1.0,), after=["b"], duration_dist={"dist": "exponential"})
    return wf


def test_seeded_simulation_is_deterministic() -> None:
    w = uniform_workers(1, 4)
    r1 = simulate(noisy(), w, seed=7, validate=True)
    r2 = simulate(noisy(), w, seed=7)
    r3 = simulate(noisy(), w, seed=8)
    assert r1.makespan == r2.makespan
    assert np.array_equal(r1.rows, r2.rows)
    assert r1.makespan != r3.makespan
    d = r1.rows["ended"] - r1.rows["started"]
    assert len(set(np.round(d, 9).tolist())) > 10  # durations were drawn, not fixed


def test_simulated_trace_is_analyzed_like_a_real_one(tmp_path: str) -> None:
    p = os.path.join(str(tmp_path), "s.h5")
    wf = load(os.path.join(ROOT, "apps", "paper", "dg2.yaml"))
    out = simulate_to_trace(wf, get("summit168").workers(16), "async", trace_path=p,
                            attrs={"layout": "summit168"})
    tr = load_trace(p)
    assert tr.simulated and not tr.partial and tr.mode == "async"
    s = summarize(tr)
    assert s["makespan"] == out["makespan"] == 1308.0 and s["tasks"] == 256
    assert s["utilization"] == pytest.approx(out["utilization"])
    t = tr.tasks
    assert np.all(t["ready"] <= t["started"]) and np.all(t["started"] < t["ended"])
    # every all-to-all edge respected in the trace
    end = {sid: t["ended"][t["set"] == sid].max() for sid in range(len(tr.sets))}
    for a, b, _k in tr.set_edges:
        assert t["started"][t["set"] == b].min() >= end[a]


@pytest.mark.parametrize("path", INSTANCES, ids=os.path.basename)
def test_wfformat_instance_respects_every_edge(path: str) -> None:
    doc = read_document(path)
    wf = load(path)
    spec_tasks = doc["workflow"].get("specification", doc["workflow"])["tasks"]
    assert wf.ntasks == len(spec_tasks)
    deps = {(wf.sets[a].name, wf.sets[b].name) for a, b, _k in wf.set_deps}
    want = set()
    for t in spec_tasks:
        want.update((p, t["id"]) for p in t.get("parents", []))
        want.update((t["id"], c) for c in t.get("children", []))
    assert want and want == deps
    r = simulate(wf, uniform_workers(1, 8, 1), validate=True)
    start = dict(zip(r.rows["task"].tolist(), r.rows["started"].tolist()))
    end = dict(zip(r.rows["task"].tolist(), r.rows["ended"].tolist()))
    for a, b in want:
        assert start[wf.by_name[b].offset] >= end[wf.by_name[a].offset]
    info = instance_info(doc)
    assert info["recorded_makespan"] and info["recorded_makespan"] > 0


def test_wfformat_fields_and_time_scale() -> None:
    doc = {"schemaVersion": "1.4", "name": "x", "workflow": {"makespanInSeconds": 10, "tasks": [
        {"id": "a", "runtimeInSeconds": 4, "coresCount": 2, "parents": [], "children": ["b"]},
        {"id": "b", "runtimeInSeconds": 6, "parents": ["a"], "gpuCount": 1}]}}
    wf = from_wfformat(doc, time_scale=0.5)
    assert [(s.cores, s.gpus, s.duration, s.args) for s in wf.sets] == \
        [(2, 0, 2.0, (2.0,)), (1, 1, 3.0, (3.0,))]
    assert instance_info(doc)["recorded_makespan"] == 10.0
    for bad, msg in ((dict(doc, workflow={"tasks": [{"id": "a", "parents": ["z"]}]}),
                      "unknown task 'z'"),
                     (dict(doc, workflow={"tasks": [{"id": "a", "runtimeInSeconds": -1}]}),
                      "runtimeInSeconds"),
                     (dict(doc, workflow={"tasks": [{"id": "a", "coresCount": 0}]}),
                      "coresCount")):
        with pytest.raises(SpecError, match=msg):
            from_wfformat(bad)
    with pytest.raises(SpecError, match="time_scale"):
        from_wfformat(doc, time_scale=0)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli_main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_model_and_simulate_json(capsys: pytest.CaptureFixture[str], tmp_path: str) -> None:
    spec = os.path.join(ROOT, "apps", "paper", "dg2.yaml")
    rc, out, _ = _cli(capsys, "model", spec, "--layout", "summit168", "--nodes", "16", "--json")
    m = json.loads(out)
    assert rc == 0 and (m["t_seq"], m["t_async"]) == (1770.0, 1308.0)
    assert m["improvement"] == pytest.approx(1 - 1308 / 1770) and m["doa"] == 5
    assert m["critical_path"] == ["T0", "T1", "T3"]
    p = os.path.join(str(tmp_path), "s.h5")
    rc, out, _ = _cli(capsys, "simulate", spec, "--layout", "summit168", "--nodes", "16",
                      "--mode", "sequential", "--trace", p, "--json")
    s = json.loads(out)
    assert rc == 0 and s["makespan"] == 1770.0 and s["tasks"] == 256
    assert set(s["utilization"]) == {"cpu", "gpu"} and os.path.exists(p)
    rc, out, _ = _cli(capsys, "analyze", p, "--json")
    assert rc == 0 and json.loads(out)["makespan"] == 1770.0
    wff = INSTANCES[0]
    rc, out, _ = _cli(capsys, "simulate", wff, "--cores", "4", "--time-scale", "0.5", "--json")
    s = json.loads(out)
    assert rc == 0 and s["recorded_makespan"] == pytest.approx(
        0.5 * instance_info(read_document(wff))["recorded_makespan"])


@pytest.mark.parametrize("argv,msg", [
    (["simulate", "SPEC"], "--layout"),
    (["simulate", "SPEC", "--layout", "nope"], "unknown layout"),
    (["simulate", "SPEC", "--layout", "summit", "--nodes", "0"], "--nodes"),
    (["simulate", "SPEC", "--layout", "summit", "--mode", "fast"], "mode"),
    (["simulate", "SPEC", "--cores", "8"], "asks for"),
    (["model", "SPEC", "--time-scale", "-1"], "--time-scale"),
    (["model", "BAD"], "workflow.specification.tasks"),
    (["model", "missing.yaml"], "no such file"),
])
def test_cli_bad_input_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: str,
                                          argv: list[str], msg: str) -> None:
    bad = os.path.join(str(tmp_path), "bad.json")
    with open(bad, "w") as fh:
        json.dump({"schemaVersion": "1.5", "workflow": {"specification": {"tasks": {}}}}, fh)
    spec = os.path.join(ROOT, "apps", "paper", "dg2.yaml")
    argv = [bad if a == "BAD" else spec if a == "SPEC" else a for a in argv]
    rc, _out, err = _cli(capsys, *argv)
    assert rc == 2
    assert err.count("\n") == 1 and msg in err and "Traceback" not in err


def test_python_m_mpiwf_model_runs_without_mpi() -> None:
    r = subprocess.run([sys.executable, "-m", "mpiwf", "model",
                        os.path.join(ROOT, "apps", "paper", "dg1.yaml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "I = 0.0 %" in r.stdout


@pytest.mark.parametrize("cmd", [["run"], ["simulate", "--cores", "2"]])
def test_trace_that_is_the_spec_is_refused(tmp_path, capsys, cmd) -> None:
    spec = tmp_path / "w.yaml"
    spec.write_text("name: w\nsets:\n  - {name: a, n: 2}\n")
    before = spec.read_bytes()
    assert cli_main([cmd[0], str(spec), *cmd[1:], "--trace",
                     os.path.join(str(tmp_path), ".", "w.yaml")]) == 2
    assert "is the spec itself" in capsys.readouterr().err
    assert spec.read_bytes() == before


def test_multi_rank_rows_record_the_cores_their_gang_holds() -> None:
    wf = Workflow()
    wf.add_set("r", 2, "sleep", (0.5,), ranks=3)
    wf.add_set("s", 3, "sleep", (0.5,))
    r = simulate(wf, uniform_workers(1, 3), "async")
    held = {int(t): int(c) for t, c in zip(r.rows["task"], r.rows["cores"])}
    assert held == {0: 3, 1: 3, 2: 1, 3: 1, 4: 1}
    # 2 x 0.5 s on all 3 cores, then 3 x 0.5 s on one core each: busy throughout
    assert utilization(r.rows, 3, 0)["cpu"] == pytest.approx(1.0)


@pytest.mark.parametrize("argv, want", [
    (["model", "{spec}", "--cores", "1", "--nodes", "1000000000"], "--nodes: must be from 1"),
    (["simulate", "{spec}", "--cores", "100000000000"], "more than 4000000 workers"),
    (["simulate", "{spec}", "--layout", "summit", "--nodes", "900000"], "at most 4000000"),
    (["doctor", "--cores-per-node", "1000000000"], "cores_per_node must be at most 65536"),
])
def test_machines_too_large_to_build_are_refused(tmp_path, capsys, argv, want) -> None:
    """A typo'd machine size used to fill the memory (and be killed), not fail."""
    spec = tmp_path / "w.yaml"
    spec.write_text("name: w\nsets:\n  - {name: a, n: 1}\n")
    assert cli_main([a.format(spec=spec) for a in argv]) == 2
    err = capsys.readouterr().err
    assert want in err and err.count("\n") == 1, err


@pytest.mark.parametrize("cmd", ["simulate", "model"])
def test_nodes_with_cores_is_that_many_nodes_and_the_help_says_so(tmp_path, capsys,
                                                                   cmd) -> None:
    """``--cores C --nodes N`` is N nodes of C cores (it always was: the size checks
    count it): the help said ``--nodes`` was of the layout and ``--cores`` one node,
    and ``--nodes`` alone was refused as needing ``--layout`` only."""
    from mpiwf.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    helps = {a.dest: a.help or "" for a in sub.choices[cmd]._actions}
    assert "--cores" in helps["nodes"] and "--nodes" in helps["cores"]
    assert "one node of" not in helps["cores"]
    spec = tmp_path / "w.yaml"
    spec.write_text("name: w\nsets:\n  - {name: a, n: 12, duration: 1.0, cores: 2}\n")
    if cmd == "simulate":
        for nodes, span, workers in ((1, 6.0, 4), (3, 2.0, 12)):
            assert cli_main(["simulate", str(spec), "--cores", "4", "--nodes", str(nodes),
                             "--json"]) == 0
            d = json.loads(capsys.readouterr().out)
            assert d["makespan"] == span and d["resources"]["workers"] == workers
            assert d["layout"]["nodes"] == nodes
    assert cli_main([cmd, str(spec), "--nodes", "3"]) == 2
    err = capsys.readouterr().err
    assert "--nodes: needs --layout or --cores" in err and err.count("\n") == 1, err


def test_jobscript_output_that_is_the_spec_is_refused(tmp_path, capsys) -> None:
    spec = tmp_path / "w.yaml"
    spec.write_text("name: w\nsets:\n  - {name: a, n: 2}\n")
    before = spec.read_bytes()
    assert cli_main(["jobscript", "--system", "slurm", "--nodes", "1", "--walltime", "00:10",
                     str(spec), "-o", str(spec)]) == 2
    assert "is the spec itself" in capsys.readouterr().err
    assert spec.read_bytes() == before

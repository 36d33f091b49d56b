"""Workflows and specs: structure, stages, priorities, and one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from mpiwf import SpecError, Workflow, from_dict, load
from mpiwf.resources import uniform_workers
from mpiwf.simulate import simulate
from mpiwf.workflow import check_fits

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data", "wfinstances")


def dg() -> Workflow:
    wf = Workflow("dg")
    wf.add_set("T0", 4, "sleep", (3.0,))
    wf.add_set("T1", 2, "sleep", (1.0,), after=["T0"])
    wf.add_set("T2", 2, "sleep", (2.0,), after=["T0"])
    wf.add_set("T3", 2, "sleep", (5.0,), after=["T1"])
    wf.add_set("T4", 1, "sleep", (1.0,), after=["T1", "T2"])
    return wf


def test_ids_names_and_lookups() -> None:
    wf = dg()
    assert wf.ntasks == 11
    assert wf.task_name(0) == "T0[0]" and wf.task_name(10) == "T4"
    assert wf.task_id("T1[1]") == 5 and wf.task_id("T4") == 10
    assert wf.set_of(7).name == "T2"
    with pytest.raises(SpecError, match="has 4 tasks"):
        wf.task_id("T0")
    with pytest.raises(SpecError, match="only 2 tasks"):
        wf.task_id("T3[2]")


def test_levels_stages_and_critical_path_priority() -> None:
    wf = dg()
    assert wf.levels() == [0, 1, 1, 2, 2]
    assert wf.stages() == [0, 1, 1, 2, 2]
    # bottom level: own duration + longest chain after it
    assert wf.bottom_levels() == [9.0, 6.0, 3.0, 5.0, 1.0]
    wf.set_stage_order([["T0"], ["T2"], ["T1"], ["T3", "T4"]])
    assert wf.stages() == [0, 2, 1, 3, 3]
    wf.validate()


def test_stage_order_must_follow_dependencies() -> None:
    wf = dg()
    wf.set_stage_order([["T0"], ["T3"], ["T1", "T2"], ["T4"]])
    with pytest.raises(SpecError, match="staged before"):
        wf.validate()


@pytest.mark.parametrize("kwargs, field, msg", [
    ({"n": 0}, "sets.x.n", ">= 1"),
    ({"n": 2.5}, "sets.x.n", "whole number"),
    ({"n": True}, "sets.x.n", "whole number"),
    ({"n": 10**9}, "sets.x.n", "<="),
    ({"cores": -1}, "sets.x.cores", ">= 0"),
    ({"cores": 0, "gpus": 0}, "sets.x.cores", "at least one core"),
    ({"duration": float("nan")}, "sets.x.duration", "finite"),
    ({"after": ["nope"]}, "sets.x.after[0]", "unknown set"),
    ({"timeout": 0}, "sets.x.timeout", "> 0"),
])
def test_add_set_errors_name_the_field(kwargs: dict, field: str, msg: str) -> None:
    wf = Workflow()
    with pytest.raises(SpecError) as ei:
        wf.add_set("x", **kwargs)
    assert str(ei.value).startswith(field + ":"), str(ei.value)
    assert msg in str(ei.value)


def test_cycles_are_named() -> None:
    wf = Workflow()
    wf.add_set("a")
    wf.add_set("b", after=["a"])
    wf.add_set("c", after=["b"])
    with pytest.raises(SpecError, match="cycle: a -> b -> c -> a|cycle: .*a.*b.*c"):
        wf.add_dependency("c", "a")
    wf2 = Workflow()
    wf2.add_set("s", 3)
    wf2.add_edge("s[0]", "s[1]")
    wf2.add_edge("s[1]", "s[2]")
    wf2.add_edge("s[2]", "s[0]")
    with pytest.raises(SpecError, match=r"cycle: s\[0\] -> s\[1\] -> s\[2\] -> s\[0\]"):
        wf2.validate()


def test_capacity_check() -> None:
    wf = dg()
    wf.add_set("gpu", 1, gpus=2)
    with pytest.raises(SpecError, match="sets.gpu: asks for ranks=1 cores=1 gpus=2"):
        check_fits(wf.sets, [(4, 4, 1)])
    check_fits(wf.sets, [(4, 4, 1), (2, 2, 2)])


def test_unknown_kernel() -> None:
    wf = Workflow()
    wf.add_set("k", kernel="no_such_kernel")
    with pytest.raises(SpecError, match="sets.k.kernel: unknown kernel 'no_such_kernel'"):
        wf.validate()
    wf2 = Workflow()
    wf2.add_set("k", kernel="json:no_such_function")
    with pytest.raises(SpecError, match="has no 'no_such_function'"):
        wf2.validate()
    wf3 = Workflow()
    wf3.add_set("k", kernel="json:dumps")
    wf3.validate()


def test_spec_mapping_and_list_forms_agree() -> None:
    a = from_dict({"sets": [{"name": "x", "n": 2}, {"name": "y", "after": "x"}]})
    b = from_dict({"sets": {"x": {"n": 2}, "y": {"after": ["x"]}}})
    assert a.set_deps == b.set_deps == [(0, 1, 0)]
    assert [s.n for s in a.sets] == [s.n for s in b.sets]


@pytest.mark.parametrize("doc, path", [
    ([1, 2], "spec"),
    ({"sets": []}, "sets"),
    ({"sets": [{"n": 1}]}, "sets[0].name"),
    ({"sets": [{"name": "a", "cores": "four"}]}, "sets[0].cores"),
    ({"sets": [{"name": "a", "colour": 1}]}, "sets[0].colour"),
    ({"sets": [{"name": "a"}], "stages": [["b"]]}, "stages[0]"),
    ({"sets": [{"name": "a"}], "stages": [[]]}, "stages[0]"),
    ({"sets": [{"name": "a"}, {"name": "a"}]}, "sets[1].name"),
    ({"sets": [{"name": "a", "n": 2}], "edges": [["a[0]", "a[5]"]]}, "edges[0]"),
    ({"sets": [{"name": "a"}], "extra": 1}, "extra"),
])
def test_spec_errors(doc: object, path: str) -> None:
    with pytest.raises(SpecError) as ei:
        from_dict(doc)
    assert str(ei.value).startswith(path + ":"), str(ei.value)


def test_yaml_and_json_files(tmp_path) -> None:
    y = tmp_path / "w.yaml"
    y.write_text("name: w\nsets:\n  - {name: a, n: 3, kernel: sleep, args: [0.5]}\n"
                 "  - {name: b, after: [a]}\nedges: [[\"a[0]\", b]]\n")
    wf = load(str(y))
    assert wf.name == "w" and wf.ntasks == 4 and wf.sets[0].duration == 0.5
    assert wf.task_edges == [(0, 3)]
    j = tmp_path / "w.json"
    j.write_text(json.dumps({"sets": [{"name": "a"}]}))
    assert load(str(j)).name == "w"
    bad = tmp_path / "bad.yaml"
    bad.write_text("sets: [ {name: a\n")
    with pytest.raises(SpecError, match="YAML syntax error at line"):
        load(str(bad))


def test_time_scale() -> None:
    wf = dg().scaled(0.5)
    assert wf.sets[0].args == (1.5,) and wf.sets[0].duration == 1.5


@pytest.mark.skipif(not os.path.isdir(SHARED), reason="shared WfCommons instances not present")
def test_wfformat_instances_keep_every_edge() -> None:
    for name in sorted(os.listdir(SHARED)):
        if not name.endswith(".json"):
            continue
        path = os.path.join(SHARED, name)
        wf = load(path)
        with open(path) as fh:
            doc = json.load(fh)
        tasks = doc["workflow"]["specification"]["tasks"]
        assert wf.ntasks == len(tasks)
        edges = {(wf.sets[a].name, wf.sets[b].name) for a, b, _ in wf.set_deps}
        for t in tasks:
            for p in t["parents"]:
                assert (p, t["id"]) in edges
            for c in t["children"]:
                assert (t["id"], c) in edges


def _cli(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "mpiwf", *args], capture_output=True,
                          text=True, timeout=120, env=env, cwd=cwd)


@pytest.mark.parametrize("text", [
    "sets: [ {name: a\n",                       # YAML syntax
    "sets:\n  - {name: a, n: -3}\n",            # bad count
    "sets:\n  - {name: a, kernel: nope}\n",     # unknown kernel
    "sets:\n  - {name: a, gpus: 4}\n",          # no worker has GPUs
    "sets: {}\n",                               # empty workflow
    "[]\n",                                     # wrong top level
    "sets:\n  - {name: \"\u00e9\u2603\", n: 1, after: [\"\u2603\"]}\n",  # odd unicode
])
def test_cli_bad_spec_exits_2_with_one_line(tmp_path, text: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(text, encoding="utf-8")
    r = _cli("run", str(p), "--trace", "", cwd=str(tmp_path))
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr and lines[0].startswith("mpiwf run: error:")


def test_cli_missing_file_and_bad_mode(tmp_path) -> None:
    r = _cli("run", str(tmp_path / "none.yaml"))
    assert r.returncode == 2 and "no such file" in r.stderr
    p = tmp_path / "ok.yaml"
    p.write_text("sets: [{name: a}]\n")
    r = _cli("run", str(p), "--mode", "fastest", "--trace", "")
    assert r.returncode == 2 and "unknown mode" in r.stderr


@pytest.mark.parametrize("dd, where", [
    ({"dist": "normal", "std": float("nan")}, "duration_dist.std"),   # hung the simulator
    ({"dist": "normal", "std": -1}, "duration_dist.std"),
    ({"dist": "lognormal", "sigma": -2}, "duration_dist.sigma"),
    ({"dist": "uniform", "low": 5, "high": 3}, "low 5.0 is above high 3.0"),
    ({"dist": "uniform", "low": -10, "high": -5}, "duration_dist.low"),
    ({"dist": "normal", "std": "abc"}, "must be a number"),
    ({"dist": "exponential", "foo": 1}, "duration_dist.foo"),
    ({"dist": "weird"}, "unknown distribution 'weird'"),
    ([1, 2], "must be a mapping"),
])
def test_bad_duration_dist_is_refused_where_the_set_is_made(dd, where) -> None:
    wf = Workflow()
    with pytest.raises(SpecError, match=re.escape(where)):
        wf.add_set("a", 3, "sleep", (1.0,), duration_dist=dd)


def test_good_duration_dist_forms_simulate() -> None:
    for dd in ({"dist": "normal", "std": 0.2}, {"std": 0.1}, {"dist": "uniform", "high": 0.5},
               {"dist": "exponential"}, {"dist": "lognormal", "sigma": 0.3}):
        wf = Workflow()
        wf.add_set("a", 4, "sleep", (1.0,), duration_dist=dd)
        r = simulate(wf, uniform_workers(1, 2), "async", seed=1)
        assert r.tasks == 4 and 0 <= r.makespan < 100, dd

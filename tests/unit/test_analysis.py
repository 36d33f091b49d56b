"""Metrics, comparisons and exports on hand-built traces where every number is known."""

from __future__ import annotations

import csv
import json
import os
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pytest

import mpiwf
from mpiwf import MpiwfError, TraceError, Workflow, uniform_workers
from mpiwf import analysis as an
from mpiwf.cli import main as cli
from mpiwf.export import CSV_COLUMNS, chrome_events, write_chrome, write_csv
from mpiwf.trace import TraceWriter, load

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NAN = float("nan")


def two_worker_wf() -> Workflow:
    wf = Workflow("hand")
    wf.add_set("a", 2, "sleep", (3.0,), cores=1)
    wf.add_set("b", 1, "sleep", (1.5,), cores=1, gpus=1, after=["a"])
    return wf


def row(task, sid, index, worker, cores, gpus, ready, disp, start, end, recv, attempt=0,
        status=4):
    return (task, sid, index, attempt, status, worker, 1, 0, cores, gpus, 0.0, ready, disp,
            start, end, recv)


#: Two workers (rank 1: 1 core + 1 GPU, rank 2: 1 core), three tasks.
#: a[0] on rank 1 runs 1..4, a[1] on rank 2 runs 2..3, b (after a) on rank 1 runs 5.5..7.
SEQ_ROWS = [row(0, 0, 0, 1, 1, 0, 0.0, 0.5, 1.0, 4.0, 4.25),
            row(1, 0, 1, 2, 1, 0, 0.0, 1.0, 2.0, 3.0, 3.5),
            row(2, 1, 0, 1, 1, 1, 4.25, 5.0, 5.5, 7.0, 7.25)]


def write(path, rows, mode="sequential", close=True, errors=()):
    wf = two_worker_wf()
    tw = TraceWriter(str(path), wf, uniform_workers(1, 2, 1, 1), {"mode": mode})
    for r in rows:
        tw.add(r)
    for e in errors:
        tw.add_error(*e)
    if close:
        tw.close()
    else:
        tw.flush()
        tw.f.close()  # like a killed run: never marked complete
    return str(path)


@pytest.fixture
def seq(tmp_path):
    return load(write(tmp_path / "seq.h5", SEQ_ROWS))


def test_makespan_throughput_utilization(seq) -> None:
    assert an.totals(seq) == (2, 1)
    s = an.summarize(seq)
    assert s["makespan"] == 6.0  # first start 1, last end 7
    assert s["throughput"] == pytest.approx(3 / 6)
    # core-seconds 3 + 1 + 1.5 over 2 cores x 6 s; GPU-seconds 1.5 over 1 GPU x 6 s
    assert s["utilization"]["cpu"] == pytest.approx(5.5 / 12)
    assert s["utilization"]["gpu"] == pytest.approx(0.25)
    assert not s["partial"] and s["status"] == {"done": 3}


def test_utilization_series_is_exact_and_averages_to_the_total(seq) -> None:
    u = an.utilization_series(seq)
    assert u["times"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.5, 7.0]
    assert u["cpu"].tolist() == [0.5, 1.0, 0.5, 0.0, 0.5, 0.0]
    assert u["gpu"].tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    avg = an.binned(u["times"], u["cpu"], np.array([1.0, 7.0]))
    assert avg[0] == pytest.approx(5.5 / 12)
    halves = an.binned(u["times"], u["cpu"], np.array([0.0, 2.5, 5.0]))
    # [0, 2.5): 0.5 * 1 + 1.0 * 0.5 = 1.0 over 2.5; [2.5, 5): 1.0 * 0.5 + 0.5 * 1 = 1.0 over 2.5
    assert halves.tolist() == pytest.approx([0.4, 0.4])


def test_concurrency_running_and_ready_waiting(seq) -> None:
    c = an.concurrency(seq)
    assert c["times"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 4.25, 5.5, 7.0]
    assert c["running"].tolist() == [0, 1, 2, 1, 0, 0, 1, 0]
    # a[0] waits 0..1, a[1] waits 0..2, b waits 4.25..5.5
    assert c["waiting"].tolist() == [2, 1, 0, 0, 0, 1, 0, 0]
    s = an.summarize(seq)["concurrency"]
    assert s == {"max_running": 2, "max_waiting": 2}


def test_overheads(seq) -> None:
    o = an.overheads(seq.tasks)
    assert o["queue"]["mean"] == pytest.approx(0.75) and o["queue"]["max"] == 1.0
    assert o["queue"]["total"] == pytest.approx(2.25) and o["queue"]["n"] == 3
    assert o["launch"]["mean"] == pytest.approx(2 / 3) and o["launch"]["median"] == 0.5
    assert o["report"]["total"] == pytest.approx(1.0) and o["report"]["max"] == 0.5


def test_per_set_stats(seq) -> None:
    a, b = an.per_set(seq)
    assert (a["set"], a["tasks"], a["mean"], a["std"], a["min"], a["max"]) == \
        ("a", 2, 2.0, 1.0, 1.0, 3.0)
    assert a["wait"] == pytest.approx(0.75) and a["wait_max"] == 1.0 and a["failed"] == 0
    assert (b["tasks"], b["mean"], b["std"], b["wait"], b["wait_max"]) == \
        (1, 1.5, 0.0, 0.75, 0.75)


def test_realised_and_model_critical_path(seq) -> None:
    cp = an.critical_path(seq)
    # b ended last; of its parents (all of a), a[0] ended last and released it
    assert cp["task_ids"] == [0, 2] and cp["sets"] == ["a", "b"]
    assert cp["length"] == 6.0 and cp["busy"] == 4.5
    assert cp["dependency_wait"] == pytest.approx(0.25)  # b ready 4.25, a[0] ended 4
    assert cp["queue_wait"] == pytest.approx(1.25)  # b: ready 4.25, started 5.5
    assert cp["busy"] + cp["dependency_wait"] + cp["queue_wait"] == pytest.approx(cp["length"])
    m = an.model_critical_path(seq)
    assert m == {"length": 4.5, "sets": ["a", "b"], "waves": [1, 1]}


def test_critical_path_follows_one_to_one_and_task_edges(tmp_path) -> None:
    wf = Workflow("cp")
    wf.add_set("x", 2, "sleep", (1.0,))
    wf.add_set("y", 2, "sleep", (1.0,), after_each=["x"])
    wf.add_set("z", 1, "sleep", (5.0,))
    wf.add_edge("x[1]", "z")
    wf.add_edge("y[0]", "z")
    tw = TraceWriter(str(tmp_path / "c.h5"), wf, uniform_workers(1, 2))
    for r in [row(0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1), row(1, 0, 1, 2, 1, 0, 0, 0, 0, 3, 3),
              row(2, 1, 0, 1, 1, 0, 1, 1, 1, 9, 9), row(3, 1, 1, 2, 1, 0, 3, 3, 3, 4, 4),
              row(4, 2, 0, 1, 1, 0, 1, 9, 9, 10, 10)]:
        tw.add(r)
    tw.close()
    tr = load(str(tmp_path / "c.h5"))
    cp = an.critical_path(tr)
    # z's task-edge parents: x[1] (ended 3) and y[0] (ended 9) released it;
    # y[0]'s one-to-one parent is x[0], not x[1] which ended later
    assert cp["task_ids"] == [0, 2, 4] and cp["sets"] == ["x", "y", "z"]
    assert cp["dependency_wait"] == 0.0 and cp["busy"] == 1 + 8 + 1
    # model: task edges lifted to sets: x (1) -> y (1) -> z (5)
    assert an.model_critical_path(tr) == {"length": 7.0, "sets": ["x", "y", "z"],
                                          "waves": [1, 1, 1]}


def test_model_critical_path_counts_waves(tmp_path) -> None:
    """Four 2-s tasks on two workers take two waves: the model's path is 4 s + 1 s."""
    wf = Workflow("waves")
    wf.add_set("w", 4, "sleep", (2.0,))
    wf.add_set("t", 1, "sleep", (1.0,), after=["w"])
    path = str(tmp_path / "w.h5")
    tw = TraceWriter(path, wf, uniform_workers(1, 2))
    tw.close()
    m = an.model_critical_path(load(path))
    assert m == {"length": 5.0, "sets": ["w", "t"], "waves": [2, 1]}


def test_failures_and_retries(tmp_path) -> None:
    rows = [row(0, 0, 0, 1, 1, 0, 0.0, 0.5, 1.0, 4.0, 4.25),
            row(1, 0, 1, 2, 1, 0, 0.0, 0.2, 0.5, 1.0, 1.1, attempt=0, status=5),
            row(1, 0, 1, 2, 1, 0, 1.1, 1.5, 2.0, 3.0, 3.5, attempt=1),
            row(2, 1, 0, 1, 1, 1, 4.25, 5.0, 5.5, 6.0, 6.1, attempt=0, status=5)]
    errs = [(1, 0, 2, "node0000", "ValueError", "bad", "tb"),
            (2, 0, 1, "node0000", "KeyError", "k", "tb")]
    tr = load(write(tmp_path / "f.h5", rows, errors=errs))
    f = an.failures(tr)
    assert f == {"failed_attempts": 2, "retries": 1, "retried_tasks": 1, "failed_tasks": 1,
                 "unrecorded": 0, "errors": {"ValueError": 1, "KeyError": 1}}
    a, b = an.per_set(tr)
    assert a["failed"] == 1 and a["tasks"] == 3 and b["failed"] == 1
    # failed attempts held their resources: they count in utilization
    s = an.summarize(tr)
    assert s["makespan"] == 5.5  # 0.5 .. 6.0
    assert s["utilization"]["cpu"] == pytest.approx((3 + 0.5 + 1 + 0.5) / (2 * 5.5))
    assert s["tasks"] == 2 and s["status"] == {"done": 2, "failed": 2}
    assert an.critical_path(tr)["task_ids"] == [0]  # the only done chain end


def test_partial_trace_is_analysed_and_flagged(tmp_path, capsys) -> None:
    path = write(tmp_path / "p.h5", SEQ_ROWS[:2], close=False)
    tr = load(path)
    assert tr.partial
    s = an.summarize(tr)
    assert s["partial"] and s["makespan"] == 3.0 and s["failures"]["unrecorded"] == 1
    assert cli(["analyze", path]) == 0
    assert "PARTIAL" in capsys.readouterr().out


def test_compare_improvement_speedup_utilization(tmp_path, capsys) -> None:
    asy = list(SEQ_ROWS[:2]) + [row(2, 1, 0, 1, 1, 1, 4.0, 4.0, 4.0, 5.5, 5.5)]
    pa = write(tmp_path / "seq.h5", SEQ_ROWS)
    pb = write(tmp_path / "async.h5", asy, mode="async")
    a, b = an.analyze_paths([pa, pb])
    c = an.compare(a, b)
    assert c["improvement"] == pytest.approx(1 - 4.5 / 6) and c["speedup"] == pytest.approx(6 / 4.5)
    assert c["utilization_change"]["cpu"] == pytest.approx(5.5 / 9 - 5.5 / 12)
    assert c["utilization_change"]["gpu"] == pytest.approx(1.5 / 4.5 - 0.25)
    assert cli(["analyze", pa, pb, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["improvement"] == pytest.approx(0.25) and d["speedup"] == pytest.approx(4 / 3)
    assert d["runs"][1]["critical_path"]["length"] == 4.5
    assert cli(["analyze", pa, pb]) == 0
    out = capsys.readouterr().out
    table = out[out.index("makespan (s)"):]
    assert "sequential" in out and "improvement I (%)" in table and "25.0" in table
    assert "crit. path" in out and "overheads" in out


def test_step_series_weights_and_empty() -> None:
    t, v = an.step_series(np.array([0.0, 1.0, NAN]), np.array([2.0, 3.0, 1.0]),
                          np.array([2.0, 3.0, 7.0]))
    assert t.tolist() == [0.0, 1.0, 2.0, 3.0] and v.tolist() == [2.0, 5.0, 3.0, 0.0]
    t, v = an.step_series(np.zeros(0), np.zeros(0))
    assert len(t) == 0 and len(v) == 0


def test_csv_export_round_trips(seq, tmp_path) -> None:
    p = str(tmp_path / "t.csv")
    assert write_csv(seq, p) == 3
    with open(p, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 3
    assert [r["name"] for r in rows] == ["a[0]", "a[1]", "b"]
    assert [r["set_name"] for r in rows] == ["a", "a", "b"]
    assert [float(r["started"]) for r in rows] == [1.0, 2.0, 5.5]
    assert {r["status_name"] for r in rows} == {"done"} and rows[2]["host"] == "node0000"


def test_chrome_trace_one_track_per_worker(seq, tmp_path) -> None:
    p = str(tmp_path / "t.json")
    assert write_chrome(seq, p) == 3
    with open(p) as f:
        obj = json.load(f)
    ev = obj["traceEvents"]
    x = [e for e in ev if e["ph"] == "X"]
    assert [(e["tid"], e["ts"], e["dur"], e["cat"]) for e in x] == \
        [(1, 1e6, 3e6, "a"), (2, 2e6, 1e6, "a"), (1, 5.5e6, 1.5e6, "b")]
    threads = {e["tid"]: e["args"]["name"] for e in ev if e["name"] == "thread_name"}
    assert threads == {1: "rank 1", 2: "rank 2"}
    assert [e["args"]["name"] for e in ev if e["name"] == "process_name"] == ["node 0 node0000"]
    assert x[2]["args"]["queue_s"] == 0.75 and obj["otherData"]["partial"] is False
    assert chrome_events(seq)["traceEvents"] == ev


def test_to_dataframe_without_and_with_pandas(seq, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas -> ImportError
    with pytest.raises(MpiwfError, match="needs pandas"):
        an.to_dataframe(seq)
    seen = {}
    fake = types.ModuleType("pandas")
    fake.DataFrame = lambda d: seen.setdefault("cols", d)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pandas", fake)
    cols = an.to_dataframe(seq)
    assert tuple(cols) == CSV_COLUMNS and cols["name"].tolist() == ["a[0]", "a[1]", "b"]
    assert cols["ended"].tolist() == [4.0, 3.0, 7.0]


def test_export_cli_and_bad_input(seq, tmp_path, capsys) -> None:
    out = str(tmp_path / "e.json")
    assert cli(["export", seq.path, "--format", "chrome", "-o", out]) == 0
    assert "3 task rows" in capsys.readouterr().out
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"nope")
    for argv in (["export", str(junk)], ["analyze", str(junk)],
                 ["plot", str(junk), "-o", str(tmp_path / "x.png")]):
        assert cli(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not an HDF5 file" in err


def test_export_refuses_to_overwrite_its_trace(seq, tmp_path, capsys) -> None:
    before = Path(seq.path).read_bytes()
    link = tmp_path / "link.h5"
    os.link(seq.path, link)
    for out, fmt in ((seq.path, "csv"), (str(link), "chrome")):
        assert cli(["export", seq.path, "--format", fmt, "-o", out]) == 2
        _, err = capsys.readouterr()
        assert err == (f"mpiwf export: error: -o {out}: is the trace being exported (it would "
                       "be overwritten); name another output file\n")
    assert Path(seq.path).read_bytes() == before and load(seq.path).tasks.size == 3


def test_a_resumed_run_is_compared_without_an_improvement(tmp_path, capsys) -> None:
    """A resume of a finished run counts every task done and runs none: its makespan
    (0) covers none of the workflow, so analyze gives no I or speed-up against it, or
    with it as the baseline, and says why, instead of I = 100 %."""
    spec = tmp_path / "w.yaml"
    spec.write_text("name: w\nsets:\n  - {name: a, n: 5}\n")
    pa, pb = str(tmp_path / "a.h5"), str(tmp_path / "b.h5")
    assert cli(["run", str(spec), "--trace", pa, "--progress", "0"]) == 0
    assert cli(["run", str(spec), "--trace", pb, "--resume", pa, "--progress", "0"]) == 0
    capsys.readouterr()
    assert cli(["analyze", pa, pb]) == 0
    out = capsys.readouterr().out
    assert "improvement I =" not in out
    table = out[out.index("improvement I (%)"):].splitlines()
    assert table[0].split()[-2:] == ["—", "—"] and table[1].split()[-2:] == ["—", "—"]
    assert "[RESUMED: 5 task(s) counted done from an earlier trace]" in out
    assert (f"{pb} vs {pa}: no improvement I or speed-up: {pb} is a resume that counted "
            "5 task(s) done from an earlier trace") in out
    assert cli(["analyze", pa, pb, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["improvement"] is None and d["speedup"] is None
    assert "is a resume" in d["comparisons"][0]["note"] and d["runs"][1]["resumed"] == 5
    a, b = an.analyze_paths([pa, pb])
    assert (a["resumed"], b["resumed"]) == (0, 5) and b["resumed_from"] == pa
    for x, y in ((a, b), (b, a)):
        c = an.compare(x, y)
        assert np.isnan(c["improvement"]) and np.isnan(c["speedup"])
        assert f"{pb} is a resume that counted 5 task(s) done" in c["note"]
    assert an.compare(a, a)["note"] is None


def test_trace_missing_fields_is_one_line_exit_2(tmp_path, capsys) -> None:
    p = tmp_path / "odd.h5"
    with h5py.File(p, "w") as f:
        f.attrs["format"] = "mpiwf-trace"
        g = f.create_group("runs/0")
        g["tasks"] = np.zeros(2, dtype=[("task", "<i8")])
        g["sets"] = np.zeros(0, dtype=[("sid", "<i4")])
    with pytest.raises(TraceError, match="lacks field"):
        an.summarize(load(str(p)))
    assert cli(["analyze", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lacks field(s) set, attempt" in err


def test_empty_partial_trace_gives_strict_json(tmp_path, capsys) -> None:
    path = write(tmp_path / "e.h5", [], close=False)
    s = an.summarize(load(path))
    assert s["partial"] and s["makespan"] == 0.0 and s["tasks"] == 0
    assert s["failures"]["unrecorded"] == 3 and s["critical_path"]["tasks"] == 0
    assert cli(["analyze", path, "--json"]) == 0

    def no_nan(c: str) -> None:
        raise AssertionError(f"non-finite {c} in JSON")

    d = json.loads(capsys.readouterr().out, parse_constant=no_nan)
    assert d["sets"][0]["mean"] is None and d["partial"] is True


def test_paper_dg2_sequential_vs_async_through_traces(tmp_path) -> None:
    """The paper's DG2 on 16 Summit nodes: utilizations and I known in closed form."""
    from mpiwf.simulate import simulate

    paths = []
    workers = uniform_workers(16, 168, 1, 6, gpu_workers_own_cores=False)
    for mode in ("sequential", "async"):
        wf = mpiwf.load(os.path.join(ROOT, "apps", "paper", "dg2.yaml"))
        paths.append(str(tmp_path / f"{mode}.h5"))
        tw = TraceWriter(paths[-1], wf, workers, {"mode": mode, "simulated": True})
        simulate(wf, workers, mode, trace=tw)
        tw.close()
    seq, asy = an.analyze_paths(paths)
    t_seq, t_async = 385 + 154 + 769 + 462, 385 + 154 + 769
    gpu_s = 96 * 385 + 96 * 769  # GPU-seconds: T0, T3 and T6
    core_s = 96 * 16 * 385 + 32 * 40 * 154 + 96 * 4 * 769 + 16 * 4 * 231 + 16 * 4 * 462
    assert (seq["makespan"], asy["makespan"]) == (t_seq, t_async)
    assert seq["utilization"]["gpu"] == pytest.approx(gpu_s / (96 * t_seq))  # 65.2 %
    assert asy["utilization"]["gpu"] == pytest.approx(gpu_s / (96 * t_async))  # 88.2 %
    assert asy["utilization"]["cpu"] == pytest.approx(core_s / (2688 * t_async))
    assert an.compare(seq, asy)["improvement"] == pytest.approx(1 - t_async / t_seq)
    # async: the realised path is the model's; sequential: T7 waited for the barrier
    assert asy["critical_path"]["length"] == asy["model_critical_path"]["length"] == t_async
    assert asy["critical_path"]["sets"] in (["T0", "T1", "T3"], ["T0", "T2", "T6"])
    cp = seq["critical_path"]
    assert cp["sets"][-1] == "T7" and cp["length"] == t_seq
    assert cp["busy"] + cp["dependency_wait"] + cp["queue_wait"] == pytest.approx(t_seq)


def test_scale_benchmark_runs_small(tmp_path) -> None:
    """The 1M-task benchmark script, at 20,000 tasks, so it cannot rot unnoticed."""
    import os
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    keep = str(tmp_path / "s.h5")
    r = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "analysis_scale.py"),
                        "--tasks", "20000", "--keep", keep], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=root), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "ns/row" in r.stdout and "target 10 s: met" in r.stdout
    tr = load(keep)
    f = an.failures(tr)
    assert f["failed_attempts"] == f["retries"] == f["retried_tasks"] > 0
    assert an.summarize(tr)["tasks"] == 20000

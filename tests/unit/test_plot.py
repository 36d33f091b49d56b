"""Plots: every kind, one run and two stacked, written as non-blank PNG files."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mpiwf import MpiwfError, Workflow, uniform_workers
from mpiwf.cli import main as cli
from mpiwf.plot import KINDS, plot
from mpiwf.simulate import simulate
from mpiwf.trace import TraceWriter, load

mpimg = pytest.importorskip("matplotlib.image")  # the plot extra; make venv installs it


def sim(tmp_path, mode: str, fail: bool = False) -> str:
    wf = Workflow("plotwf")
    wf.add_set("cpu", 6, "sleep", (2.0,), cores=1)
    wf.add_set("gpu", 3, "sleep", (3.0,), cores=1, gpus=1, after=["cpu"])
    wf.add_set("side", 2, "sleep", (4.0,), cores=1)
    wf.add_set("end", 1, "sleep", (1.0,), after=["side"])
    path = str(tmp_path / f"{mode}.h5")
    w = uniform_workers(2, 3, 1, 1)
    tw = TraceWriter(path, wf, w, {"mode": mode, "simulated": True})
    simulate(wf, w, mode, trace=tw)
    if fail:
        tw.add((3, 0, 3, 1, 5, 2, 1, 0, 1, 0, 0.0, 0.0, 0.0, 0.5, 1.0, 1.0))
    tw.close()
    return path


def pixels(path: str) -> np.ndarray:
    assert os.path.getsize(path) > 5000
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 600
    return img[..., :3]


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_one_and_two_runs(tmp_path, kind: str) -> None:
    seq, asy = sim(tmp_path, "sequential", fail=True), sim(tmp_path, "async")
    one = plot([load(asy)], kind, str(tmp_path / f"{kind}-1.png"))
    two = plot([load(seq), load(asy)], kind, str(tmp_path / f"{kind}-2.png"))
    a, b = pixels(one), pixels(two)
    # not blank: real variation, and a fair share of pixels is not the white background
    assert a.std() > 0.05 and b.std() > 0.05
    assert np.mean(a.sum(axis=2) < 2.9) > 0.01 and np.mean(b.sum(axis=2) < 2.9) > 0.01
    assert b.shape[0] > a.shape[0]  # two runs stack as two panels


def test_series_of_many_steps_are_binned(tmp_path) -> None:
    wf = Workflow("many")
    wf.add_set("t", 5000, "sleep", (1.0,), duration_dist={"dist": "uniform", "low": 0.1,
                                                          "high": 2.0})
    path = str(tmp_path / "m.h5")
    w = uniform_workers(1, 7)
    tw = TraceWriter(path, wf, w, {"mode": "async", "simulated": True})
    simulate(wf, w, trace=tw)
    tw.close()
    out = plot([load(path)], "utilization", str(tmp_path / "m.png"))
    img = pixels(out)
    assert img.std() > 0.05


def test_plot_cli(tmp_path, capsys) -> None:
    p = sim(tmp_path, "async")
    out = str(tmp_path / "c.png")
    assert cli(["plot", p, p, "--kind", "concurrency", "-o", out]) == 0
    assert capsys.readouterr().out.strip() == out and pixels(out).std() > 0.05
    assert cli(["plot", p, "--kind", "pie", "-o", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown plot kind 'pie'" in err
    with pytest.raises(MpiwfError, match="cannot write"):
        plot([load(p)], "gantt", str(tmp_path / "no" / "such" / "dir.png"))


def test_large_gantt_is_painted_as_an_image(tmp_path, monkeypatch) -> None:
    import mpiwf.plot as mp

    p = sim(tmp_path, "sequential", fail=True)
    bars = pixels(plot([load(p)], "gantt", str(tmp_path / "bars.png")))
    monkeypatch.setattr(mp, "MAX_BARS", 3)  # 12 attempts: the raster path
    img = pixels(plot([load(p)], "gantt", str(tmp_path / "img.png")))
    assert img.shape == bars.shape and img.std() > 0.05

    def colored(a: np.ndarray) -> float:  # share of saturated (set-coloured) pixels
        return float(np.mean(a.max(axis=2) - a.min(axis=2) > 0.3))

    # the same attempts cover a comparable area either way (bars are thinner)
    assert colored(img) > 0.05 and colored(bars) > 0.01


@pytest.mark.parametrize("argv,msg", [
    (["-o", "OUT.xyz"], "unsupported format 'xyz' (the extension must be one of "),
    (["-o", "OUT.h5"], "unsupported format 'h5'"),
    (["--width", "inf"], "--width: inf is not"),
    (["--kind", "gantt", "--width", "1e9"], "--width: 1e+09 is not"),
    (["--width", "0.001"], "--width"),
    (["--dpi", "2"], "--dpi: 2 is not"),
    (["--width", "60", "--dpi", "1200"], "72000 x 4320 pixels is too large"),
])
def test_plot_cli_bad_output_or_size_is_one_line_exit_2(tmp_path, capsys, argv: list[str],
                                                        msg: str) -> None:
    p = sim(tmp_path, "async")
    argv = [str(tmp_path / ("out" + a[3:])) if a.startswith("OUT.") else a for a in argv]
    if "-o" not in argv:
        argv += ["-o", str(tmp_path / "x.png")]
    assert cli(["plot", p, *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and msg in err and "Traceback" not in err
    assert not [f for f in os.listdir(tmp_path) if not f.endswith(".h5")]


def test_plot_without_extension_prints_the_png_written(tmp_path, capsys) -> None:
    p = sim(tmp_path, "async")
    assert cli(["plot", p, "-o", str(tmp_path / "noext")]) == 0
    out = str(tmp_path / "noext.png")
    assert capsys.readouterr().out.strip() == out and pixels(out).std() > 0.05
    assert not os.path.exists(tmp_path / "noext")
    # the extension picks the format whatever its case
    assert cli(["plot", p, "-o", str(tmp_path / "up.SVG")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "up.SVG")
    assert (tmp_path / "up.SVG").read_text().lstrip().startswith("<?xml")


def test_no_gain_is_shown_against_a_resumed_run(tmp_path) -> None:
    """A resume counts recorded tasks done and runs none of them: its makespan covers
    none of the workflow, so the title gives no I and no saving is shaded for it."""
    from mpiwf import plot as P

    seq, asy = sim(tmp_path, "sequential"), sim(tmp_path, "async")
    a, b = load(seq), load(asy)
    assert "I(async) = " in P._suptitle([a, b], "x")
    b.attrs["resumed_done"] = 12
    assert P._suptitle([a, b], "x") == "x: sequential vs async — I(async) n/a (resumed)"
    from matplotlib.axes import Axes

    shaded = []
    orig = Axes.axvspan

    def spy(self, *args, **kw):  # type: ignore[no-untyped-def]
        shaded.append(args)
        return orig(self, *args, **kw)

    Axes.axvspan = spy  # type: ignore[method-assign]
    try:
        plot([a, b], "utilization", str(tmp_path / "r.png"))
        del b.attrs["resumed_done"]
        plot([a, b], "utilization", str(tmp_path / "n.png"))
    finally:
        Axes.axvspan = orig  # type: ignore[method-assign]
    green = [s for s in shaded if len(s) == 2]
    assert len(green) == 1  # the saving is shaded for the plain run only


def test_gantt_of_rows_of_a_set_missing_from_the_sets_table(tmp_path, capsys) -> None:
    """Rows whose set id the sets table lacks: a file holding them is a damaged trace
    (one line, exit 2); a Trace built in memory with them draws them gray under the
    set's id, as analysis names them (the gantt raised KeyError)."""
    import h5py

    p = sim(tmp_path, "async")
    tr = load(p)
    tr.tasks["set"][:] = 99
    out = str(tmp_path / "g.png")
    assert plot([tr], "gantt", out) == out and os.path.getsize(out) > 0
    with h5py.File(p, "a") as f:
        rows = f["runs/0/tasks"][()]
        rows["set"][:] = 99
        del f["runs/0/tasks"]
        f["runs/0/tasks"] = rows
    assert cli(["plot", p, "--kind", "gantt", "-o", out]) == 2
    err = capsys.readouterr().err
    assert "damaged trace" in err and "set id 99 past the sets table" in err, err

"""Bad options of any subcommand: one line on stderr, exit status 2, rank 0 only."""

from __future__ import annotations

import pytest

from mpiwf.cli import main as cli

#: a bad option or value per subcommand, as argparse rejects it
BAD = [
    ["bogus"],
    ["run", "w.yaml", "--prefetch", "x"],
    ["run"],
    ["simulate", "w.yaml", "--order", "random"],
    ["model", "w.yaml", "--nodes", "two"],
    ["analyze"],
    ["analyze", "t.h5", "--run", "x"],
    ["analyze", "--bogus", "t.h5"],
    ["plot", "t.h5", "--dpi", "x"],
    ["export", "t.h5", "--format", "xml"],
    ["jobscript", "w.yaml", "--nodes", "1"],
    ["doctor", "--bind", "bogus"],
]


@pytest.mark.parametrize("argv", BAD, ids=lambda a: " ".join(a))
def test_bad_option_is_one_line_exit_2(argv: list[str], capsys, monkeypatch) -> None:
    monkeypatch.delenv("PMI_RANK", raising=False)
    assert cli(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1, err
    assert err.startswith("mpiwf") and ": error: " in err and "usage:" not in err, err


@pytest.mark.parametrize("argv", BAD[:3], ids=lambda a: " ".join(a))
def test_bad_option_is_printed_by_rank_0_only(argv: list[str], capsys, monkeypatch) -> None:
    monkeypatch.setenv("PMI_RANK", "1")
    assert cli(argv) == 2
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("opt, value", [("--short-task", "nan"), ("--progress", "nan"),
                                        ("--time-scale", "inf"), ("--time-scale", "nan")])
def test_run_refuses_nan_and_infinite_settings(opt: str, value: str, tmp_path, capsys) -> None:
    """NaN passed every `< 0` check (and --time-scale inf made every sleep endless)."""
    spec = tmp_path / "w.yaml"
    spec.write_text("sets: [{name: a, kernel: sleep, args: [0.01]}]\n")
    trace = tmp_path / "t.h5"
    assert cli(["run", str(spec), opt, value, "--trace", str(trace), "--rundir",
                str(tmp_path / "rd")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("mpiwf run: error: "), err
    assert opt.lstrip("-").replace("-", "_").replace("progress", "progress_interval") in err
    assert not trace.exists()


def test_a_rundir_that_cannot_be_made_names_the_option(tmp_path, capsys) -> None:
    spec = tmp_path / "w.yaml"
    spec.write_text("sets: [{name: a, kernel: noop}]\n")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli(["run", str(spec), "--rundir", str(blocker / "rd"), "--progress", "0"]) == 2
    err = capsys.readouterr().err
    assert err == (f"mpiwf run: error: --rundir: cannot create '{blocker}/rd' "
                   "(Not a directory)\n")

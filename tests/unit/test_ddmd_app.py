"""The DeepDriveMD app without MPI: sizes, the paper's static DAG, summit.yaml, the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mpiwf.resources import uniform_workers
from mpiwf.simulate import simulate
from mpiwf.spec import from_dict, load

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from apps.deepdrivemd import app  # noqa: E402

SUMMIT = ROOT / "apps" / "deepdrivemd" / "summit.yaml"


def test_summit_yaml_is_the_generated_spec() -> None:
    import yaml

    with open(SUMMIT) as f:
        assert yaml.safe_load(f) == app.spec_dict("summit")


def test_summit_counts_are_the_papers() -> None:
    wf = load(str(SUMMIT))
    assert wf.ntasks == 627  # 3 x (96 + 16 + 1 + 96)
    by = {ts.name: ts for ts in wf.sets}
    assert (by["sim0"].n, by["sim0"].cores, by["sim0"].gpus, by["sim0"].duration) \
        == (96, 4, 1, 340.0)
    assert (by["agg1"].n, by["agg1"].cores, by["agg1"].gpus) == (16, 32, 0)
    assert (by["train2"].n, by["train2"].gpus, by["agent2"].n, by["agent2"].cores) \
        == (1, 1, 96, 16)
    assert len(wf.stage_order or []) == 12


def test_summit_simulated_sequential_and_streaming() -> None:
    """On 16 virtual Summit nodes (168 threads, 6 GPUs each): T_seq is the sum of the
    stage durations; streaming overlaps analysis with the next simulations."""
    ms = {}
    for mode in ("sequential", "async"):
        res = simulate(load(str(SUMMIT)), uniform_workers(16, 42, 4, 6), mode)
        assert res.tasks == 627
        ms[mode] = res.makespan
    assert ms["sequential"] == pytest.approx(3 * (340 + 85 + 62.5 + 37.5))
    improvement = 1 - ms["async"] / ms["sequential"]
    # paper: 19.8 % measured, 23.5 % modelled
    assert 0.15 < improvement < 0.30


@pytest.mark.parametrize("size", sorted(app.SIZES))
def test_static_workflow_of_every_size(size: str) -> None:
    sz = app.SIZES[size]
    wf = app.static_workflow(size).validate(check_kernels=True)
    assert wf.ntasks == sz.iters * (sz.n_sims + sz.n_agg + 1 + sz.n_agent)
    assert from_dict(app.spec_dict(size)).ntasks == wf.ntasks
    # sequential stages: 4 per iteration, in order
    st = wf.stages()
    assert [st[wf.by_name[f"{s}{i}"].sid] for i in range(sz.iters) for s in app.STAGES] \
        == list(range(4 * sz.iters))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "apps.deepdrivemd", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, word", [(("--size", "huge"), "huge"),
                                        (("--size", "tiny", "--mode", "doa=2"), "doa=2"),
                                        (("--trace", "/no/such/dir/t.h5"), "--trace")])
def test_cli_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], word: str) -> None:
    out = _cli(*args)
    assert out.returncode == 2
    assert word in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr


def test_cli_writes_the_spec(tmp_path: Path) -> None:
    out = _cli("--size", "tiny", "--write-spec", str(tmp_path / "t.yaml"))
    assert out.returncode == 0, out.stderr
    assert load(str(tmp_path / "t.yaml")).ntasks == 18

"""DeepDriveMD (size tiny) end to end under MPI, both modes: order, science, restarts."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from mpi4py import MPI

from mpiwf import Config
from mpiwf.trace import load

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from apps.deepdrivemd import app, science  # noqa: E402

CFG = Config(progress_interval=0, validate=True)


def _spans(path: str) -> dict[str, tuple[float, float]]:
    """Per set: first start, last end."""
    tr = load(path)
    names = [s["name"] for s in tr.sets]
    out: dict[str, tuple[float, float]] = {}
    for r in tr.tasks:
        nm = names[int(r["set"])]
        a, b = out.get(nm, (np.inf, -np.inf))
        out[nm] = (min(a, float(r["started"])), max(b, float(r["ended"])))
    return out


@pytest.mark.parametrize("mode", ["sequential", "async"])
def test_tiny_runs_and_restarts_start_from_chosen_states(comm: MPI.Comm, shared_dir: str,
                                                         mode: str) -> None:
    size = app.SIZES["tiny"]
    path = os.path.join(shared_dir, f"{mode}.h5")
    rundir = os.path.join(shared_dir, f"run-{mode}")
    res = app.run("tiny", mode, trace_path=path, rundir=rundir, comm=comm, config=CFG)
    if comm.Get_rank() != 0:
        assert res is None
        return
    assert res is not None
    tr = load(path)
    assert not tr.partial and tr.mode == mode
    ntasks = size.iters * sum(size.counts().values())
    assert len(tr.tasks) == ntasks and np.all(tr.tasks["status"] == 4)  # DONE

    # the order of each iteration, and what async may overlap
    sp = _spans(path)
    for i in range(size.iters):
        for a, b in zip(app.STAGES, app.STAGES[1:]):
            assert sp[f"{b}{i}"][0] >= sp[f"{a}{i}"][1]
    if mode == "sequential":
        for i in range(1, size.iters):
            assert sp[f"sim{i}"][0] >= sp[f"agent{i - 1}"][1]
    else:  # iteration 1's simulations do not wait for iteration 0's analysis
        assert sp["sim1"][0] < sp["agent0"][1]
        assert sp["sim2"][0] >= sp["agent0"][1]

    its = res["iterations"]
    lag = 1 if mode == "sequential" else 2
    restarted = 0
    for i, it in enumerate(its):
        # science: NVE energy kept, training loss falls
        for s in it["sims"]:
            assert s["max_energy_error"] < science.ENERGY_DRIFT_TOLERANCE
        assert it["loss"][-1] < it["loss"][0]
        if i < lag:
            assert it["restarts"] is None and all(s["start"] is None for s in it["sims"])
            continue
        # the simulations were given the agent's choice, and started from it
        agent = its[i - lag]["agent"]
        chosen = [c for a in agent for c in a["chosen"]]
        assert it["restarts"] == [r for a in agent for r in a["restarts"]]
        for j, s in enumerate(it["sims"]):
            src_file, frame = chosen[j % len(chosen)]
            with np.load(s["path"]) as sim, np.load(src_file) as src:
                assert np.array_equal(sim["initial_coords"], src["coords"][frame])
            restarted += 1
        # and the choice is the most unusual frames of that iteration
        with np.load(agent[0]["path"]) as z:
            top = np.sort(z["all_scores"])[::-1][:len(z["scores"])]
            assert np.allclose(np.sort(z["scores"])[::-1], top)
    assert restarted == (size.iters - lag) * size.n_sims

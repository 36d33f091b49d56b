"""DeepDriveMD task kernels: the science kernels wrapped for mpiwf, data through the run directory.

Layout of the run directory (``--rundir``, shared by every rank)::

    RUNDIR/ddmd/it<i>/sim/<j>.npz        simulation j of iteration i (science.simulate)
    RUNDIR/ddmd/it<i>/agg/<k>.h5         aggregation shard k: sims j with j % n_agg == k
    RUNDIR/ddmd/it<i>/train.h5           the shards merged for training
    RUNDIR/ddmd/it<i>/model.npz          the autoencoder (weights and per-epoch loss)
    RUNDIR/ddmd/it<i>/agent/<k>.npz      agent k's chosen restart states (science.infer)

Small results travel as return values: a simulation returns its energy error and the
state it started from, training its losses, an agent the ``(file, row)`` restart
states it chose; the driver hands those to the next iteration's simulations.
Every kernel takes the size's parameter dict ``p`` (see :mod:`apps.deepdrivemd.app`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import h5py
import numpy as np

import mpiwf

from . import science

Restart = tuple[str, int]


def _ctx() -> mpiwf.TaskContext:
    ctx = mpiwf.context()
    if ctx is None:  # called outside a run: index 0 in the current directory
        return mpiwf.TaskContext(task=0, name="local", set="local", index=0)
    return ctx


def itdir(rundir: str, it: int, *parts: str) -> str:
    """``RUNDIR/ddmd/it<it>/<parts...>``, its directory created."""
    path = os.path.join(rundir, "ddmd", f"it{it}", *parts)
    os.makedirs(os.path.dirname(path) if parts else path, exist_ok=True)
    return path


def _use_gpu(ctx: mpiwf.TaskContext) -> bool:
    return bool(ctx.gpus) and not ctx.virtual_gpu


def md(it: int, p: dict[str, Any], restarts: Sequence[Restart] | None = None) -> dict[str, Any]:
    """Simulation ``j`` (the task's index) of iteration ``it``.

    Args:
        it: iteration.
        p: size parameters (``n_beads``, ``n_steps``, ``save_every``, ``dt``, ``seed``).
        restarts: the agent's chosen states; simulation ``j`` starts from
            ``restarts[j % len(restarts)]``. ``None``: a seeded random chain.

    Returns:
        ``energy_drift``, ``max_energy_error``, ``n_frames``, ``start`` (the restart
        state, or ``None``) and ``path``.
    """
    ctx = _ctx()
    j = ctx.index
    out = itdir(ctx.rundir, it, "sim", f"{j:04d}.npz")
    start: Restart | None = None
    kw: dict[str, Any] = {}
    if restarts:
        path, row = restarts[j % len(restarts)]
        start = (str(path), int(row))
        kw = {"start": start[0], "start_frame": start[1]}
    r = science.simulate(out, n_beads=p["n_beads"], n_steps=p["n_steps"],
                         save_every=p["save_every"], dt=p["dt"],
                         seed=p["seed"] + 1000 * it + j, **kw)
    return {"energy_drift": r["energy_drift"], "max_energy_error": r["max_energy_error"],
            "n_frames": r["n_frames"], "start": start, "path": out}


def aggregate(it: int, p: dict[str, Any]) -> dict[str, Any]:
    """Aggregation shard ``k`` (the task's index): simulations ``j % n_agg == k``.

    Returns:
        ``n_frames``, ``n_files`` and ``path``.
    """
    ctx = _ctx()
    k = ctx.index
    ins = [itdir(ctx.rundir, it, "sim", f"{j:04d}.npz")
           for j in range(k, p["n_sims"], p["n_agg"])]
    out = itdir(ctx.rundir, it, "agg", f"{k:04d}.h5")
    r = science.aggregate(ins, out)
    return {"n_frames": r["n_frames"], "n_files": r["n_files"], "path": out}


def _merge(paths: Sequence[str], out: str) -> None:
    """Concatenate aggregation shards (same layout as ``science.aggregate``'s file)."""
    maps, coords, srcs, names = [], [], [], []
    for path in paths:
        with h5py.File(path, "r") as h5:
            maps.append(h5["contact_maps"][()])
            coords.append(h5["coords"][()])
            s = h5["source"][()]
            s[:, 0] += len(names)
            srcs.append(s)
            names.extend(str(x) for x in h5.attrs["source_paths"])
    with h5py.File(out, "w") as h5:
        h5.create_dataset("contact_maps", data=np.concatenate(maps))
        h5.create_dataset("coords", data=np.concatenate(coords))
        h5.create_dataset("source", data=np.concatenate(srcs))
        h5.attrs["n_frames"] = sum(m.shape[0] for m in maps)
        h5.attrs["n_files"] = len(names)
        h5.attrs["n_beads"] = maps[0].shape[1]
        h5.attrs["source_paths"] = names


def train(it: int, p: dict[str, Any]) -> dict[str, Any]:
    """Train the autoencoder on iteration ``it``'s aggregated contact maps (seeded).

    Returns:
        ``loss`` (per epoch), ``n_samples``, ``backend`` and ``path`` of the model.
    """
    ctx = _ctx()
    shards = [itdir(ctx.rundir, it, "agg", f"{k:04d}.h5") for k in range(p["n_agg"])]
    data = itdir(ctx.rundir, it, "train.h5")
    _merge(shards, data)
    out = itdir(ctx.rundir, it, "model.npz")
    r = science.train(data, out, latent_dim=p["latent_dim"], hidden_dim=p["hidden_dim"],
                      epochs=p["epochs"], seed=p["seed"] + it, use_gpu=_use_gpu(ctx))
    return {"loss": r["loss"], "n_samples": r["n_samples"], "backend": r["backend"],
            "path": out}


def agent(it: int, p: dict[str, Any]) -> dict[str, Any]:
    """Agent ``k``: embed, score outliers in the latent space, choose restart states.

    With ``n_agent`` agents, agent ``k`` takes its share of the ``n_sims`` most unusual
    frames of the whole iteration (ranks ``k, k + n_agent, ...``).

    Returns:
        ``restarts`` (``(file, row)`` states for ``md``), ``chosen`` (``(sim file,
        frame)`` of each, in the iteration's aggregate), ``scores`` and ``path``.
    """
    ctx = _ctx()
    k, na = ctx.index, p["n_agent"]
    data = itdir(ctx.rundir, it, "train.h5")
    model = itdir(ctx.rundir, it, "model.npz")
    out = itdir(ctx.rundir, it, "agent", f"{k:04d}.npz")
    r = science.infer(data, model, out, n_outliers=p["n_sims"], method="knn",
                      n_neighbors=p["n_neighbors"], use_gpu=_use_gpu(ctx))
    mine = list(range(k, len(r["chosen"]), na))
    with np.load(out) as z:
        arrays = {key: z[key] for key in z.files}
    for key in ("coords", "scores", "source", "frame_index"):
        arrays[key] = arrays[key][mine]
    np.savez(out, **arrays)
    with h5py.File(data, "r") as h5:
        names = [str(x) for x in h5.attrs["source_paths"]]
    chosen = [(names[r["chosen"][i][0]], r["chosen"][i][1]) for i in mine]
    return {"restarts": [(out, row) for row in range(len(mine))], "chosen": chosen,
            "scores": [r["scores"][i] for i in mine], "path": out}

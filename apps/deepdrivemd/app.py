"""DeepDriveMD on mpiwf: sizes, the adaptive futures driver, and the paper's static DAG.

Launch: ``mpiexec -n 4 python -m apps.deepdrivemd --size demo --mode async --trace a.h5``.

Each iteration is Simulation (``n_sims`` MD runs) -> Aggregation (``n_agg`` shards) ->
Training (1 autoencoder) -> Agent (``n_agent`` outlier searches). The agent's chosen
states are the starting points of later simulations, and those simulations are
created at run time from the agent's result (:mod:`mpiwf.futures`):

* ``sequential``: iteration i+1 starts from iteration i's agent, and the scheduler
  runs the stages one after another with a barrier after each (the paper's baseline);
* ``async`` (streaming): the simulations of iterations 0 and 1 start at once;
  iteration i+2 starts from iteration i's agent, so the analysis of iteration i
  overlaps the simulations of iteration i+1 (the paper's asynchronous variant).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mpiwf import Config, Workflow
from mpiwf import futures as fx

K = "apps.deepdrivemd.kernels:"
STAGES = ("sim", "agg", "train", "agent")


@dataclasses.dataclass(frozen=True)
class Size:
    """Counts, requests, duration estimates and science parameters of one size.

    Attributes:
        name: ``tiny``, ``demo`` or ``summit``.
        iters: iterations.
        n_sims, n_agg, n_agent: tasks of the simulation, aggregation and agent sets
            (training is one task).
        requests: per stage ``(cores, gpus)`` of one task.
        durations: per stage, seconds per task (estimates for priorities; for
            ``summit`` the paper's sleep durations).
        science: parameters of the kernels (``n_beads``, ``n_steps``, ...).
    """

    name: str
    iters: int
    n_sims: int
    n_agg: int
    n_agent: int
    requests: dict[str, tuple[int, int]]
    durations: dict[str, float]
    science: dict[str, Any]

    def counts(self) -> dict[str, int]:
        """Tasks per stage."""
        return {"sim": self.n_sims, "agg": self.n_agg, "train": 1, "agent": self.n_agent}

    def params(self) -> dict[str, Any]:
        """The parameter dict every kernel gets."""
        return {**self.science, "n_sims": self.n_sims, "n_agg": self.n_agg,
                "n_agent": self.n_agent}


_CPU = {s: (1, 0) for s in STAGES}

SIZES: dict[str, Size] = {
    "tiny": Size("tiny", 3, 3, 1, 1, _CPU,
                 {"sim": 0.05, "agg": 0.01, "train": 0.05, "agent": 0.01},
                 {"n_beads": 12, "n_steps": 300, "save_every": 30, "dt": 0.004, "seed": 0,
                  "latent_dim": 3, "hidden_dim": 16, "epochs": 8, "n_neighbors": 5}),
    "demo": Size("demo", 3, 3, 2, 1, _CPU,
                 {"sim": 2.0, "agg": 0.05, "train": 2.0, "agent": 0.1},
                 {"n_beads": 24, "n_steps": 30000, "save_every": 200, "dt": 0.004, "seed": 0,
                  "latent_dim": 4, "hidden_dim": 64, "epochs": 400, "n_neighbors": 10}),
    # the paper's counts, requests and durations (paper-reference.md); science sized
    # for a GPU node
    "summit": Size("summit", 3, 96, 16, 96,
                   {"sim": (4, 1), "agg": (32, 0), "train": (4, 1), "agent": (16, 1)},
                   {"sim": 340.0, "agg": 85.0, "train": 62.5, "agent": 37.5},
                   {"n_beads": 48, "n_steps": 200000, "save_every": 500, "seed": 0,
                    "latent_dim": 8, "hidden_dim": 256, "epochs": 100,
                    "n_neighbors": 20}),
}


def get_size(name: str) -> Size:
    """The size called ``name``.

    Raises:
        SpecError: unknown size.
    """
    from mpiwf import SpecError

    if name not in SIZES:
        raise SpecError("--size", f"unknown size {name!r} (use {', '.join(SIZES)})")
    return SIZES[name]


def _values(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def driver(ex: fx.Executor, size: Size, mode: str) -> dict[str, Any]:
    """Submit the iterations, feeding each agent's choice to later simulations.

    Args:
        ex: the executor (from :func:`mpiwf.futures.run`).
        size: the size.
        mode: ``sequential`` (restart from the previous iteration) or ``async``
            (restart from two iterations back, so analysis overlaps simulation).

    Returns:
        ``{"iterations": [...]}``, per iteration: ``restarts`` the simulations were given, ``sims``
        (their results), ``loss`` (training), ``agent`` (the agents' results).
    """
    p = size.params()
    lag = 1 if mode == "sequential" else 2
    chain = sum(size.durations.values())
    its: list[dict[str, Any]] = []
    for i in range(size.iters):
        restarts = None
        after: list[fx.Future] = []
        if i - lag >= 0:
            ag = its[i - lag]["agent"]
            restarts = [r for v in _values(ag.result()) for r in v["restarts"]]
            after = [ag]
        fut: dict[str, Any] = {"restarts": restarts}
        args: dict[str, tuple[Any, ...]] = {"sim": (i, p, restarts), "agg": (i, p),
                                            "train": (i, p), "agent": (i, p)}
        kernels = {"sim": "md", "agg": "aggregate", "train": "train", "agent": "agent"}
        # the iterations that will restart from this one's agent are not submitted yet:
        # tell the scheduler their chain, so this iteration's analysis goes first
        later = len(range(i + lag, size.iters, lag))
        for st in STAGES:
            cores, gpus = size.requests[st]
            fut[st] = ex.submit(K + kernels[st], *args[st], n=size.counts()[st], after=after,
                                cores=cores, gpus=gpus, duration=size.durations[st],
                                name=f"{st}{i}",
                                lookahead=later * chain if st == "agent" else 0.0)
            after = [fut[st]]
        its.append(fut)
    fx.wait([f[st] for f in its for st in STAGES])
    out = []
    for f in its:
        out.append({"restarts": f["restarts"], "sims": _values(f["sim"].result()),
                    "loss": f["train"].result()["loss"],
                    "agent": _values(f["agent"].result())})
    return {"iterations": out}


def run(size: str, mode: str, *, trace_path: str | None = None, rundir: str = "ddmd-run",
        comm: Any = None, config: Config | None = None) -> dict[str, Any] | None:
    """Run DeepDriveMD on every rank of ``comm`` (collective).

    Args:
        size: ``tiny``, ``demo`` or ``summit``.
        mode: ``sequential`` or ``async``.
        trace_path: HDF5 trace (``None``: none).
        rundir: the run directory (see :mod:`apps.deepdrivemd.kernels` for its layout).
        comm: communicator (default ``COMM_WORLD``).
        config: run settings; its ``mode`` and ``rundir`` are replaced.

    Returns:
        On rank 0 the driver's result (see :func:`driver`), elsewhere ``None``.

    Raises:
        SpecError: unknown size or mode.
    """
    from mpiwf import SpecError

    sz = get_size(size)
    if mode not in ("sequential", "async"):
        raise SpecError("--mode", f"unknown mode {mode!r} (use sequential or async)")
    cfg = dataclasses.replace(config or Config(progress_interval=0), mode=mode, rundir=rundir)
    return fx.run(lambda ex: driver(ex, sz, mode), cfg, trace_path=trace_path, comm=comm,
                  name=f"deepdrivemd-{size}",
                  attrs={"workflow": f"deepdrivemd-{size}", "app": "deepdrivemd",
                         "size": size})


def static_workflow(size: str | Size, kernel: str = "sleep") -> Workflow:
    """The paper's DeepDriveMD DAG with sleep tasks, for ``mpiwf simulate`` and job scripts.

    Stage order: ``iters`` x [Sim -> Agg -> Train -> Agent] (the sequential run).
    Dependencies: Agg_i after Sim_i, Train_i after Agg_i, Agent_i after Train_i; the
    simulations do not wait for earlier analyses (the asynchronous run).

    Args:
        size: a size or its name.
        kernel: ``sleep`` (or ``spin``) with the size's durations.

    Returns:
        The workflow.
    """
    sz = size if isinstance(size, Size) else get_size(size)
    wf = Workflow(f"deepdrivemd-{sz.name}")
    order: list[list[str]] = []
    for i in range(sz.iters):
        prev: list[str] = []
        for st in STAGES:
            cores, gpus = sz.requests[st]
            d = sz.durations[st]
            wf.add_set(f"{st}{i}", sz.counts()[st], kernel, (d,), cores=cores, gpus=gpus,
                       duration=d, after=prev)
            prev = [f"{st}{i}"]
            order.append(prev)
    wf.set_stage_order(order)
    return wf


def spec_dict(size: str | Size) -> dict[str, Any]:
    """:func:`static_workflow` as a spec document (what ``summit.yaml`` holds)."""
    wf = static_workflow(size)
    _, parents = wf.set_graph()
    sets = []
    for ts in wf.sets:
        d: dict[str, Any] = {"name": ts.name, "n": ts.n, "kernel": ts.kernel,
                             "args": list(ts.args), "cores": ts.cores, "gpus": ts.gpus,
                             "duration": ts.duration}
        if parents[ts.sid]:
            d["after"] = [wf.sets[p].name for p in parents[ts.sid]]
        sets.append(d)
    return {"name": wf.name, "stages": wf.stage_order, "sets": sets}

"""Workers and what they hold: the pure part of resource handling.

A *worker* is one rank (ranks >= 1, or rank 0 itself in a 1-rank run). It owns a
disjoint set of cores and possibly GPUs on one node. Tasks ask for ``ranks``,
``cores`` and ``gpus``; the scheduler covers a request with a *gang* of workers on
one node. Discovery and binding (which need MPI and the OS) live in
:mod:`mpiwf.binding`; this module never imports mpi4py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

#: The most nodes a machine may have where a command builds one (``simulate``,
#: ``model``, ``jobscript``; Frontier has 9,408): a larger count is a typo, and
#: building its per-node tables would fill memory or not end.
MAX_NODES = 1_000_000


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """One worker rank.

    Attributes:
        rank: rank in the run's communicator.
        node: node index (0-based, dense).
        host: host name.
        cores: number of cores it owns (0 for a GPU-only proxy rank).
        gpus: number of GPUs it owns.
        core_ids: the core ids it is bound to, if known.
        gpu_ids: the GPU ids it is bound to, if known.
        virtual_gpu: its GPUs are declared by a layout, not present.
    """

    rank: int
    node: int = 0
    host: str = "localhost"
    cores: int = 1
    gpus: int = 0
    core_ids: tuple[int, ...] = ()
    gpu_ids: tuple[int, ...] = ()
    virtual_gpu: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for traces and JSON)."""
        return dataclasses.asdict(self)


def capacity(workers: Iterable[WorkerSpec]) -> list[tuple[int, int, int]]:
    """Per node ``(workers, cores, gpus)``, in node order."""
    per: dict[int, list[int]] = {}
    for w in workers:
        c = per.setdefault(w.node, [0, 0, 0])
        c[0] += 1
        c[1] += w.cores
        c[2] += w.gpus
    return [tuple(per[k]) for k in sorted(per)]  # type: ignore[misc]


def uniform_workers(nodes: int, workers_per_node: int, cores: int = 1, gpus_per_node: int = 0,
                    gpu_workers_own_cores: bool = True, first_rank: int = 1,
                    virtual_gpu: bool = False, host_prefix: str = "node") -> list[WorkerSpec]:
    """A regular machine: ``nodes`` x ``workers_per_node`` workers of ``cores`` cores.

    The first ``gpus_per_node`` workers of each node own one GPU each. With
    ``gpu_workers_own_cores=False`` they are extra GPU-only ranks (0 cores) and every
    one of the ``workers_per_node`` ranks owns cores: the count model of the paper
    (a node has C cores and G GPUs, independently).
    """
    out: list[WorkerSpec] = []
    rank = first_rank
    for node in range(nodes):
        host = f"{host_prefix}{node:04d}"
        if not gpu_workers_own_cores:
            for g in range(gpus_per_node):
                out.append(WorkerSpec(rank, node, host, 0, 1, (), (g,), virtual_gpu))
                rank += 1
        for k in range(workers_per_node):
            has_gpu = gpu_workers_own_cores and k < gpus_per_node
            out.append(WorkerSpec(rank, node, host, cores, 1 if has_gpu else 0,
                                  tuple(range(k * cores, (k + 1) * cores)),
                                  (k,) if has_gpu else (), virtual_gpu and has_gpu))
            rank += 1
    return out


def describe(workers: Sequence[WorkerSpec]) -> str:
    """One line: nodes, workers, cores and GPUs."""
    cap = capacity(workers)
    return (f"{len(cap)} node(s), {len(workers)} worker(s), {sum(c[1] for c in cap)} core(s), "
            f"{sum(c[2] for c in cap)} GPU(s)")

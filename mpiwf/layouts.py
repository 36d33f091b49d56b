"""Named machine layouts (Summit, Frontier, Perlmutter, Polaris) and user layout files.

A layout is the virtual machine the simulator and the model run on: per node a count
of cores and GPUs, built with :func:`mpiwf.resources.uniform_workers` in the paper's
*count model* (one CPU rank per core plus one GPU-only proxy rank per GPU, so a
node's cores and GPUs are counted independently).

``summit`` has 42 usable cores per node (SMT1). The paper's measurements counted
the 168 hardware threads (SMT4) as cores: that is ``summit168`` (alias
``summit-smt4``), the layout that reproduces its table. This module never imports
mpi4py.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from .errors import SpecError
from .resources import WorkerSpec, uniform_workers


@dataclasses.dataclass(frozen=True)
class Layout:
    """A regular machine: ``nodes`` x (``cores`` cores + ``gpus`` GPUs).

    Attributes:
        name: layout name.
        cores: cores per node (counted as the scheduler sees them).
        gpus: GPUs per node.
        nodes: default node count (``--nodes`` overrides it).
        cores_per_worker: cores owned by one CPU worker rank (1 = one rank per core).
        note: one line on what is counted.
    """

    name: str
    cores: int
    gpus: int = 0
    nodes: int = 1
    cores_per_worker: int = 1
    note: str = ""

    def workers(self, nodes: int | None = None) -> list[WorkerSpec]:
        """The workers of ``nodes`` nodes (default :attr:`nodes`), GPUs virtual.

        Raises:
            SpecError: ``nodes`` < 1.
        """
        n = self.nodes if nodes is None else nodes
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise SpecError("--nodes", f"must be a whole number >= 1, got {n!r}")
        return uniform_workers(n, self.cores // self.cores_per_worker, self.cores_per_worker,
                               self.gpus, gpu_workers_own_cores=False, virtual_gpu=True,
                               host_prefix=f"{self.name}-")

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON output and trace attributes)."""
        return dataclasses.asdict(self)


#: Named layouts. Core counts are usable cores per node as batch jobs see them.
LAYOUTS: dict[str, Layout] = {
    "summit": Layout("summit", 42, 6, note="IBM AC922: 2x21 usable POWER9 cores, 6 V100"),
    "summit168": Layout("summit168", 168, 6,
                        note="Summit counting 168 SMT4 hardware threads as cores (the paper)"),
    "frontier": Layout("frontier", 56, 8,
                       note="HPE Cray EX: 56 usable EPYC cores (low-noise mode), 8 MI250X GCDs"),
    "perlmutter": Layout("perlmutter", 64, 4, note="GPU node: 64 EPYC cores, 4 A100"),
    "polaris": Layout("polaris", 32, 4, note="HPE Apollo 6500: 32 EPYC cores, 4 A100"),
}
ALIASES = {"summit-smt4": "summit168", "summit42": "summit"}

_FILE_FIELDS = {"name", "cores", "gpus", "nodes", "cores_per_worker", "note",
                "cores_per_node", "gpus_per_node"}


def from_dict(doc: Any, source: str = "layout") -> Layout:
    """A layout from parsed YAML/JSON::

        name: mymachine
        cores: 48            # per node (alias cores_per_node)
        gpus: 4              # per node (alias gpus_per_node; default 0)
        nodes: 2             # default node count (default 1)
        cores_per_worker: 1  # optional: fewer, bigger CPU workers

    Raises:
        SpecError: unknown or invalid field (named).
    """
    if not isinstance(doc, Mapping):
        raise SpecError(source, "a layout file holds a mapping (name, cores, gpus, nodes)")
    bad = sorted(str(k) for k in doc if k not in _FILE_FIELDS)
    if bad:
        raise SpecError(f"{source}: {bad[0]}", "unknown layout field (known: "
                        + ", ".join(sorted(_FILE_FIELDS)) + ")")
    vals: dict[str, Any] = {}
    for key, alias, lo, default in (("cores", "cores_per_node", 0, None),
                                    ("gpus", "gpus_per_node", 0, 0), ("nodes", None, 1, 1),
                                    ("cores_per_worker", None, 1, 1)):
        v = doc.get(key, doc.get(alias, default) if alias else default)
        if v is None:
            raise SpecError(f"{source}: {key}", "missing")
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise SpecError(f"{source}: {key}", f"must be a whole number >= {lo}, got {v!r}")
        vals[key] = v
    if vals["cores"] + vals["gpus"] < 1:
        raise SpecError(f"{source}: cores", "a node needs at least one core or GPU")
    if vals["cores"] % vals["cores_per_worker"]:
        raise SpecError(f"{source}: cores_per_worker", "must divide cores")
    name = doc.get("name", os.path.splitext(os.path.basename(source))[0] or "custom")
    return Layout(str(name), vals["cores"], vals["gpus"], vals["nodes"],
                  vals["cores_per_worker"], str(doc.get("note", "")))


def get(name: str) -> Layout:
    """A named layout, or one read from a YAML/JSON file of that path.

    Raises:
        SpecError: neither a known name nor a valid layout file.
    """
    key = ALIASES.get(name, name)
    if key in LAYOUTS:
        return LAYOUTS[key]
    if os.path.exists(name) or name.endswith((".yaml", ".yml", ".json")):
        from .spec import read_document

        return from_dict(read_document(name), source=name)
    raise SpecError("--layout", f"unknown layout {name!r} (named: "
                    f"{', '.join(sorted(LAYOUTS))}; or a YAML/JSON layout file)")


def workers(name: str, nodes: int | None = None) -> list[WorkerSpec]:
    """Workers of a named or file layout on ``nodes`` nodes."""
    return get(name).workers(nodes)


def rank_layout(gpu_workers: int) -> Any:
    """A layout for :func:`mpiwf.runner.run` on local ranks: one node whose first
    ``gpu_workers`` worker ranks each hold one core and one virtual GPU and whose
    other worker ranks hold one core.

    Returns:
        A function from the ranks' discovery dicts (rank 0 first) to the workers;
        in a 1-rank run rank 0 itself is the only worker. Call it with
        :func:`fake_infos` to get the same workers for the simulator.
    """
    def layout(infos: list[dict[str, Any]]) -> list[WorkerSpec]:
        ranks = infos[1:] if len(infos) > 1 else infos
        return [WorkerSpec(rank=int(i["rank"]), node=0, host=str(i.get("host", "localhost")),
                           cores=1, gpus=1 if k < gpu_workers else 0,
                           gpu_ids=(k,) if k < gpu_workers else (),
                           virtual_gpu=k < gpu_workers)
                for k, i in enumerate(ranks)]

    return layout


def fake_infos(ranks: int, host: str = "localhost") -> list[dict[str, Any]]:
    """Discovery dicts of ``ranks`` ranks on one host (for :func:`rank_layout`)."""
    return [{"rank": r, "host": host} for r in range(ranks)]

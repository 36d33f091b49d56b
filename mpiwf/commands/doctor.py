"""``mpiwf doctor``: what MPI, the ranks' binding and the GPUs look like from inside a job.

Launch it like a run (``mpiexec -n 4 python -m mpiwf doctor``). Every rank discovers
itself and applies the binding a run would apply; rank 0 prints one table of
``(section, item, value)`` rows. Sections come from the functions in
:data:`SECTIONS`, each ``f(report) -> rows``: append one to add a section.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

Row = tuple[str, str, str]


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    from ..binding import add_arguments

    p = sub.add_parser("doctor", help="report MPI, ranks per node, binding, GPUs, warnings",
                       description="Check the machine from inside a job: launch it like a run "
                       "(mpiexec -n N python -m mpiwf doctor). Rank 0 prints the table.")
    add_arguments(p)
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=main)


def _versions() -> list[Row]:
    rows: list[Row] = []
    try:
        import h5py

        rows.append(("python", "h5py", f"{h5py.__version__} (parallel: "
                     f"{'yes' if h5py.get_config().mpi else 'no'})"))
    except Exception as exc:  # pragma: no cover - h5py is a dependency
        rows.append(("python", "h5py", f"not available ({type(exc).__name__})"))
    try:
        import cupy  # type: ignore[import-not-found,import-untyped,unused-ignore]

        rows.append(("python", "cupy", str(cupy.__version__)))
    except Exception as exc:
        rows.append(("python", "cupy", f"not available ({type(exc).__name__})"))
    import numpy

    rows.append(("python", "numpy", numpy.__version__))
    rows.append(("python", "python", sys.version.split()[0]))
    return rows


def mpi_rows(rep: dict[str, Any]) -> list[Row]:
    """MPI library, versions, ranks and ranks per node."""
    info = rep["mpi"]
    rows: list[Row] = [("mpi", "library", info["mpi_library"]),
                       ("mpi", "standard", info["mpi_standard"]),
                       ("mpi", "mpi4py", info["mpi4py"]),
                       ("mpi", "ranks", str(len(rep["infos"])))]
    per: dict[str, int] = {}
    for inf in rep["infos"]:
        per[inf["host"]] = per.get(inf["host"], 0) + 1
    for host, n in per.items():
        ncpus = next(i["ncpus"] for i in rep["infos"] if i["host"] == host)
        rows.append(("mpi", f"ranks on {host}", f"{n} (host has {ncpus} cpus)"))
    return rows


def python_rows(rep: dict[str, Any]) -> list[Row]:
    """Versions of the Python packages mpiwf uses (rank 0)."""
    return list(rep["python"])


def _ids(ids: Any) -> str:
    ids = list(ids)
    if not ids:
        return "-"
    if ids == list(range(ids[0], ids[-1] + 1)) and len(ids) > 2:
        return f"{ids[0]}-{ids[-1]}"
    return ",".join(map(str, ids))


def rank_rows(rep: dict[str, Any]) -> list[Row]:
    """One row per rank: node, local rank, role, cores and GPUs it is bound to."""
    specs = {w["rank"]: w for w in rep["workers"]}
    rows: list[Row] = []
    for inf, after in zip(rep["infos"], rep["bound"]):
        r = inf["rank"]
        w = specs.get(r)
        where = f"{inf['host']} local {inf['local_rank']}/{inf['local_size']}"
        if w is None:
            rows.append(("ranks", f"rank {r}", f"master  {where}  affinity "
                         f"{_ids(after['affinity'])}"))
            continue
        kind = "virtual" if w["virtual_gpu"] else "real"
        gpu = f"gpu {_ids(w['gpu_ids'])} ({kind})" if w["gpu_ids"] else "gpu -"
        rows.append(("ranks", f"rank {r}", f"worker  node {w['node']}  {where}  cores "
                     f"{w['cores']}  affinity {_ids(after['affinity'])}  "
                     f"OMP_NUM_THREADS={after.get('omp') or '-'}  {gpu}"
                     + (f"  CUDA_VISIBLE_DEVICES={after['cvd']}" if after.get("cvd") else "")))
    return rows


def gpu_rows(rep: dict[str, Any]) -> list[Row]:
    """GPUs seen per host, and where the count came from."""
    rows: list[Row] = []
    seen: dict[str, tuple[set[int], set[str]]] = {}
    for inf in rep["infos"]:
        ids, src = seen.setdefault(inf["host"], (set(), set()))
        ids.update(inf["gpu_ids"])
        src.add(inf["gpu_source"])
    for host, (ids, src) in seen.items():
        rows.append(("gpus", host, f"{len(ids)} real ({_ids(sorted(ids))}; from "
                     f"{', '.join(sorted(src))})"))
    nvirt = sum(len(w["gpu_ids"]) for w in rep["workers"] if w["virtual_gpu"])
    if nvirt:
        rows.append(("gpus", "virtual", f"{nvirt} declared by the layout (placement only)"))
    return rows


def warning_rows(rep: dict[str, Any]) -> list[Row]:
    """Warnings: shared cores, more GPU workers than GPUs, oversubscribed hosts."""
    from ..binding import warnings_for
    from ..resources import WorkerSpec

    workers = [WorkerSpec(**{**w, "core_ids": tuple(w["core_ids"]),
                             "gpu_ids": tuple(w["gpu_ids"])}) for w in rep["workers"]]
    out = warnings_for(workers, rep["infos"])
    per: dict[str, int] = {}
    for inf in rep["infos"]:
        per[inf["host"]] = per.get(inf["host"], 0) + 1
    for host, n in per.items():
        ncpus = next(i["ncpus"] for i in rep["infos"] if i["host"] == host)
        if n > ncpus:
            out.append(f"{host}: {n} ranks on {ncpus} cpus (oversubscribed; mpiwf's loops "
                       "back off, CPU-bound tasks share cores)")
    return [("warning", str(i + 1), w) for i, w in enumerate(out)] or [("warning", "-", "none")]


def batch_rows(rep: dict[str, Any]) -> list[Row]:
    """The batch job (scheduler, job id, walltime) from :mod:`mpiwf.batchenv`."""
    from ..batchenv import doctor_section

    return doctor_section(rep)


#: Sections of the report, in order; each maps the gathered report to rows.
SECTIONS: list[Callable[[dict[str, Any]], list[Row]]] = [
    mpi_rows, batch_rows, python_rows, gpu_rows, rank_rows, warning_rows]


def render(rows: list[Row]) -> str:
    """The rows as an aligned text table."""
    w0 = max([len("section")] + [len(r[0]) for r in rows])
    w1 = max([len("item")] + [len(r[1]) for r in rows])
    lines = [f"{'section':<{w0}}  {'item':<{w1}}  value", f"{'-' * w0}  {'-' * w1}  -----"]
    lines += [f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def gather(comm: Any, bind: Any) -> dict[str, Any] | None:
    """Collective: discover, plan and apply the binding (undone before it returns); the
    report on rank 0."""
    import os

    from .. import binding
    from ..errors import SpecError
    from ..runner import mpi_versions

    info = binding.discover(comm)
    infos = comm.gather(info, root=0)
    state: tuple[str, Any] = ("ok", None)
    if comm.Get_rank() == 0:
        try:
            state = ("ok", binding.plan(infos, bind))
        except SpecError as exc:
            state = ("error", exc)
    state = comm.bcast(state, root=0)
    if state[0] == "error":
        raise state[1]
    workers = state[1]
    mine = next((w for w in workers if w.rank == comm.Get_rank()), None)
    if mine is not None:
        binding.apply(mine)
    after = {"affinity": binding.affinity(), "omp": os.environ.get("OMP_NUM_THREADS"),
             "cvd": os.environ.get("CUDA_VISIBLE_DEVICES")}
    binding.release()  # a report, not a run: the process is left as it was found
    bound = comm.gather(after, root=0)
    if comm.Get_rank() != 0:
        return None
    return {"infos": infos, "workers": [w.as_dict() for w in workers], "bound": bound,
            "mpi": mpi_versions(), "python": _versions()}


def main(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the exit status."""
    from mpi4py import MPI

    from ..binding import from_args

    bind = from_args(args)  # bad flags or layout file: every rank stops here, exit 2
    comm = MPI.COMM_WORLD.Dup()
    try:
        rep = gather(comm, bind)
    finally:
        comm.Free()
    if rep is None:
        return 0
    rows = [row for section in SECTIONS for row in section(rep)]
    if args.json:
        print(json.dumps([list(r) for r in rows]))
    else:
        print(render(rows))
    sys.stdout.flush()
    return 0

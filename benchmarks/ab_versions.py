"""Versions of mpiwf side by side: null-task runs of each, rotated in one mpiexec.

Launch::

    git worktree add /tmp/v-base <commit>      # or any directory holding mpiwf/
    mpiexec -n 4 .venv/bin/python benchmarks/ab_versions.py \\
        off=/tmp/v-base:off base=/tmp/v-base:on new=.:on [--tasks N] [--rounds R]

Each ``LABEL=DIR:on|off`` is a version (the ``mpiwf/`` package in ``DIR``) with its
trace on or off; ``LABEL=DIR:on:MPIWF_X=v,MPIWF_Y=w`` also sets run settings for it
alone, as those environment variables would (``thread=.:on:MPIWF_TRACE_THREAD=on``).
Every round runs each one once on the same ranks (``--tasks`` null
tasks through ``mpiwf.runner.run``, one set or with ``--dag`` 100 sets each after the
previous one, a fresh trace file each time), in an order that
rotates and reverses from round to round, so a slow stretch of a shared machine
falls on all of them alike. Printed per version: the median rate, its cost against
the first one (``rate_first / rate - 1``), the median of each round's own ratio,
and rank 0's CPU per task (``time.process_time``). A difference smaller than the
spread of the rounds' ratios is not one: use more rounds.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import shutil
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import add_null_sets, shared_tmp  # noqa: E402

#: the versions imported so far, by directory: each once, under a package name of
#: its own, for the life of the process (a second main() reuses them)
_LOADED: dict[str, Any] = {}


def _version(label: str, spec: str) -> tuple[str, Any, bool, dict[str, str]]:
    """``DIR:on|off[:MPIWF_X=v,...]`` -> (label, its modules, trace on, settings)."""
    parts = spec.split(":")
    env: dict[str, str] = {}
    if len(parts) >= 3 and "=" in parts[-1]:
        for item in parts.pop().split(","):
            name, eq, value = item.partition("=")
            if not eq or not name.startswith("MPIWF_"):
                raise ValueError(f"{label}: {item!r}: expected MPIWF_NAME=value")
            env[name] = value
    d, mode = ":".join(parts[:-1]), parts[-1]
    if mode not in ("on", "off") or not d or not label:
        raise ValueError(f"{label}={spec}: expected LABEL=DIR:on or LABEL=DIR:off")
    d = os.path.abspath(d)
    init = os.path.join(d, "mpiwf", "__init__.py")
    if not os.path.exists(init):
        raise ValueError(f"{label}: no mpiwf package in {d}")
    if d not in _LOADED:
        alias = f"mpiwf_v{len(_LOADED)}"
        s = importlib.util.spec_from_file_location(
            alias, init, submodule_search_locations=[os.path.join(d, "mpiwf")])
        assert s is not None and s.loader is not None
        mod = importlib.util.module_from_spec(s)
        sys.modules[alias] = mod
        s.loader.exec_module(mod)
        _LOADED[d] = (mod, importlib.import_module(alias + ".runner"),
                      importlib.import_module(alias + ".config"))
    return label, _LOADED[d], mode == "on", env


def main(argv: list[str] | None = None) -> int:
    """Run the rounds; rank 0 prints one line per version."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("versions", nargs="+", metavar="LABEL=DIR:on|off")
    p.add_argument("--tasks", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--dag", action="store_true",
                   help="100 sets of tasks/100, each after the previous one")
    a = p.parse_args(argv)
    versions = []
    try:
        if a.tasks < 1 or a.rounds < 1:
            raise ValueError("--tasks and --rounds must be at least 1")
        for v in a.versions:
            label, _, spec = v.partition("=")
            versions.append(_version(label, spec))
        if len({v[0] for v in versions}) < len(versions):
            raise ValueError("two versions with the same label")
    except ValueError as exc:  # every rank parses the same arguments: all stop here
        sys.stderr.write(f"ab_versions: {exc}\n")
        return 2
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    tmp = shared_tmp(comm, "mpiwf-ab-")

    def once(v: tuple[str, Any, bool, dict[str, str]], n: int, tag: str) -> tuple[float, float]:
        label, (mod, runner, config), on, env = v
        rundir = os.path.join(tmp, "run")
        cfg = (config.from_env({**os.environ, **env}, progress_interval=0, rundir=rundir)
               if env else config.from_env(progress_interval=0, rundir=rundir))
        path = os.path.join(tmp, f"{tag}.h5") if on else None

        def build() -> Any:
            return add_null_sets(mod.Workflow("ab"), n, 100 if a.dag and n >= 100 else 1)

        comm.Barrier()
        c, t = time.process_time(), time.perf_counter()
        runner.run(build, cfg, trace_path=path, comm=comm)
        t, c = time.perf_counter() - t, time.process_time() - c
        if comm.rank == 0 and path is not None and os.path.exists(path):
            os.remove(path)  # a fresh file every time, as a user's run writes
        return n / t, c / n * 1e6

    for v in versions:  # warm-up: imports, h5py, first messages
        once(v, 1000, "warm")
    res: dict[str, list[tuple[float, float]]] = {v[0]: [] for v in versions}
    for r in range(a.rounds):
        k = r % len(versions)
        order = versions[k:] + versions[:k]
        for v in (order[::-1] if r % 2 else order):
            res[v[0]].append(once(v, a.tasks, f"r{r}-{v[0]}"))
    if comm.rank == 0:
        first = versions[0][0]
        base = res[first]
        base_rate = statistics.median(x[0] for x in base)
        shape = "a DAG of 100 sets" if a.dag else "one set"
        print(f"# {a.tasks} null tasks ({shape}), {a.rounds} rounds, {comm.size} ranks; "
              f"cost against {first}")
        for label, _, on, _env in versions:
            v = res[label]
            rate = statistics.median(x[0] for x in v)
            own = sorted(b[0] / x[0] - 1 for x, b in zip(v, base))
            print(f"{label:<12} trace={'on ' if on else 'off'} {rate:>11,.0f} tasks/s  "
                  f"cost {base_rate / rate - 1:+.3f}  rounds' median {statistics.median(own):+.3f} "
                  f"({own[0]:+.3f} to {own[-1]:+.3f})  rank 0 CPU "
                  f"{statistics.median(x[1] for x in v):.3f} us/task")
    comm.Barrier()
    if comm.rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m apps.deepdrivemd``: run DeepDriveMD under mpiexec and print its numbers.

Launch: ``mpiexec -n 4 python -m apps.deepdrivemd --size demo --mode async --trace a.h5``.
Exit status: 0 done, 1 a task failed (one line; the trace holds the traceback), 2 bad
input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

# One BLAS thread per rank unless the launch says otherwise: the ranks already fill
# the cores, and spinning BLAS threads of a training task next to busy simulation
# ranks slowed it tenfold on 2 cores. Set before NumPy is first imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m apps.deepdrivemd",
                                description="DeepDriveMD (MD -> aggregation -> autoencoder -> "
                                "outlier agent -> adaptive restarts) on mpiwf.")
    p.add_argument("--size", default="demo", help="tiny, demo or summit (default: demo)")
    p.add_argument("--mode", default="async", help="sequential or async (default: async)")
    p.add_argument("--trace", default="", help="HDF5 trace to write (default: none)")
    p.add_argument("--rundir", default="ddmd-run", help="run directory (default: ddmd-run)")
    p.add_argument("--json", action="store_true", help="print one JSON object on rank 0")
    p.add_argument("--write-spec", metavar="FILE", default=None,
                   help="write the size's static DAG (sleep tasks) as a YAML spec and exit")
    return p.parse_args(argv)


def report(res: dict[str, Any], trace: str) -> dict[str, Any]:
    """Science and run numbers of a finished run."""
    its = res["iterations"]
    out: dict[str, Any] = {
        "max_energy_error": max(s["max_energy_error"] for it in its for s in it["sims"]),
        "loss": [[it["loss"][0], it["loss"][-1]] for it in its],
        "restarted_sims": sum(1 for it in its for s in it["sims"] if s["start"]),
    }
    if trace:
        from mpiwf.analysis import summarize
        from mpiwf.trace import load

        s = summarize(load(trace))
        out.update(makespan=s["makespan"], utilization=s["utilization"], tasks=s["tasks"],
                   trace=trace, mode=s["mode"])
    return out


def _rank() -> int:
    """This process's rank when MPI is running, else 0 (never starts MPI)."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None or not mpi.Is_initialized() or mpi.Is_finalized():
        from mpiwf.cli import _rank as launcher_rank  # the launcher's rank variables

        return launcher_rank()
    return int(mpi.COMM_WORLD.Get_rank())


def main(argv: list[str] | None = None) -> int:
    """Run the app; returns the exit status."""
    from mpiwf import MpiwfError
    from mpiwf.futures import TaskFailed

    args = parse(argv)
    try:
        from .app import get_size, run, spec_dict

        if args.write_spec:
            import yaml

            doc = spec_dict(args.size)
            with open(args.write_spec, "w") as f:
                f.write(f"# DeepDriveMD, size {args.size}: written by "
                        f"python -m apps.deepdrivemd --size {args.size} --write-spec FILE\n")
                yaml.safe_dump(doc, f, sort_keys=False, default_flow_style=None, width=100)
            return 0
        get_size(args.size)
        if args.trace and not os.path.isdir(os.path.dirname(os.path.abspath(args.trace))):
            raise MpiwfError(f"--trace: directory of {args.trace!r} does not exist")
        res = run(args.size, args.mode, trace_path=args.trace or None, rundir=args.rundir)
    except TaskFailed as exc:  # a kernel failed: the trace holds its traceback
        sys.stderr.write(f"deepdrivemd: {exc}\n")
        return 1
    except MpiwfError as exc:
        if _rank() == 0:  # every rank gets a refused workflow; one line is enough
            sys.stderr.write(f"deepdrivemd: {exc}\n")
        return 2
    if res is None:
        return 0
    rep = report(res, args.trace)
    if args.json:
        print(json.dumps(rep))
        return 0
    print(f"deepdrivemd {args.size} {args.mode}: " + (
        f"makespan {rep['makespan']:.2f} s, {rep['tasks']} tasks, utilization cpu "
        f"{100 * rep['utilization']['cpu']:.1f} % gpu {100 * rep['utilization']['gpu']:.1f} %; "
        if args.trace else "") +
        f"max MD energy error {rep['max_energy_error']:.2e}; loss "
        + ", ".join(f"{a:.3f}->{b:.3f}" for a, b in rep["loss"])
        + f"; {rep['restarted_sims']} simulations restarted from agent picks")
    return 0


if __name__ == "__main__":
    sys.exit(main())

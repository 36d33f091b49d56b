"""``mpiwf jobscript``: render a batch script whose rank layout fits a workflow."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from . import refuse_overwrite

#: Where the GPU affinity helpers live in a source checkout.
_HELPERS = Path(__file__).resolve().parents[2] / "jobscripts"


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    from ..jobscript import SYSTEMS

    p = sub.add_parser(
        "jobscript", help="render a batch job script for a cluster",
        description="Render a job script for SYSTEM whose rank layout fits the workflow: one "
        "rank per usable core by default, ranks bound to GPUs where the system has them, "
        "checked against every task set's request. The script runs `mpiwf run` with the "
        "exact spec, mode and trace, then `mpiwf analyze` on the trace.")
    p.add_argument("spec", help="workflow spec (YAML/JSON) or WfFormat JSON")
    p.add_argument("--system", required=True, choices=sorted(SYSTEMS),
                   help="target system (slurm, pbs, flux: generic)")
    p.add_argument("--nodes", required=True, type=int, help="nodes of the job")
    p.add_argument("--walltime", required=True, help="wall-clock limit, HH:MM")
    p.add_argument("--mode", default="async", help="async (default), sequential or doa=K")
    p.add_argument("--trace", default=None,
                   help="trace path (default: <workflow name>-<system>-<job id>.h5 here; "
                   "the name defaults to the spec file's)")
    p.add_argument("--account", default=None, help="project / account / bank")
    p.add_argument("--queue", default=None, help="queue, partition or QOS")
    p.add_argument("--ranks-per-node", type=int, default=None,
                   help="MPI ranks per node (default: one per usable core)")
    p.add_argument("--cores-per-node", type=int, default=None,
                   help="cores per node (slurm, pbs, flux; default 32)")
    p.add_argument("--gpus-per-node", type=int, default=None,
                   help="GPUs per node (slurm, pbs, flux; default 0)")
    p.add_argument("--job-name", default="mpiwf", help="job name (default: %(default)s)")
    p.add_argument("--python", default=None,
                   help="interpreter the job uses (default: the one running this command)")
    p.add_argument("--format", default="auto", choices=["auto", "spec", "wfformat"],
                   help="input format (default: detect)")
    p.add_argument("-o", "--output", default=None, help="write here (default: stdout)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the exit status."""
    from ..config import parse_mode
    from ..errors import SpecError
    from ..jobscript import parse_walltime, plan, render, widest
    from ..kernels import resolve
    from ..spec import load

    parse_walltime(args.walltime)
    parse_mode(args.mode)
    if not os.path.isfile(args.spec):
        raise SpecError(args.spec, "no such file")
    wf = load(args.spec, fmt=args.format)
    wf.validate(None, check_kernels=False)
    for ts in wf.sets:  # registry names are checked here; module:function on the cluster
        if ":" not in ts.kernel:
            resolve(ts.kernel, path=f"sets.{ts.name}.kernel")
    layout = plan(wf, args.system, args.nodes, args.ranks_per_node, args.cores_per_node,
                  args.gpus_per_node)
    if args.system in ("polaris", "aurora") and \
            not (_HELPERS / f"set_affinity_gpu_{args.system}.sh").is_file():
        raise SpecError("--system", f"{_HELPERS}/set_affinity_gpu_{args.system}.sh is missing "
                        "(render from a source checkout of mpiwf)")
    if args.output:
        d = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(d):
            raise SpecError("-o", f"directory {d!r} does not exist")
        refuse_overwrite("-o", args.output, args.spec, "the spec itself")
    stem = os.path.abspath(f"{wf.name}-{args.system}")
    text = render(wf, args.system, layout, spec=os.path.abspath(args.spec),
                  walltime=args.walltime, mode=args.mode,
                  trace=os.path.abspath(args.trace) if args.trace else None,
                  account=args.account, queue=args.queue, job_name=args.job_name,
                  python=args.python or sys.executable, helper_dir=str(_HELPERS),
                  command=_command_line(args),
                  trace_stem=stem, fmt=args.format)
    if args.output:  # before the notes: a path that cannot be written is the one line
        try:  # surrogateescape: a path of bytes not UTF-8 goes into the script as it was
            with open(args.output, "w", encoding="utf-8", errors="surrogateescape") as fh:
                fh.write(text)
            os.chmod(args.output, 0o755)
        except OSError as exc:
            raise SpecError("-o", f"cannot write {args.output!r} ({exc.strerror})") from None
    if args.system == "aurora" and any(ts.gpus for ts in wf.sets):
        print("mpiwf jobscript: note: CuPy does not run on Aurora's Intel GPUs; GPU tasks "
              "must use Level Zero/SYCL code of their own (docs/clusters.md)", file=sys.stderr)
    busy = widest(wf)
    if busy < layout.workers:
        print(f"mpiwf jobscript: note: at most {busy} rank(s) of the workflow can be busy at "
              f"once; the layout has {layout.workers} workers (fewer --nodes or "
              "--ranks-per-node would do)", file=sys.stderr)
    if args.output:
        print(f"mpiwf jobscript: wrote {args.output} ({args.system}, {layout.nodes} node(s) x "
              f"{layout.ranks_per_node} ranks)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _command_line(args: argparse.Namespace) -> list[str]:
    """The options that shaped the script, as a command line (for its comment)."""
    out = ["mpiwf", "jobscript", "--system", args.system, "--nodes", str(args.nodes),
           "--walltime", args.walltime, "--mode", args.mode]
    for flag in ("trace", "account", "queue", "ranks_per_node", "cores_per_node",
                 "gpus_per_node"):
        val = getattr(args, flag)
        if val is not None:
            out += ["--" + flag.replace("_", "-"), str(val)]
    if args.job_name != "mpiwf":
        out += ["--job-name", args.job_name]
    if args.format != "auto":
        out += ["--format", args.format]
    return [*out, args.spec]

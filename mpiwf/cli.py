"""The ``mpiwf`` command line: subcommands map flags onto the library, nothing more.

Each subcommand lives in ``mpiwf/commands/<name>.py`` with ``add_parser(subparsers)``
and ``main(args) -> int``. Bad input (a :class:`~mpiwf.errors.MpiwfError`) prints
one line and exits 2; only rank 0 prints under MPI.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import NoReturn

from . import __version__
from .errors import MpiwfError

#: Subcommands, in help order.
COMMANDS = ["run", "simulate", "model", "analyze", "plot", "export", "jobscript", "doctor"]


def _rank() -> int:
    for var in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID",
                "MV2_COMM_WORLD_RANK", "JSM_NAMESPACE_RANK", "FLUX_TASK_RANK"):
        v = os.environ.get(var)
        if v is not None and v.isdigit():
            return int(v)
    return 0


def setup_logging(level: str) -> None:
    """Standard :mod:`logging` on stderr, each line tagged with the rank."""
    lvl = getattr(logging, str(level).upper(), None)
    if not isinstance(lvl, int):
        raise MpiwfError(f"--log-level: unknown level {level!r}")
    logging.basicConfig(level=lvl, stream=sys.stderr,
                        format=f"%(asctime)s mpiwf[{_rank()}] %(levelname)s %(message)s")


class _Parser(argparse.ArgumentParser):
    """Bad options are one line on stderr (not argparse's usage block), from rank 0
    only under MPI, and exit status 2."""

    def error(self, message: str) -> NoReturn:
        if _rank() == 0:
            sys.stderr.write(f"{self.prog}: error: {_printable(message)} "
                             f"(see {self.prog} -h)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    p = _Parser(prog="mpiwf", description=(
        "MPI-native master-worker executor for heterogeneous, asynchronous workflows."))
    p.add_argument("--version", action="version", version=f"mpiwf {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = importlib.import_module(f"mpiwf.commands.{name}")
        mod.add_parser(sub)
    return p


def _printable(text: str) -> str:
    """One terminal-safe line: control and bidi characters (a NUL, U+202E) escaped."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mpiwf`` and ``python -m mpiwf``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # _Parser.error already printed its one line
        return int(exc.code) if isinstance(exc.code, int) else 2
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MpiwfError as exc:
        if _rank() == 0:
            print(f"mpiwf {args.command}: error: {_printable(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0

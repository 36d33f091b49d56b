"""Exception types of mpiwf: one for bad input, one for a run that cannot go on."""

from __future__ import annotations


class MpiwfError(Exception):
    """Base class of every error mpiwf raises on purpose."""


class SpecError(MpiwfError, ValueError):
    """A workflow description is invalid.

    The message always starts with the field path that is wrong (``sets.sim.cores``,
    ``deps[3].after``), so the command line can print it as one line and exit 2.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)

    def __reduce__(self) -> tuple[type[SpecError], tuple[str, str]]:
        # rank 0 broadcasts a rejection to every rank: it must survive pickling
        return (type(self), (self.path, self.problem))


class TraceError(MpiwfError):
    """A file is not an mpiwf trace, or not a readable one."""


class RunError(MpiwfError):
    """A run could not continue (lost ranks, protocol violation, aborted)."""

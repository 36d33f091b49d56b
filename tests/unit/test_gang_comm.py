"""Multi-rank tasks' sub-communicators are made apart from the task traffic.

Open MPI (4.1) sends ``MPI_Comm_create_group``'s own messages on the parent
communicator with the caller's tag; made from the communicator tasks travel on, a
worker waiting for its next task took one of them for a task message (a pickle
error, then a hang of the gang). Under MPICH the two never meet, so this checks the
wiring without MPI: the factory must use the endpoint's ``groups`` communicator only.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from mpiwf.runner import _gang_comm_factory


class _Group:
    def __init__(self, log: list[Any], ranks: tuple[int, ...]) -> None:
        self.log, self.ranks = log, ranks

    def Incl(self, ranks: list[int]) -> _Group:  # noqa: N802 - the mpi4py name
        return _Group(self.log, tuple(ranks))

    def Free(self) -> None:  # noqa: N802
        self.log.append(("free", self.ranks))


class _Comm:
    def __init__(self) -> None:
        self.log: list[Any] = []

    def Get_group(self) -> _Group:  # noqa: N802
        return _Group(self.log, (0, 1, 2, 3))

    def Create_group(self, grp: _Group, tag: int = 0) -> str:  # noqa: N802
        self.log.append(("create", grp.ranks, tag))
        return "sub"


class _Forbidden:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"gang communicator made from the task communicator ({name})")


def test_gang_communicators_come_from_the_groups_communicator() -> None:
    groups = _Comm()
    make = _gang_comm_factory(SimpleNamespace(comm=_Forbidden(), groups=groups))  # type: ignore[arg-type]
    assert make([2, 3]) == "sub"
    # the leader's rank is the tag; both groups handles are freed
    assert groups.log == [("free", (0, 1, 2, 3)), ("create", (2, 3), 2), ("free", (2, 3))]


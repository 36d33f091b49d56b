"""What a running kernel may ask about its task: :func:`context`."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

_CURRENT: TaskContext | None = None


@dataclasses.dataclass
class TaskContext:
    """The task a kernel is running.

    Attributes:
        task: task id.
        name: task name (``set`` or ``set[i]``).
        set: set name.
        index: index of the task in its set.
        attempt: 0 for the first try.
        rank: rank running it (the leader of a multi-rank task).
        rundir: the run directory (shared by all tasks of the run).
        comm: sub-communicator of a multi-rank task (``None`` otherwise).
        gpus: GPU ids bound to this worker.
        virtual_gpu: the GPUs are virtual (layout override on a host without them).
    """

    task: int
    name: str
    set: str
    index: int
    attempt: int = 0
    rank: int = 0
    rundir: str = "."
    comm: Any = None
    gpus: tuple[int, ...] = ()
    virtual_gpu: bool = False

    def taskdir(self) -> str:
        """Per-task directory ``RUNDIR/tasks/<set>/<index>``, created on first use."""
        d = os.path.join(self.rundir, "tasks", self.set, str(self.index))
        os.makedirs(d, exist_ok=True)
        return d


def context() -> TaskContext | None:
    """The :class:`TaskContext` of the task running in this process, or ``None``."""
    return _CURRENT


def set_context(ctx: TaskContext | None) -> None:
    """Set by the worker around each kernel call."""
    global _CURRENT
    _CURRENT = ctx

"""The wire format between rank 0 and the workers: every tag and message on one screen.

All messages are pickled Python tuples (mpi4py's lowercase API), small by design.

==========  =========  ==============================================================
tag         direction  payload
==========  =========  ==============================================================
HELLO       w -> 0     reserved (worker information is gathered collectively at start)
TASKS       0 -> w     ``(setdefs, tasks)``: ``setdefs`` = list of SetDef tuples not yet
                       sent to this worker; ``tasks`` = list of TaskMsg tuples
RESULTS     w -> 0     list of Result tuples
STOP        0 -> w     ``None``: finish the queued tasks, reply BYE, leave the loop
BYE         w -> 0     ``dict`` worker statistics (tasks run, busy seconds)
CANCEL      0 -> w     ``None``: drop queued tasks (they are reported cancelled)
HEARTBEAT   w -> 0     ``None``: sent by a worker's side thread every ``heartbeat`` s
==========  =========  ==============================================================

SetDef  = (sid, name, offset, n, kernel, args, kwargs, timeout, isolate, ranks)
TaskMsg = (tid, attempt, gang_ranks or None, inputs or None), or the bare int ``tid``
          for the common case (attempt 0, one rank, no inputs): cheaper to pickle
Result  = (tid, attempt, status, started, duration, value, error)
          status: STATUS_OK, STATUS_ERROR, STATUS_TIMEOUT, STATUS_CANCELLED
          started: worker's time.time() at kernel start; duration: perf_counter span
          error: None, or (type name, message, traceback text, rank, host)
"""

from __future__ import annotations

import enum
from typing import Any

#: Largest pickled return value a task may send back (bytes); larger is an error.
MAX_RESULT_BYTES = 1 << 20

STATUS_OK = 0
STATUS_ERROR = 1
STATUS_TIMEOUT = 2
STATUS_CANCELLED = 3


class Tag(enum.IntEnum):
    """MPI tags of mpiwf's messages (on its own duplicated communicator)."""

    HELLO = 1
    TASKS = 2
    RESULTS = 3
    STOP = 4
    BYE = 5
    CANCEL = 6
    HEARTBEAT = 7


SetDef = tuple[int, str, int, int, str, tuple[Any, ...], dict[str, Any], Any, bool, int]
TaskMsg = tuple[int, int, Any, Any] | int
Result = tuple[int, int, int, float, float, Any, Any]


def setdef(ts: Any) -> SetDef:
    """The SetDef tuple of a :class:`~mpiwf.workflow.TaskSet`."""
    return (ts.sid, ts.name, ts.offset, ts.n, ts.kernel, ts.args, ts.kwargs, ts.timeout,
            ts.isolate, ts.ranks)

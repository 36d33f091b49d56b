"""The wire format between rank 0 and the workers: every tag and message on one screen.

All messages but one are pickled Python tuples (mpi4py's lowercase API), small by
design. The exception is the commonest: RESULTS_RAW carries a batch of plain results
(first attempts that succeeded and returned nothing) as raw bytes, which rank 0
receives straight into its trace buffers: no pickle, no Python object per message.

==========  =========  ==============================================================
tag         direction  payload
==========  =========  ==============================================================
HELLO       w -> 0     reserved (worker information is gathered collectively at start)
TASKS       0 -> w     ``(setdefs, tasks)``: ``setdefs`` = list of SetDef tuples not yet
                       sent to this worker; ``tasks`` = list of TaskMsg tuples
RESULTS     w -> 0     a Results batch (columns, see :func:`pack_results`)
RESULTS_RAW w -> 0     raw bytes, not pickled: the three columns of a batch of plain
                       results, each n 8-byte numbers (see :func:`pack_plain`)
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
Results = (tid, attempt, status, started, duration, values, errors): one batch of
          Result tuples as columns, the first five ``array.array`` ('q', 'i', 'b',
          'd', 'd': one buffer each on the wire, no Python object per number), then
          ``values`` and ``errors`` as tuples, or ``None`` when every one is None
          (null tasks: the common case). Rank 0 hands the timing columns of a whole
          batch to the trace at once.
Plain   = the RESULTS_RAW form of a batch whose every result has attempt 0, status
          STATUS_OK, value and error None: n task ids (int64), then n started
          (float64), then n durations (float64), in native byte order (one machine
          type per job). Every other batch travels as Results.
"""

from __future__ import annotations

import enum
from array import array
from collections.abc import Sequence
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
    RESULTS_RAW = 8


#: Columns of a RESULTS_RAW message (task id, started, duration), 8 bytes an entry each.
PLAIN_COLUMNS = 3


SetDef = tuple[int, str, int, int, str, tuple[Any, ...], dict[str, Any], Any, bool, int]
TaskMsg = tuple[int, int, Any, Any] | int
Result = tuple[int, int, int, float, float, Any, Any]


def setdef(ts: Any) -> SetDef:
    """The SetDef tuple of a :class:`~mpiwf.workflow.TaskSet`."""
    return (ts.sid, ts.name, ts.offset, ts.n, ts.kernel, ts.args, ts.kwargs, ts.timeout,
            ts.isolate, ts.ranks)


Results = tuple[array, array, array, array, array, Any, Any]


def pack_results(results: Sequence[Result]) -> Results:
    """The Results batch (columns) of a list of Result tuples (at least one)."""
    tid, att, status, started, dur, values, errors = zip(*results)
    return (array("q", tid), array("i", att), array("b", status), array("d", started),
            array("d", dur), None if all(v is None for v in values) else values,
            None if all(e is None for e in errors) else errors)


def unpack_results(batch: Results) -> list[Result]:
    """The Result tuples of a Results batch (tests and tools; rank 0 reads columns)."""
    tid, att, status, started, dur, values, errors = batch
    n = len(tid)
    vals = values if values is not None else (None,) * n
    errs = errors if errors is not None else (None,) * n
    return list(zip(tid, att, status, started, dur, vals, errs))


def pack_plain(results: Sequence[Result]) -> bytes | None:
    """The RESULTS_RAW bytes of a list of Result tuples (at least one), or ``None``
    when one of them is not plain (a retry, a failure, a value, an error)."""
    tid, att, status, started, dur, values, errors = zip(*results)
    if any(att) or any(status) or any(v is not None for v in values) or \
            any(e is not None for e in errors):  # by identity: a value may be an array
        return None
    return b"".join((array("q", tid), array("d", started), array("d", dur)))


def unpack_plain(buf: Any) -> list[Result]:
    """The Result tuples of RESULTS_RAW bytes (tests and tools)."""
    raw = memoryview(buf).cast("B")
    n = len(raw) // (8 * PLAIN_COLUMNS)
    if n * 8 * PLAIN_COLUMNS != len(raw):
        raise ValueError(f"a plain results message of {len(raw)} bytes: not whole entries")
    tid = raw[:8 * n].cast("q")
    started = raw[8 * n:16 * n].cast("d")
    dur = raw[16 * n:].cast("d")
    return [(tid[i], 0, STATUS_OK, started[i], dur[i], None, None) for i in range(n)]

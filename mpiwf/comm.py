"""Transports: how rank 0 and the workers exchange messages.

One small interface, three implementations:

* :class:`MPIEndpoint` - mpi4py on a duplicated communicator (the real thing);
* :class:`QueueHub` - threads and queues in one process (libEnsemble's ``QComm``
  idea): master and worker logic are tested without mpiexec;
* :class:`InlineEndpoint` - a 1-rank run: rank 0 runs the tasks itself.

An endpoint's :meth:`poll` never blocks; waiting is done by :class:`Backoff`, which
spins briefly then sleeps with exponential back-off (reset on traffic), so idle
ranks on an oversubscribed node leave the cores to the ranks doing work.
"""

from __future__ import annotations

import collections
import queue
import time
from collections.abc import Callable
from typing import Any

Message = tuple[int, int, Any]  # (source, tag, payload)


class Backoff:
    """Polite waiting: poll for ``spin`` seconds, then short sleeps (50 us) while the
    idle stretch is younger than ``hot`` seconds, then sleep 2x longer each time up to
    ``max_sleep``; :meth:`reset` on traffic.

    ``time.sleep(1e-6)`` really sleeps ~60 us on Linux, so the shortest sleep is 50 us.
    The ``hot`` stretch is for the gaps of fine-grained work: a worker between two
    windows of short tasks, rank 0 waiting for the last results of a layer. Doubling
    from the first sleep put a rank ~1 ms to sleep at every such gap, and a DAG of
    100 layers of 1,000 null tasks ran at half the rate of independent tasks; it
    sleeps 50 us at a time instead, and still backs off to ``max_sleep`` once the
    gap is long (every sleep gives the core away, so oversubscribed ranks still
    make way for each other).
    """

    __slots__ = ("spin", "max_sleep", "hot", "_idle_since", "_delay")

    def __init__(self, spin: float = 50e-6, max_sleep: float = 1e-3, hot: float = 2e-3) -> None:
        self.spin = spin
        self.max_sleep = max_sleep
        self.hot = hot
        self._idle_since = 0.0
        self._delay = 0.0

    def reset(self) -> None:
        """Traffic arrived: the next wait spins again."""
        self._idle_since = 0.0
        self._delay = 0.0

    def idle_for(self, now: float = 0.0) -> float:
        """Seconds since the first empty poll of the current idle stretch (0 if none);
        ``now``: a ``time.perf_counter()`` the caller already has."""
        if not self._idle_since:
            return 0.0
        return (now or time.perf_counter()) - self._idle_since

    def wait(self) -> None:
        """Called once per empty poll."""
        now = time.perf_counter()
        if self._idle_since == 0.0:
            self._idle_since = now
            return
        idle = now - self._idle_since
        if idle < self.spin:
            return
        if idle < self.hot:
            time.sleep(min(50e-6, self.max_sleep))
            return
        self._delay = min(self.max_sleep, self._delay * 2 if self._delay else 50e-6)
        time.sleep(self._delay)


class Endpoint:
    """Interface of a transport endpoint."""

    rank: int = 0
    size: int = 1
    #: ranks the transport itself reported dead (ULFM); rank 0 marks them lost
    failed: frozenset[int] = frozenset()

    #: ``(tag, ncols, reserve)`` set by :meth:`sink_raw`, or ``None``
    raw_sink: tuple[int, int, Callable[[int], tuple[Any, int]]] | None = None

    def send(self, dest: int, tag: int, obj: Any) -> None:
        """Send without blocking on the receiver."""
        raise NotImplementedError

    def send_raw(self, dest: int, tag: int, buf: bytes) -> None:
        """Send the bytes ``buf`` as they are (no pickle); the receiver's sink for
        ``tag`` (:meth:`sink_raw`) takes them."""
        self.send(dest, tag, buf)

    def sink_raw(self, tag: int, ncols: int,
                 reserve: Callable[[int], tuple[Any, int]]) -> None:
        """Receive the raw messages of ``tag`` (:meth:`send_raw`) in place: each is
        ``ncols`` columns of equal length; ``reserve(column_bytes)`` returns a
        writable buffer and a stride, and column i lands at byte ``i * stride`` of
        it. :meth:`poll` then returns ``(source, tag, column_bytes)``.

        Raises (from :meth:`poll`):
            ValueError: a message of ``tag`` is not ``ncols`` whole columns.
        """
        self.raw_sink = (tag, ncols, reserve)

    def poll(self) -> Message | None:
        """One waiting message, or ``None``; never blocks."""
        raise NotImplementedError

    def _deliver(self, m: Message | None) -> Message | None:
        """A message as :meth:`poll` returns it: a raw one copied into its sink (the
        in-process transports; MPI receives it in place)."""
        sink = self.raw_sink
        if m is None or sink is None or m[1] != sink[0]:
            return m
        src, tag, payload = m
        raw = memoryview(payload).cast("B")
        col = _column_bytes(len(raw), sink[1], tag)
        view, stride = sink[2](col)
        for i in range(sink[1]):
            view[i * stride:i * stride + col] = raw[i * col:(i + 1) * col]
        return (src, tag, col)

    def flush(self) -> None:
        """Complete every outstanding send."""

    def close(self) -> None:
        """Release the endpoint."""


def _column_bytes(nbytes: int, ncols: int, tag: int) -> int:
    col = nbytes // ncols
    if not col or col * ncols != nbytes or col % 8:
        raise ValueError(f"a raw message of {nbytes} bytes (tag {tag}) is not "
                         f"{ncols} whole columns of 8-byte numbers")
    return col


class MPIEndpoint(Endpoint):
    """mpi4py transport on communicators of its own (two ``Dup`` on entry, one for the
    task traffic, one for multi-rank tasks' sub-communicators; both freed on close).

    Sends are ``isend``; every request is kept until it completes (checked in
    batches, so the hot path does not test each one). Receives use matched probes
    (``improbe``), which are safe with many threads and pick any source.
    """

    def __init__(self, comm: Any) -> None:
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = comm.Dup()
        #: a communicator of its own for multi-rank tasks' sub-communicators: Open MPI
        #: (4.1) sends ``Create_group``'s own messages on the parent communicator with
        #: the caller's tag, where a waiting worker's wildcard probe on :attr:`comm`
        #: would take them for tasks (and fail to unpickle them). No wildcard receive
        #: is posted on it, so ULFM failures are acknowledged on :attr:`comm` alone.
        self.groups = comm.Dup()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self._reqs: list[Any] = []
        self._status = MPI.Status()
        #: committed vector datatypes of raw receives, by (column bytes, stride)
        self._types: dict[tuple[int, int], Any] = {}

    def send_raw(self, dest: int, tag: int, buf: bytes) -> None:
        # the request holds a reference to buf until it completes
        self._reqs.append(self.comm.Isend([buf, self.MPI.BYTE], dest=dest, tag=tag))
        if len(self._reqs) >= 256:
            self._prune()

    def send(self, dest: int, tag: int, obj: Any) -> None:
        self._reqs.append(self.comm.isend(obj, dest=dest, tag=tag))
        if len(self._reqs) >= 256:
            self._prune()

    def _prune(self) -> None:
        reqs = self._reqs
        done = self.MPI.Request.Testsome(reqs)
        if done:
            keep = set(range(len(reqs))) - set(done)
            self._reqs = [reqs[i] for i in sorted(keep)]

    def poll(self) -> Message | None:
        st = self._status
        try:
            msg = self.comm.improbe(source=self.MPI.ANY_SOURCE, tag=self.MPI.ANY_TAG,
                                    status=st)
        except self.MPI.Exception as exc:
            self._proc_failed(exc)
            return None
        if msg is None:
            return None
        src, tag = st.Get_source(), st.Get_tag()
        sink = self.raw_sink
        if sink is None or tag != sink[0]:
            return (src, tag, msg.recv())
        # a raw message: received straight into the sink, one column per block of
        # a vector datatype (cached by shape): no pickle, no intermediate buffer
        ncols = sink[1]
        nbytes = st.Get_count(self.MPI.BYTE)
        try:
            col = _column_bytes(nbytes, ncols, tag)
        except ValueError:
            msg.Recv([bytearray(nbytes), self.MPI.BYTE])  # not left pending
            raise
        view, stride = sink[2](col)
        dt = self._types.get((col, stride))
        if dt is None:
            dt = self.MPI.BYTE.Create_vector(ncols, col, stride).Commit()
            self._types[(col, stride)] = dt
        msg.Recv([view, 1, dt])
        return (src, tag, col)

    def _proc_failed(self, exc: Any) -> None:
        """A wildcard receive failed because a process died (ULFM, e.g. Open MPI 5 with
        ``mpiexec --with-ft ulfm``): acknowledge the failures so wildcard receives work
        again, and publish the dead ranks in :attr:`failed`. Anything else re-raises."""
        MPI = self.MPI
        proc_failed = {getattr(MPI, n, None) for n in ("ERR_PROC_FAILED",
                                                      "ERR_PROC_FAILED_PENDING")} - {None}
        if exc.Get_error_class() not in proc_failed:
            raise exc
        self.comm.Ack_failed()
        grp = self.comm.Get_failed()
        try:
            mine = self.comm.Get_group()
            ranks = MPI.Group.Translate_ranks(grp, list(range(grp.Get_size())), mine)
            mine.Free()
        finally:
            grp.Free()
        self.failed = frozenset(self.failed | {r for r in ranks if r >= 0})

    def flush(self) -> None:
        if self._reqs:
            self.MPI.Request.Waitall(self._reqs)
            self._reqs = []

    def pending_sends(self) -> int:
        """Sends not yet known to be complete."""
        if self._reqs:
            self._prune()
        return len(self._reqs)

    def close(self) -> None:
        self.flush()
        for dt in self._types.values():
            dt.Free()
        self._types = {}
        for c in (self.groups, self.comm):
            if c != self.MPI.COMM_NULL:
                c.Free()

    def barrier(self, backoff: Backoff) -> None:
        """A barrier that waits politely (``Ibarrier``, then ``Test`` with ``backoff``):
        ranks that arrive first leave the cores to the rank still working, where a
        blocking collective would spin (MPICH) while rank 0 builds the workflow or
        creates and closes the trace."""
        req = self.comm.Ibarrier()
        while not req.Test():
            backoff.wait()

    def abort(self, code: int = 1) -> None:
        """Abort the whole job (rank 0's last resort)."""
        self.comm.Abort(code)


class QueueHub:
    """In-process twin of a communicator: endpoint ``k`` is "rank" ``k``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.queues: list[queue.SimpleQueue[Message]] = [queue.SimpleQueue() for _ in range(size)]

    def endpoint(self, rank: int) -> QueueEndpoint:
        """The endpoint of ``rank``."""
        return QueueEndpoint(self, rank)


class QueueEndpoint(Endpoint):
    """One rank of a :class:`QueueHub`."""

    def __init__(self, hub: QueueHub, rank: int) -> None:
        self.hub = hub
        self.rank = rank
        self.size = hub.size

    def send(self, dest: int, tag: int, obj: Any) -> None:
        self.hub.queues[dest].put((self.rank, tag, obj))

    def poll(self) -> Message | None:
        try:
            return self._deliver(self.hub.queues[self.rank].get_nowait())
        except queue.Empty:
            return None


class InlineEndpoint(Endpoint):
    """Rank 0 of a 1-rank run: a message to "worker 0" is handled at once by
    ``handler(tag, payload)``, whose replies come back through :meth:`poll`."""

    def __init__(self, handler: Callable[[int, Any], list[tuple[int, Any]]]) -> None:
        self.handler = handler
        self.inbox: collections.deque[Message] = collections.deque()

    def send(self, dest: int, tag: int, obj: Any) -> None:
        for rtag, payload in self.handler(tag, obj):
            self.inbox.append((0, rtag, payload))

    def poll(self) -> Message | None:
        return self._deliver(self.inbox.popleft()) if self.inbox else None

"""Rank 0's CPU per task with a fake in-process transport (no MPI, no workers).

Launch::

    .venv/bin/python benchmarks/master_cost.py                 # trace on
    .venv/bin/python benchmarks/master_cost.py --no-trace
    .venv/bin/python benchmarks/master_cost.py --src /tmp/v-<commit>   # another version

The endpoint answers every task message at once with results in groups of 16
(``--group``), so
what is timed (``time.process_time``) is the master alone: scheduler, message
building, result handling and the HDF5 trace. CPU time is steady on a shared
machine where wall-clock rates are not.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from array import array
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv: list[str] | None = None) -> int:
    """Run the master over a fake transport; print microseconds of CPU per task."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", default=os.path.dirname(HERE), help="directory holding mpiwf/")
    p.add_argument("--tasks", type=int, default=200_000)
    p.add_argument("--no-trace", action="store_true")
    p.add_argument("--group", type=int, default=16,
                   help="results per message (real runs: up to the result batch, 64)")
    a = p.parse_args(argv)
    sys.path.insert(0, a.src)
    from mpiwf import Config, Workflow
    from mpiwf.comm import Endpoint
    from mpiwf.master import Master
    from mpiwf.protocol import Tag

    try:
        from mpiwf.protocol import pack_results  # noqa: F401
        columnar = True
    except ImportError:  # a version from before columnar result batches
        columnar = False
    raw = hasattr(Tag, "RESULTS_RAW")  # plain results travel as raw bytes
    g = a.group
    zi, zb, dur = array("i", [0] * g), array("b", [0] * g), array("d", [1e-6] * g)

    def results(ids: list[int], now: float) -> Any:
        """What a worker sends for ``ids``, built as cheaply as the version allows
        (the fake's own cost is counted too, so it must stay small)."""
        if not columnar:
            return [(t, 0, 0, now, 1e-6, None, None) for t in ids]
        k = len(ids)
        if raw:
            return b"".join((array("q", ids), array("d", [now]) * k, dur[:k]))
        return (array("q", ids), zi[:k], zb[:k], array("d", [now]) * k, dur[:k], None, None)
    from mpiwf.resources import uniform_workers
    from mpiwf.trace import TraceWriter

    class FakeEndpoint(Endpoint):
        """Workers that finish every task the moment it is sent."""

        def __init__(self) -> None:
            self.inbox: collections.deque[tuple[int, int, Any]] = collections.deque()

        def send(self, dest: int, tag: int, obj: Any) -> None:
            if tag == Tag.TASKS:
                now = time.time()
                ids = [m if isinstance(m, int) else m[0] for m in obj[1]]
                for i in range(0, len(ids), g):
                    self.inbox.append((dest, Tag.RESULTS_RAW if raw else Tag.RESULTS,
                                       results(ids[i:i + g], now)))
            elif tag == Tag.STOP:
                self.inbox.append((dest, Tag.BYE, {}))

        def poll(self) -> tuple[int, int, Any] | None:
            if not self.inbox:
                return None
            m = self.inbox.popleft()
            return self._deliver(m) if raw else m  # a raw message into rank 0's buffers

    wf = Workflow("master_cost")
    wf.add_set("null", a.tasks, "noop", duration=1e-6)
    workers = uniform_workers(1, 3)
    with tempfile.TemporaryDirectory() as tmp:
        trace = None if a.no_trace else TraceWriter(os.path.join(tmp, "m.h5"), wf, workers)
        m = Master(wf, Config(progress_interval=0), FakeEndpoint(), workers, trace)
        t = time.process_time()
        s = m.run()
        if trace is not None:
            trace.close()
        cpu = time.process_time() - t
    assert s.done == a.tasks
    print(f"{os.path.basename(os.path.abspath(a.src))} trace={'off' if a.no_trace else 'on'} "
          f"master_cpu_us_per_task={cpu / a.tasks * 1e6:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

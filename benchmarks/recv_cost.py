"""Rank 0's cost to receive one results message: pickled columns against raw bytes.

Launch::

    mpiexec -n 2 .venv/bin/python benchmarks/recv_cost.py [--messages N] [--size K]

Rank 1 sends ``--messages`` messages of ``--size`` (64) null-task results as fast as
it can, first as the pickled Results columns mpiwf sends for a batch with values or
errors (``protocol.pack_results``), then as the raw bytes of a plain batch
(``protocol.pack_plain``). Rank 0 receives them the way ``MPIEndpoint.poll`` does
(matched probe; ``recv`` of the pickle, or ``Recv`` of the raw bytes into three
columns of one buffer through a vector datatype) and prints its CPU time per
message for each.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: list[str] | None = None) -> int:
    """Send and receive both kinds; rank 0 prints a line per kind."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--size", type=int, default=64)
    a = p.parse_args(argv)
    import numpy as np
    from mpi4py import MPI

    from mpiwf.protocol import STATUS_OK, pack_plain, pack_results

    comm = MPI.COMM_WORLD
    if comm.size != 2:
        if comm.rank == 0:
            sys.stderr.write("recv_cost.py: run it on exactly 2 ranks\n")
        return 2
    n, k, cap = a.messages, a.size, 1 << 16
    res = [(t, 0, STATUS_OK, time.time(), 1e-6, None, None) for t in range(k)]
    for kind, payload in (("pickled", pack_results(res)), ("raw", pack_plain(res))):
        comm.Barrier()
        if comm.rank == 1:
            reqs = []
            for _ in range(n):
                reqs.append(comm.isend(payload, 0, 3) if kind == "pickled" else
                            comm.Isend([payload, MPI.BYTE], 0, 3))
                if len(reqs) >= 256:
                    MPI.Request.Waitall(reqs)
                    reqs = []
            MPI.Request.Waitall(reqs)
            continue
        cols = np.empty(3 * cap)
        view = memoryview(cols).cast("B")
        types: dict[int, object] = {}
        st = MPI.Status()
        pos = got = 0
        c0 = time.process_time()
        while got < n:
            msg = comm.improbe(MPI.ANY_SOURCE, MPI.ANY_TAG, st)
            if msg is None:
                continue
            if kind == "pickled":
                msg.recv()
            else:
                col = st.Get_count(MPI.BYTE) // 3
                dt = types.get(col)
                if dt is None:
                    dt = types[col] = MPI.BYTE.Create_vector(3, col, 8 * cap).Commit()
                if pos + col // 8 > cap:
                    pos = 0
                msg.Recv([view[8 * pos:], 1, dt])
                pos += col // 8
            got += 1
        cpu = time.process_time() - c0
        for dt in types.values():
            dt.Free()  # type: ignore[attr-defined]
        print(f"{kind}: rank 0 CPU {cpu / n * 1e6:.2f} us per message of {k} results",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

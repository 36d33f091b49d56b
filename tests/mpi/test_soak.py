"""Short soak under mpiexec: start/stop cycles (clean, stop, failure, timeout, fail-fast)
back to back on one communicator; the full 100-cycle version is scripts/soak.py."""

from __future__ import annotations

import importlib.util
import logging
import os

from mpi4py import MPI

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("mpiwf_soak",
                                               os.path.join(ROOT, "scripts", "soak.py"))
assert _spec is not None and _spec.loader is not None
soak = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(soak)


def test_start_stop_cycles_no_hang(comm: MPI.Comm, shared_dir: str) -> None:
    logging.disable(logging.WARNING)
    try:
        kinds = [soak.cycle(i, comm, shared_dir) for i in range(10)]
    finally:
        logging.disable(logging.NOTSET)
    assert sorted(set(kinds)) == ["clean", "fail", "failfast", "stop", "timeout"]

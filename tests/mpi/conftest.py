"""MPI test tier: run under ``mpiexec -n N python -m mpi4py -m pytest tests/mpi``.

Every rank runs every test (the runs are collective); rank 0 asserts on the results.
Ranks other than 0 print nothing, so the output is one pytest report
(``MPIWF_TEST_ALL_RANKS=1`` lets every rank report: a failure on a worker rank).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
from mpi4py import MPI


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Only rank 0 reports; a failure on any rank still aborts the job (mpi4py -m)."""
    if MPI.COMM_WORLD.Get_rank() != 0 and os.environ.get("MPIWF_TEST_ALL_RANKS") != "1":
        rep = config.pluginmanager.getplugin("terminalreporter")
        if rep is not None:
            config.pluginmanager.unregister(rep)


@pytest.fixture
def comm() -> MPI.Comm:
    """COMM_WORLD (mpiwf duplicates it)."""
    return MPI.COMM_WORLD


@pytest.fixture
def shared_dir(comm: MPI.Comm) -> Iterator[str]:
    """A directory every rank sees under the same name (made by rank 0)."""
    d = tempfile.mkdtemp(prefix="mpiwf-test-") if comm.Get_rank() == 0 else None
    d = comm.bcast(d, root=0)
    yield d
    comm.Barrier()
    if comm.Get_rank() == 0:
        shutil.rmtree(d, ignore_errors=True)

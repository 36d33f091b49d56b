"""Kernels for the reliability tests (imported by worker ranks via PYTHONPATH)."""

from __future__ import annotations

import os
import signal
import tempfile
import time


def _signal_once(marker: str, sig: int, seconds: float, before: float = 0.0) -> int:
    """Send ``sig`` to this process the first time (creating ``marker``), ``before``
    seconds after the start; later sleep ``seconds``."""
    if not os.path.exists(marker):
        time.sleep(before)
        with open(marker, "w") as fh:
            fh.write(str(os.getpid()))
        os.kill(os.getpid(), sig)
    time.sleep(seconds)
    return os.getpid()


def die_once(marker: str, seconds: float = 0.0, before: float = 0.0) -> int:
    """SIGKILL this process the first time (creating ``marker``), ``before`` seconds
    after the start; later just sleep ``seconds``."""
    return _signal_once(marker, signal.SIGKILL, seconds, before)


def busy_python(seconds: float) -> int:
    """Pure-Python loop for ``seconds`` (interruptible by the timeout timer)."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def hang() -> None:
    """Sleep for an hour (a task only a timeout ends)."""
    time.sleep(3600)


def pid_sleep(piddir: str, seconds: float) -> int:
    """Record this worker's pid in ``piddir`` (for an outside ``kill -9``), then sleep."""
    os.makedirs(piddir, exist_ok=True)
    open(os.path.join(piddir, str(os.getpid())), "w").close()
    time.sleep(seconds)
    return os.getpid()


def launcher_env() -> list[str]:
    """Names of MPI launcher variables this process sees."""
    return sorted(k for k in os.environ if k.startswith(("PMI_", "PMIX_", "OMPI_", "HYDI_")))


def stop_once(marker: str, seconds: float = 0.0) -> int:
    """SIGSTOP this process the first time (a hung worker: alive, silent); later sleep."""
    return _signal_once(marker, signal.SIGSTOP, seconds)


def fail_unless(path: str) -> str:
    """Fail until ``path`` exists (an input the user provides before resuming)."""
    if not os.path.exists(path):
        raise RuntimeError(f"input missing: {path}")
    return path


def count_run(rundir: str, tag: str) -> int:
    """Leave one new file in ``rundir`` per execution (to count how often tasks ran)."""
    os.makedirs(rundir, exist_ok=True)
    fd, _ = tempfile.mkstemp(prefix=f"{tag}-", dir=rundir)
    os.close(fd)
    return os.getpid()


def interrupt() -> None:
    """Raise KeyboardInterrupt (a kernel's own, not a signal)."""
    raise KeyboardInterrupt("kernel gave up")


def gang_wait(seconds: float) -> int:
    """A multi-rank task out of balance: member 1 computes (sleeps) ``seconds`` while
    the others wait for it in mpi4py's pickle-based ``allreduce``."""
    import mpiwf

    comm = mpiwf.context().comm
    if comm.Get_rank() == 1:
        time.sleep(seconds)
    return int(comm.allreduce(1))


def inputs_unless(path: str, inputs: list | None = None) -> list | None:
    """Fail until ``path`` exists; then return the parents' values it was given."""
    if not os.path.exists(path):
        raise RuntimeError(f"input missing: {path}")
    if inputs is None or any(v is None for v in inputs):
        raise RuntimeError(f"inputs missing: {inputs}")
    return inputs


def gang_stop_member(marker: str, seconds: float) -> int:
    """A multi-rank task whose member 1 hangs (SIGSTOPs itself, its pid in ``marker``)
    while member 0 returns after ``seconds``, waiting for no one."""
    import mpiwf

    if mpiwf.context().comm.Get_rank() == 1:
        with open(marker, "w") as fh:
            fh.write(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGSTOP)
    time.sleep(seconds)
    return 0

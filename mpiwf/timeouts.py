"""Per-set task timeouts on the worker: an interval timer, or a child process to kill.

Two mechanisms, chosen by the set:

* ``isolate: false`` (default) - the kernel runs in the worker's main thread under
  ``signal.setitimer(ITIMER_REAL)``; when the timer fires, the SIGALRM handler
  raises :class:`TaskTimeout` inside the kernel. That interrupts Python code and
  blocking calls that return to the interpreter (``time.sleep``, ``subprocess``
  waits - :func:`run_command` then kills the executable's process group), but not a
  long C call that never returns to Python (one NumPy call, a GPU kernel): the
  timeout is then noticed when that call returns, and the task is still recorded as
  timed out. Off the main thread (the in-process test transport) no timer is set
  and only the after-the-fact check applies.
* ``isolate: true`` - the kernel runs in a fresh child process (``spawn``: no MPI
  state is inherited); on timeout the child is killed (SIGKILL), so any kernel can
  be stopped. The return value comes back through a pipe (it must be picklable).

Either way the worker stays usable and the task's result has status
``STATUS_TIMEOUT`` (trace status 8, ``timeout``).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any


class TaskTimeout(Exception):
    """A task ran past its set's ``timeout``."""


def _alarm(_signum: int, _frame: Any) -> None:
    raise TaskTimeout("timed out")


def call_with_timeout(fn: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any],
                      timeout: float | None, isolate: bool, kernel: str = "") -> Any:
    """Call ``fn(*args, **kwargs)`` and stop it after ``timeout`` seconds.

    Args:
        fn: the kernel.
        args: positional arguments.
        kwargs: keyword arguments.
        timeout: seconds (``None``: no limit).
        isolate: run in a child process that is killed on timeout.
        kernel: the kernel's reference (registry name or ``module:function``), which
            the child process resolves again.

    Returns:
        The kernel's return value.

    Raises:
        TaskTimeout: the time ran out.
        Exception: whatever the kernel raised (re-raised in the worker).
    """
    if isolate:
        return _call_isolated(kernel, args, kwargs, timeout)
    if timeout is None:
        return fn(*args, **kwargs)
    main = threading.current_thread() is threading.main_thread()
    old: Any = None
    if main:
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    t0 = time.perf_counter()
    try:
        value = fn(*args, **kwargs)
    finally:
        if main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    if time.perf_counter() - t0 > timeout:
        raise TaskTimeout(f"ran {time.perf_counter() - t0:.3f} s, past its {timeout:g} s "
                          "timeout (the kernel could not be interrupted)")
    return value


class _ChildError(Exception):
    """An exception raised in an isolated child, carried back as text."""


#: Launcher variables an isolated child must not see: a kernel module that imports
#: mpi4py there starts a 1-rank MPI of its own instead of joining the parent's job.
_LAUNCHER_PREFIXES = ("PMI_", "PMIX_", "OMPI_", "HYDRA_", "HYDI_", "PRTE_", "MPI_LOCALRANKID",
                      "MPI_LOCALNRANKS")


def _child(conn: Any, kernel: str, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
    import traceback

    for k in [k for k in os.environ if k.startswith(_LAUNCHER_PREFIXES)]:
        del os.environ[k]
    from .kernels import resolve

    try:
        value = resolve(kernel)(*args, **kwargs)
        conn.send(("ok", value))
    except BaseException as exc:  # report everything; the parent decides
        conn.send(("error", (type(exc).__name__, str(exc), traceback.format_exc())))
    finally:
        conn.close()


def _call_isolated(kernel: str, args: Sequence[Any], kwargs: dict[str, Any],
                   timeout: float | None) -> Any:
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, kernel, tuple(args), dict(kwargs)),
                       daemon=True)
    proc.start()
    send.close()
    try:
        if not recv.poll(timeout):
            raise TaskTimeout(f"killed after {timeout:g} s (isolated child pid {proc.pid})")
        try:
            kind, payload = recv.recv()
        except EOFError:
            proc.join(5)
            raise RuntimeError(f"isolated child died (exit code {proc.exitcode})") from None
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        recv.close()
    if kind == "ok":
        return payload
    etype, msg, tb = payload
    raise _ChildError(f"{etype}: {msg}\n--- child traceback ---\n{tb}")


def run_command(*argv: Any, check: bool = True, **_ignored: Any) -> int:
    """Run an executable (the ``exec`` kernel); on a timeout or any interruption its
    whole process group is killed, so nothing it started outlives the task.

    Args:
        argv: the command and its arguments (no shell).
        check: raise if the exit status is not 0.

    Returns:
        The exit status.

    Raises:
        RuntimeError: non-zero exit status (with ``check``).
    """
    if not argv:
        raise ValueError("exec needs a command")
    proc = subprocess.Popen([str(a) for a in argv], start_new_session=True)
    try:
        rc = proc.wait()
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        raise
    if check and rc != 0:
        raise RuntimeError(f"{argv[0]} exited with status {rc}")
    return rc

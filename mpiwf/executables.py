"""Executables as tasks: the ``exec`` kernel runs a program with the worker's binding.

``kernel: exec, args: [program, arg1, ...]`` runs ``program`` as a subprocess (no
shell) with the worker's binding in its environment (``OMP_NUM_THREADS``, the visible
GPUs, ``MPIWF_CORES``, ``MPIWF_GPUS``, ``MPIWF_VIRTUAL_GPU``) and the task's identity
(``MPIWF_TASK``, ``MPIWF_TASK_NAME``, ``MPIWF_RUNDIR``). Its stdout and stderr go to
files in the task's directory ``RUNDIR/tasks/<set>/<index>/``; exit status 0 is
*done*, anything else fails the task with the status and the last stderr line.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping
from typing import Any

from .binding import binding_env
from .context import context
from .kernels import register


class ExecError(RuntimeError):
    """The executable exited with a non-zero status, timed out or could not start."""


def _tail(path: str, limit: int = 300) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4096))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:limit] if lines else ""


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


@register("exec")
def run_executable(*argv: Any, env: Mapping[str, Any] | None = None, cwd: str | None = None,
                   timeout: float | None = None) -> dict[str, Any]:
    """Run ``argv`` as a subprocess with the worker's binding; fail on non-zero exit.

    Args:
        argv: the program and its arguments (no shell; each item is converted to str).
        env: extra environment entries.
        cwd: working directory (default: the task's directory).
        timeout: seconds before the program is killed (the task then fails).

    Returns:
        ``{"returncode": 0, "stdout": path, "stderr": path}``.

    Raises:
        ExecError: empty argv, a program that cannot start, a timeout, or a non-zero
            exit status.
    """
    if not argv:
        raise ExecError("exec needs the program to run as its first argument")
    args = [str(a) for a in argv]
    ctx = context()
    outdir = ctx.taskdir() if ctx is not None else os.getcwd()
    suffix = f".{ctx.attempt}" if ctx is not None and ctx.attempt else ""
    out_path = os.path.join(outdir, "stdout" + suffix)
    err_path = os.path.join(outdir, "stderr" + suffix)
    full = dict(os.environ)
    full.update(binding_env())
    if ctx is not None:
        full.update({"MPIWF_TASK": str(ctx.task), "MPIWF_TASK_NAME": ctx.name,
                     "MPIWF_RUNDIR": os.path.abspath(ctx.rundir)})
    if env:
        full.update({str(k): str(v) for k, v in env.items()})
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        try:
            # its own session: a timeout or a stop kills everything the program started
            proc = subprocess.Popen(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    env=full, cwd=cwd or outdir, start_new_session=True)
        except FileNotFoundError:
            raise ExecError(f"{args[0]}: no such program") from None
        except PermissionError:
            raise ExecError(f"{args[0]}: permission denied") from None
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise ExecError(f"{args[0]}: killed after {timeout} s") from None
        except BaseException:  # the task's own timeout (mpiwf.timeouts) or a stop
            _kill_group(proc)
            raise
    if rc != 0:
        last = _tail(err_path)
        raise ExecError(f"{args[0]} exited with status {rc}"
                        + (f": {last}" if last else "") + f" (stderr: {err_path})")
    return {"returncode": 0, "stdout": out_path, "stderr": err_path}

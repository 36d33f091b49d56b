"""The batch job a run is part of: scheduler, job id, walltime, and its variables.

Pure: reads only the mapping it is given (``os.environ`` by default), never runs a
scheduler command and never imports mpi4py. :func:`collect` is what ``mpiwf run``
records in the trace's run attributes (``batch``); :func:`batch_rows` is what
``mpiwf doctor`` prints (:func:`doctor_section` in its section format).

Where the walltime comes from:

* Slurm exports ``SLURM_JOB_START_TIME`` and ``SLURM_JOB_END_TIME`` (epoch seconds)
  to the batch script and its steps (recent Slurm versions); the limit is their
  difference and the end time tells how much is left.
* Torque exports ``PBS_WALLTIME`` (seconds). PBS Professional, LSF and Flux export
  no limit; there it is recorded as unknown (``qstat -f``, ``bjobs -l`` and
  ``flux job timeleft`` show it, but this module runs no commands).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

#: Variable prefixes of the batch systems, in the order they are reported.
PREFIXES = ("SLURM_", "PBS_", "LSB_", "FLUX_")

#: Variable holding the job id, by scheduler; the first present decides the scheduler.
#: Flux first: a Flux instance may run inside a Slurm or PBS job, and then Flux is
#: what launched the ranks.
JOB_ID = (("flux", "FLUX_JOB_ID"), ("slurm", "SLURM_JOB_ID"), ("pbs", "PBS_JOBID"),
          ("lsf", "LSB_JOBID"))

#: Longest value kept (e.g. PBS_O_PATH can be long); longer ones are cut and marked.
MAX_VALUE = 1024
#: Most variables kept; a job rarely has more than ~100.
MAX_VARS = 400


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def batch_vars(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``SLURM_*``, ``PBS_*``, ``LSB_*`` and ``FLUX_*`` variables, sorted by name.

    Args:
        environ: the environment (default ``os.environ``).

    Returns:
        Name -> value, at most :data:`MAX_VARS` entries, values cut to :data:`MAX_VALUE`
        characters (ending in ``...``).
    """
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for name in sorted(k for k in env if k.startswith(PREFIXES)):
        if len(out) >= MAX_VARS:
            break
        val = env[name]
        out[name] = val if len(val) <= MAX_VALUE else val[:MAX_VALUE - 3] + "..."
    return out


def collect(environ: Mapping[str, str] | None = None, now: float | None = None) -> dict[str, Any]:
    """What is known of the batch job this process runs in.

    Args:
        environ: the environment (default ``os.environ``).
        now: the current time, epoch seconds (default ``time.time()``).

    Returns:
        A JSON-ready dict: ``scheduler`` (``slurm``, ``pbs``, ``lsf``, ``flux`` or
        ``None`` outside a job), ``job_id``, ``walltime_s`` (the limit, or ``None``),
        ``end_time`` (epoch seconds, or ``None``), ``remaining_s`` (at ``now``, or
        ``None``), ``walltime_source`` (the variables used) and ``vars`` (see
        :func:`batch_vars`).
    """
    env = os.environ if environ is None else environ
    t = time.time() if now is None else now
    scheduler = job_id = None
    for name, var in JOB_ID:
        if env.get(var):
            scheduler, job_id = name, env[var]
            break
    walltime = end = None
    source = None
    start, stop = _int(env.get("SLURM_JOB_START_TIME")), _int(env.get("SLURM_JOB_END_TIME"))
    if stop is not None:
        end = float(stop)
        source = "SLURM_JOB_END_TIME"
        if start is not None and stop >= start:
            walltime = float(stop - start)
            source = "SLURM_JOB_END_TIME - SLURM_JOB_START_TIME"
    elif _int(env.get("PBS_WALLTIME")) is not None:
        walltime = float(_int(env.get("PBS_WALLTIME")) or 0)
        source = "PBS_WALLTIME"
    return {"scheduler": scheduler, "job_id": job_id, "walltime_s": walltime, "end_time": end,
            "remaining_s": None if end is None else max(0.0, end - t),
            "walltime_source": source, "vars": batch_vars(env)}


def hms(seconds: float | None) -> str:
    """``H:MM:SS`` (``unknown`` for ``None``)."""
    if seconds is None:
        return "unknown"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def batch_rows(info: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """Rows ``(key, value)`` describing the batch job, for ``mpiwf doctor``.

    Args:
        info: from :func:`collect` (default: collected now from ``os.environ``), or a
            trace's ``batch`` run attribute.

    Returns:
        ``batch scheduler``, ``job id``, ``walltime``, ``time left`` and ``batch
        variables`` (how many, by prefix); outside a job only the first, ``none``.
    """
    b = collect() if info is None else info
    if not b.get("scheduler") and not b.get("vars"):
        return [("batch scheduler", "none (not inside a batch job)")]
    rows = [("batch scheduler", str(b.get("scheduler") or "unknown")),
            ("job id", str(b.get("job_id") or "unknown"))]
    src = b.get("walltime_source")
    rows.append(("walltime", hms(b.get("walltime_s")) + (f" (from {src})" if src else
                                                          " (the scheduler exports no limit)")))
    if b.get("end_time") is not None:
        rows.append(("time left", hms(b.get("remaining_s"))))
    counts = {p: sum(1 for k in b.get("vars", {}) if k.startswith(p)) for p in PREFIXES}
    rows.append(("batch variables", ", ".join(f"{n} {p}*" for p, n in counts.items() if n)
                 or "none"))
    return rows


def doctor_section(report: Mapping[str, Any] | None = None) -> list[tuple[str, str, str]]:
    """:func:`batch_rows` as ``("batch", key, value)`` rows: a ``mpiwf doctor`` section.

    Doctor's sections are functions ``f(report) -> [(section, item, value)]``; this one
    ignores the report and reads this process's environment (rank 0's, where doctor
    prints), so wiring it is ``SECTIONS.append(doctor_section)``.
    """
    del report
    return [("batch", key, value) for key, value in batch_rows()]


__all__ = ["PREFIXES", "batch_rows", "batch_vars", "collect", "doctor_section", "hms"]

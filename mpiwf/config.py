"""The one configuration object of a run, and the one reader of ``MPIWF_*`` variables."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from .errors import SpecError

#: Environment variables read by :func:`from_env`, with the field they set.
ENV_FIELDS = {
    "MPIWF_MODE": "mode",
    "MPIWF_PREFETCH": "prefetch",
    "MPIWF_BATCH": "batch",
    "MPIWF_LOOKAHEAD": "lookahead",
    "MPIWF_POLL_SPIN": "poll_spin",
    "MPIWF_POLL_MAX_SLEEP": "poll_max_sleep",
    "MPIWF_POLL_HOT": "poll_hot",
    "MPIWF_TRACE_FLUSH": "trace_flush",
    "MPIWF_RUNDIR": "rundir",
    "MPIWF_LOG_LEVEL": "log_level",
    "MPIWF_PROGRESS": "progress_interval",
    "MPIWF_SHORT_TASK": "short_task",
    "MPIWF_HEARTBEAT": "heartbeat",
    "MPIWF_HEARTBEAT_TIMEOUT": "heartbeat_timeout",
    "MPIWF_RESULT_BATCH": "result_batch",
    "MPIWF_RESULT_FLUSH": "result_flush",
    "MPIWF_TRACE_THREAD": "trace_thread",
}


def parse_mode(mode: str) -> tuple[str, int]:
    """Split ``async``, ``sequential`` or ``doa=K`` into a name and a stage window.

    Returns:
        ``("async", 0)`` (no window), ``("sequential", 1)`` or ``("doa", K)``.

    Raises:
        SpecError: the mode is none of these.
    """
    m = mode.strip().lower()
    if m in ("async", "asynchronous", "streaming"):
        return "async", 0
    if m in ("sequential", "seq", "stages"):
        return "sequential", 1
    if m.startswith("doa="):
        try:
            k = int(m[4:])
        except ValueError:
            raise SpecError("mode", f"doa=K needs a whole number K, got {mode!r}") from None
        if k < 1:
            raise SpecError("mode", f"doa=K needs K >= 1, got {k}")
        return ("sequential", 1) if k == 1 else ("doa", k)
    raise SpecError("mode", f"unknown mode {mode!r} (use async, sequential or doa=K)")


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of one run; validated on creation.

    Attributes:
        mode: ``async``, ``sequential`` or ``doa=K``.
        prefetch: tasks a worker may hold beyond the one it runs (short tasks only).
        batch: most short tasks a worker may hold when their estimate is tiny (the
            scheduler's deep window: up to ``lookahead`` seconds of their work, at
            least ``1 + prefetch``); they travel many per message. A set with no
            estimate (duration 0) gets at most ``scheduler.UNKNOWN_BATCH`` (256).
        lookahead: seconds of short work a worker may hold in its queue. Enough to
            cover rank 0's reply time, so workers never run dry between refills: on
            an oversubscribed node rank 0 may wait a scheduler time slice (ms).
        short_task: a set whose estimated duration is at most this (seconds) may be
            prefetched and batched; longer tasks go only to idle workers.
        poll_spin: seconds an idle loop polls before it starts to sleep.
        poll_max_sleep: cap of the idle loop's exponential back-off, seconds.
        poll_hot: seconds of an idle stretch spent in short (50 us) sleeps before the
            back-off grows: the gaps between windows of fine-grained tasks stay cheap.
        trace_flush: seconds between trace flushes (rows are also flushed every 65536).
        rundir: directory for per-task files and executables' output.
        log_level: a :mod:`logging` level name.
        progress_interval: seconds between progress lines (0 turns them off).
        time_scale: factor applied to every ``sleep``/``spin`` duration and estimate.
        validate: check the scheduler's invariants after every event (slow; tests).
        heartbeat: seconds between a worker's heartbeats to rank 0 (0: none).
        heartbeat_timeout: a worker silent this long (no heartbeat) is lost.
        result_batch: a worker sends its results once this many are waiting.
        result_flush: a worker sends its results once the kernels run since its last
            send took this long (seconds of their own durations).
        trace_thread: ``on``: rank 0 builds and writes trace rows in a writer thread;
            ``off`` (the default): in its main loop; ``auto``: a thread when rank 0 may
            run on more CPUs than there are ranks on its node (a spare core for the
            thread). With a spare core it showed no consistent gain
            (benchmarks/README.md), and without it a killed process loses no flushes
            handed to the thread, hence off.
    """

    mode: str = "async"
    prefetch: int = 4
    batch: int = 1024
    lookahead: float = 0.01
    short_task: float = 0.05
    poll_spin: float = 50e-6
    poll_max_sleep: float = 1e-3
    poll_hot: float = 2e-3
    trace_flush: float = 1.0
    rundir: str = "mpiwf-run"
    log_level: str = "WARNING"
    progress_interval: float = 10.0
    time_scale: float = 1.0
    validate: bool = False
    heartbeat: float = 5.0
    heartbeat_timeout: float = 120.0
    result_batch: int = 64
    result_flush: float = 0.002
    trace_thread: str = "off"

    def __post_init__(self) -> None:
        parse_mode(self.mode)
        if self.prefetch < 0:
            raise SpecError("prefetch", f"must be >= 0, got {self.prefetch}")
        for name in ("batch", "result_batch"):
            if getattr(self, name) < 1:
                raise SpecError(name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("lookahead", "short_task", "poll_spin", "poll_max_sleep", "poll_hot",
                     "trace_flush", "progress_interval", "heartbeat", "heartbeat_timeout",
                     "result_flush"):
            if not getattr(self, name) >= 0:  # NaN too
                raise SpecError(name, f"must be >= 0, got {getattr(self, name)}")
        if self.trace_thread not in ("auto", "on", "off"):
            raise SpecError("trace_thread", f"must be auto, on or off, got {self.trace_thread!r}")
        if not 0 < self.time_scale < float("inf"):  # inf: every sleep would never end
            raise SpecError("time_scale", f"must be a finite number > 0, got {self.time_scale}")

    @property
    def window(self) -> int:
        """Stage window: 0 = unbounded (async), 1 = sequential, K = doa=K."""
        return parse_mode(self.mode)[1]

    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def from_env(environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
    """Build a :class:`Config` from ``MPIWF_*`` variables, then apply ``overrides``.

    Overrides whose value is ``None`` are ignored, so a CLI can pass every flag.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(Config)}
    for var, name in ENV_FIELDS.items():
        if var in env and env[var] != "":
            default: Any = fields[name].default
            try:
                values[name] = env[var] if isinstance(default, str) else type(default)(env[var])
            except ValueError:
                raise SpecError(var, f"cannot read {env[var]!r} as {type(default).__name__}") \
                    from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Config(**values)

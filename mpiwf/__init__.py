"""mpiwf: an MPI-native master-worker executor for heterogeneous, asynchronous workflows."""

from __future__ import annotations

__version__ = "0.1.0"

from .config import Config, from_env, parse_mode
from .context import TaskContext, context
from .errors import MpiwfError, RunError, SpecError, TraceError
from .kernels import register, resolve
from .resources import WorkerSpec, uniform_workers
from .scheduler import STATE_NAMES, Scheduler
from .spec import from_dict, load
from .workflow import TaskSet, Workflow

__all__ = [
    "Config", "MpiwfError", "RunError", "STATE_NAMES", "Scheduler", "SpecError", "TaskContext",
    "TaskSet", "TraceError", "WorkerSpec", "Workflow", "__version__", "context", "from_dict",
    "from_env", "load", "parse_mode", "register", "resolve", "uniform_workers",
]

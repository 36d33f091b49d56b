"""Kernel registry and built-in kernels.

A kernel is a plain Python callable. A spec names it by registry name (``sleep``) or
as ``module:function``; nothing else is ever executed, so a spec can run only code
that is installed or on ``PYTHONPATH``. A kernel that needs to know which task it
runs calls :func:`mpiwf.context`.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

from .errors import SpecError

Kernel = Callable[..., Any]

_REGISTRY: dict[str, Kernel] = {}
_SCALABLE: set[str] = set()
_CACHE: dict[str, Kernel] = {}


def register(name: str, fn: Kernel | None = None, *, scalable: bool = False) -> Any:
    """Register a kernel under ``name`` (usable as a decorator).

    Args:
        name: registry name used in specs.
        fn: the callable; omitted when used as ``@register("name")``.
        scalable: its first argument is a duration in seconds, scaled by
            ``--time-scale``.
    """
    def deco(f: Kernel) -> Kernel:
        _REGISTRY[name] = f
        _CACHE.pop(name, None)
        if scalable:
            _SCALABLE.add(name)
        return f
    return deco(fn) if fn is not None else deco


def scalable(name: str) -> bool:
    """Whether ``name``'s first argument is a duration that ``--time-scale`` scales."""
    return name in _SCALABLE


def registered() -> list[str]:
    """Names in the registry."""
    return sorted(_REGISTRY)


def resolve(ref: str, path: str = "kernel") -> Kernel:
    """The callable behind a registry name or ``module:function``.

    Raises:
        SpecError: unknown name, module that does not import, or a missing or
            non-callable attribute.
    """
    fn = _CACHE.get(ref)
    if fn is not None:
        return fn
    if ref in _REGISTRY:
        fn = _REGISTRY[ref]
    elif ":" in ref:
        mod_name, _, attr = ref.partition(":")
        if not mod_name or not attr:
            raise SpecError(path, f"kernel {ref!r} is not 'module:function'")
        try:
            mod = importlib.import_module(mod_name)
        except Exception as exc:  # ImportError, or an error inside the module
            raise SpecError(path, f"kernel {ref!r}: cannot import {mod_name!r} "
                            f"({type(exc).__name__}: {exc})") from None
        obj: Any = mod
        for part in attr.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                raise SpecError(path, f"kernel {ref!r}: {mod_name!r} has no {attr!r}")
        if not callable(obj):
            raise SpecError(path, f"kernel {ref!r} is not callable")
        fn = obj
    else:
        raise SpecError(path, f"unknown kernel {ref!r} (registered: "
                        f"{', '.join(registered())}; or use 'module:function')")
    _CACHE[ref] = fn
    return fn


# ---------------------------------------------------------------------- built-ins
@register("noop")
def noop(*args: Any, **kwargs: Any) -> None:
    """Do nothing (null task: measures pure overhead)."""
    return None


@register("sleep", scalable=True)
def sleep(seconds: float = 0.0, *args: Any, **kwargs: Any) -> None:
    """Sleep ``seconds`` (the paper's tasks were sleeps)."""
    if seconds > 0:
        time.sleep(seconds)


@register("spin", scalable=True)
def spin(seconds: float = 0.0, *args: Any, **kwargs: Any) -> int:
    """Keep one core busy for ``seconds`` of wall time; returns the loop count."""
    end = time.perf_counter() + seconds
    count = 0
    while time.perf_counter() < end:
        count += 1
    return count


@register("matmul")
def matmul(n: int = 256, repeat: int = 1, seed: int = 0) -> float:
    """Multiply two random ``n`` x ``n`` float64 matrices with NumPy ``repeat`` times.

    Returns:
        The trace of the last product (a checksum).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n))
    b = rng.standard_normal((n, n))
    c = a
    for _ in range(max(1, repeat)):
        c = a @ b
    return float(np.trace(c))


@register("fail")
def fail(message: str = "task failed on purpose", *args: Any, **kwargs: Any) -> None:
    """Raise ``RuntimeError(message)`` (for testing failure handling)."""
    raise RuntimeError(message)


@register("echo")
def echo(*args: Any, inputs: list[Any] | None = None, **kwargs: Any) -> Any:
    """Return the arguments and the parents' results (for testing data flow)."""
    from .context import context

    ctx = context()
    return {"task": ctx.name if ctx else None, "args": list(args), "inputs": inputs}


@register("exec")
def exec_(*argv: Any, check: bool = True, **kwargs: Any) -> int:
    """Run an executable ``argv`` (no shell); returns its exit status, raises on a
    non-zero one (``check``). A timeout kills its whole process group."""
    from .timeouts import run_command

    return run_command(*argv, check=check)

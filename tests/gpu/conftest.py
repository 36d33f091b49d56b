"""GPU tier: every test here is skipped cleanly unless CuPy imports and sees a GPU.

Run it with ``python3 -m pytest tests/gpu`` on a GPU machine, or all GPU checks at once
with ``tests/gpu/device_check.sh``.
"""

from __future__ import annotations

import pytest


def gpu_available() -> str:
    """Empty when CuPy and a GPU are usable; otherwise why not."""
    try:
        import cupy  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return "CuPy is not installed"
    try:
        n = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:
        return f"no CUDA device ({type(exc).__name__})"
    return "" if n > 0 else "no CUDA device"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the GPU tests (only those) when there is no GPU."""
    why = gpu_available()
    mark = pytest.mark.skip(reason=f"needs CuPy and a GPU: {why}")
    for item in items:
        if "tests/gpu/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.gpu)
            if why:
                item.add_marker(mark)

"""GPU kernels on CuPy (imported lazily) and their explicit NumPy counterparts.

``gpu_matmul``, ``gpu_stencil``, ``gpu_md_step`` and ``gpu_train_step`` run on the
worker's bound GPU and synchronise the device before returning, so the task's end
timestamp includes the GPU work. They never fall back to the CPU: without CuPy, on
a worker without a GPU, or on a *virtual* GPU (declared by a layout) they raise
:class:`GPUUnavailable`. The CPU versions are separate kernels (``cpu_matmul``,
``cpu_stencil``, ``cpu_md_step``, ``cpu_train_step``), chosen explicitly in the spec,
so a CPU run is never labelled GPU. Both share one implementation over an array
module ``xp`` (NumPy or CuPy).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .kernels import register


class GPUUnavailable(RuntimeError):
    """A GPU kernel was asked to run where no real GPU (or no CuPy) is available."""


def _cupy() -> Any:
    """CuPy on this worker's bound device, or :class:`GPUUnavailable` saying why."""
    from .binding import device_index
    from .context import context

    ctx = context()
    if ctx is not None:
        if ctx.virtual_gpu:
            raise GPUUnavailable(
                f"task {ctx.name} runs on rank {ctx.rank}, whose GPU is virtual (declared "
                "by the layout, not present): GPU kernels need a real GPU; use the cpu_* "
                "kernel or a machine with GPUs")
        if not ctx.gpus:
            raise GPUUnavailable(
                f"task {ctx.name} runs on rank {ctx.rank}, which holds no GPU: request "
                "gpus: 1 for GPU kernels (or use the cpu_* kernel)")
    try:
        import cupy  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError as exc:
        raise GPUUnavailable(f"CuPy is not installed ({exc}); GPU kernels need it") from None
    try:
        cupy.cuda.Device(device_index()).use()
    except Exception as exc:
        raise GPUUnavailable(f"no usable CUDA device ({type(exc).__name__}: {exc})") from None
    return cupy


def _sync(xp: Any) -> None:
    if xp is not np:
        xp.cuda.Device().synchronize()


# ---------------------------------------------------------------- implementations
def matmul_xp(xp: Any, n: int = 1024, repeat: int = 1, dtype: str = "float32",
              seed: int = 0) -> dict[str, float]:
    """``repeat`` products of two ``n`` x ``n`` random matrices with array module ``xp``.

    Returns:
        ``seconds`` (of the products, device synchronised), ``tflops`` and a
        ``checksum`` (the mean of the last product).
    """
    rng = np.random.default_rng(seed)
    a = xp.asarray(rng.standard_normal((n, n), dtype=np.float32).astype(dtype))
    b = xp.asarray(rng.standard_normal((n, n), dtype=np.float32).astype(dtype))
    c = a @ b  # warm-up (cuBLAS handle, kernel selection)
    _sync(xp)
    t0 = time.perf_counter()
    for _ in range(max(1, repeat)):
        c = a @ b
    _sync(xp)
    dt = time.perf_counter() - t0
    flops = 2.0 * n ** 3 * max(1, repeat)
    return {"seconds": dt, "tflops": flops / dt / 1e12 if dt > 0 else 0.0,
            "checksum": float(c.mean())}


def stencil_xp(xp: Any, n: int = 512, steps: int = 100) -> dict[str, float]:
    """Jacobi iterations of the 2-D Laplace equation on an ``n`` x ``n`` grid (hot top
    edge); returns ``seconds`` and the interior mean (a checksum)."""
    u = xp.zeros((n, n), dtype=xp.float64)
    u[0, :] = 1.0
    t0 = time.perf_counter()
    for _ in range(steps):
        u[1:-1, 1:-1] = 0.25 * (u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:])
    _sync(xp)
    return {"seconds": time.perf_counter() - t0, "checksum": float(u[1:-1, 1:-1].mean())}


def md_step_xp(xp: Any, natoms: int = 1024, steps: int = 10, dt: float = 1e-3,
               seed: int = 0) -> dict[str, float]:
    """Velocity-Verlet steps of a Lennard-Jones fluid (all pairs, softened); returns
    ``seconds``, and the final ``kinetic`` and ``potential`` energies."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(natoms ** (1 / 3)))
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    pos = xp.asarray(grid[:natoms] * 1.2 + rng.normal(0, 0.01, (natoms, 3)))
    vel = xp.asarray(rng.normal(0, 0.1, (natoms, 3)))

    def forces(p: Any) -> tuple[Any, Any]:
        d = p[:, None, :] - p[None, :, :]
        r2 = (d * d).sum(-1) + 1e-2
        xp.fill_diagonal(r2, xp.inf)
        inv6 = r2 ** -3
        pot = 2.0 * (inv6 * inv6 - inv6)
        pot = xp.where(xp.isfinite(pot), pot, 0.0).sum()
        coef = 24.0 * (2.0 * inv6 * inv6 - inv6) / r2
        return (coef[:, :, None] * d).sum(1), pot

    f, pot = forces(pos)
    t0 = time.perf_counter()
    for _ in range(steps):
        vel = vel + 0.5 * dt * f
        pos = pos + dt * vel
        f, pot = forces(pos)
        vel = vel + 0.5 * dt * f
    _sync(xp)
    return {"seconds": time.perf_counter() - t0, "kinetic": float(0.5 * (vel * vel).sum()),
            "potential": float(pot)}


def train_step_xp(xp: Any, batch: int = 256, dim: int = 256, hidden: int = 512,
                  steps: int = 10, lr: float = 1e-2, seed: int = 0) -> dict[str, float]:
    """SGD steps of a two-layer ReLU autoencoder (manual backward pass); returns
    ``seconds`` and the ``loss`` before and after."""
    rng = np.random.default_rng(seed)
    x = xp.asarray(rng.standard_normal((batch, dim)).astype(np.float32))
    w1 = xp.asarray((rng.standard_normal((dim, hidden)) / np.sqrt(dim)).astype(np.float32))
    w2 = xp.asarray((rng.standard_normal((hidden, dim)) / np.sqrt(hidden)).astype(np.float32))
    first = last = 0.0
    t0 = time.perf_counter()
    for i in range(max(1, steps)):
        h = xp.maximum(x @ w1, 0)
        y = h @ w2
        err = y - x
        loss = float((err * err).mean()) if i in (0, steps - 1) else 0.0
        if i == 0:
            first = loss
        last = loss
        gy = 2.0 * err / err.size
        gw2 = h.T @ gy
        gh = (gy @ w2.T) * (h > 0)
        gw1 = x.T @ gh
        w1 -= lr * gw1
        w2 -= lr * gw2
    _sync(xp)
    return {"seconds": time.perf_counter() - t0, "loss_first": first, "loss_last": last}


# ---------------------------------------------------------------- registered kernels
@register("gpu_matmul")
def gpu_matmul(n: int = 4096, repeat: int = 10, dtype: str = "float32",
               seed: int = 0) -> dict[str, float]:
    """GEMM on the bound GPU (CuPy); see :func:`matmul_xp`."""
    return matmul_xp(_cupy(), n, repeat, dtype, seed)


@register("cpu_matmul")
def cpu_matmul(n: int = 512, repeat: int = 1, dtype: str = "float32",
               seed: int = 0) -> dict[str, float]:
    """GEMM with NumPy; see :func:`matmul_xp`."""
    return matmul_xp(np, n, repeat, dtype, seed)


@register("gpu_stencil")
def gpu_stencil(n: int = 4096, steps: int = 100) -> dict[str, float]:
    """Jacobi stencil on the bound GPU; see :func:`stencil_xp`."""
    return stencil_xp(_cupy(), n, steps)


@register("cpu_stencil")
def cpu_stencil(n: int = 512, steps: int = 100) -> dict[str, float]:
    """Jacobi stencil with NumPy; see :func:`stencil_xp`."""
    return stencil_xp(np, n, steps)


@register("gpu_md_step")
def gpu_md_step(natoms: int = 4096, steps: int = 10, dt: float = 1e-3,
                seed: int = 0) -> dict[str, float]:
    """Lennard-Jones MD steps on the bound GPU; see :func:`md_step_xp`."""
    return md_step_xp(_cupy(), natoms, steps, dt, seed)


@register("cpu_md_step")
def cpu_md_step(natoms: int = 256, steps: int = 10, dt: float = 1e-3,
                seed: int = 0) -> dict[str, float]:
    """Lennard-Jones MD steps with NumPy; see :func:`md_step_xp`."""
    return md_step_xp(np, natoms, steps, dt, seed)


@register("gpu_train_step")
def gpu_train_step(batch: int = 1024, dim: int = 1024, hidden: int = 2048, steps: int = 10,
                   lr: float = 1e-2, seed: int = 0) -> dict[str, float]:
    """Autoencoder training steps on the bound GPU; see :func:`train_step_xp`."""
    return train_step_xp(_cupy(), batch, dim, hidden, steps, lr, seed)


@register("cpu_train_step")
def cpu_train_step(batch: int = 256, dim: int = 256, hidden: int = 512, steps: int = 10,
                   lr: float = 1e-2, seed: int = 0) -> dict[str, float]:
    """Autoencoder training steps with NumPy; see :func:`train_step_xp`."""
    return train_step_xp(np, batch, dim, hidden, steps, lr, seed)

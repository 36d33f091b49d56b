"""GPU kernels agree with their NumPy counterparts and run on the bound device.

Plain functions with plain asserts (no fixtures, no pytest import), so
``device_check.sh`` can run them even where pytest is missing.
"""

from __future__ import annotations

import math

from mpiwf import binding
from mpiwf.context import TaskContext, set_context
from mpiwf.gpu_kernels import (
    GPUUnavailable,
    cpu_matmul,
    cpu_md_step,
    cpu_stencil,
    cpu_train_step,
    gpu_matmul,
    gpu_md_step,
    gpu_stencil,
    gpu_train_step,
)


def close(a: float, b: float, rel: float) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=rel)


def test_gpu_is_discovered() -> None:
    ids, source = binding.visible_gpus()
    assert ids, source
    assert binding.cupy_device_count() >= 1


def test_matmul_matches_numpy() -> None:
    g = gpu_matmul(256, 2, "float64", seed=1)
    c = cpu_matmul(256, 2, "float64", seed=1)
    assert close(g["checksum"], c["checksum"], 1e-9), (g, c)
    assert g["seconds"] > 0 and g["tflops"] > 0


def test_stencil_matches_numpy() -> None:
    g, c = gpu_stencil(128, 50), cpu_stencil(128, 50)
    assert close(g["checksum"], c["checksum"], 1e-12), (g, c)


def test_md_step_matches_numpy() -> None:
    g, c = gpu_md_step(128, 5), cpu_md_step(128, 5)
    assert close(g["kinetic"], c["kinetic"], 1e-8) and close(g["potential"], c["potential"],
                                                               1e-8), (g, c)


def test_train_step_matches_numpy_and_learns() -> None:
    g = gpu_train_step(64, 32, 64, steps=50, lr=0.05)
    c = cpu_train_step(64, 32, 64, steps=50, lr=0.05)
    assert close(g["loss_first"], c["loss_first"], 1e-4), (g, c)
    assert close(g["loss_last"], c["loss_last"], 1e-3), (g, c)
    assert g["loss_last"] < g["loss_first"]


def test_kernel_in_a_task_on_a_real_gpu_and_refusal_on_a_virtual_one() -> None:
    set_context(TaskContext(0, "g[0]", "g", 0, rank=1, gpus=(0,), virtual_gpu=False))
    try:
        assert gpu_matmul(128, 1)["tflops"] > 0
        set_context(TaskContext(0, "g[0]", "g", 0, rank=1, gpus=(0,), virtual_gpu=True))
        try:
            gpu_matmul(128, 1)
        except GPUUnavailable as exc:
            assert "virtual" in str(exc)
        else:
            raise AssertionError("a GPU kernel ran on a virtual GPU")
    finally:
        set_context(None)


def test_device_is_synchronised_before_the_kernel_returns() -> None:
    # a big GEMM's reported seconds must cover the GPU work: far above launch latency
    r = gpu_matmul(4096, 5)
    assert r["seconds"] > 5 * 2 * 4096 ** 3 / 2e15, r  # slower than 2 PFLOP/s

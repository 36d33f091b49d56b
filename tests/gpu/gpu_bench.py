"""GPU kernel timings against the card's measured fp32 GEMM peak; prints JSON rows.

Run by ``tests/gpu/device_check.sh`` (``python3 tests/gpu/gpu_bench.py OUT.json``).
The peak is measured here, in the same process, with raw CuPy GEMMs (best of
several sizes and repeats); each mpiwf kernel is then timed by what it reports
(device synchronised) and compared with it. CPU counterparts run at a smaller size
on the same host for the speed-up.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def raw_gemm_peak(cp: Any, sizes: tuple[int, ...], work: float = 2e13) -> tuple[float, int]:
    """Best fp32 GEMM rate (TFLOP/s) over a few sizes (about ``work`` flops per try)."""
    best, best_n = 0.0, 0
    for n in sizes:
        a = cp.random.standard_normal((n, n), dtype=cp.float32)
        b = cp.random.standard_normal((n, n), dtype=cp.float32)
        a @ b
        cp.cuda.Device().synchronize()
        reps = max(2, int(work / (2 * n ** 3)))
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(reps):
                a @ b
            cp.cuda.Device().synchronize()
            rate = 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e12
            if rate > best:
                best, best_n = rate, n
        del a, b
        cp.get_default_memory_pool().free_all_blocks()
    return best, best_n


def main(out: str, quick: bool = False) -> int:
    """Measure and write the rows to ``out`` (``quick``: tiny sizes, a dry run)."""
    try:
        import cupy as cp  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError as exc:
        sys.stderr.write(f"gpu_bench: needs CuPy and a GPU ({exc})\n")
        return 2

    from mpiwf import gpu_kernels as gk

    rows: list[dict[str, Any]] = []
    try:
        name = cp.cuda.runtime.getDeviceProperties(0)["name"]
    except cp.cuda.runtime.CUDARuntimeError as exc:  # CuPy, but no usable device
        sys.stderr.write(f"gpu_bench: needs CuPy and a GPU ({exc})\n")
        return 2
    name = name.decode() if isinstance(name, bytes) else str(name)
    k = 16 if quick else 1  # sizes divided by k
    peak, peak_n = raw_gemm_peak(cp, (4096 // k, 8192 // k, 16384 // k),
                                 2e9 if quick else 2e13)
    rows.append({"kernel": "cuBLAS fp32 GEMM (peak)", "size": f"{peak_n}^3",
                 "tflops": peak, "of_peak": 1.0, "device": name})
    for n in (4096 // k, 8192 // k):
        r = gk.gpu_matmul(n, 10)
        rows.append({"kernel": "gpu_matmul", "size": f"{n}^3 x10", "seconds": r["seconds"],
                     "tflops": r["tflops"], "of_peak": r["tflops"] / peak})
    c = gk.cpu_matmul(2048 // k, 1)
    g = gk.gpu_matmul(2048 // k, 1)
    rows.append({"kernel": "cpu_matmul", "size": f"{2048 // k}^3", "seconds": c["seconds"],
                 "tflops": c["tflops"], "gpu_speedup": c["seconds"] / g["seconds"]})
    n, steps = 8192 // k, 100
    s = gk.gpu_stencil(n, steps)
    gbs = 6 * 8 * (n - 2) ** 2 * steps / s["seconds"] / 1e9  # 5 reads + 1 write, float64
    cn = 2048 // k
    cs = gk.cpu_stencil(cn, 20)
    rows.append({"kernel": "gpu_stencil", "size": f"{n}^2 x{steps}", "seconds": s["seconds"],
                 "per_step_ms": 1e3 * s["seconds"] / steps, "GB_s": gbs,
                 "gpu_speedup_per_point": (cs["seconds"] / (20 * (cn - 2) ** 2))
                 / (s["seconds"] / (steps * (n - 2) ** 2))})
    m = gk.gpu_md_step(4096 // k, 10)
    rows.append({"kernel": "gpu_md_step", "size": f"{4096 // k} atoms x10",
                 "seconds": m["seconds"],
                 "per_step_ms": 1e2 * m["seconds"]})
    b, d, h, st = 4096 // k, 1024 // k, 4096 // k, 20
    t = gk.gpu_train_step(b, d, h, st)
    flops = 12.0 * b * d * h * st  # 2 forward + 4 backward GEMMs of 2*b*d*h
    rows.append({"kernel": "gpu_train_step", "size": f"{b}x{d}x{h} x{st}",
                 "seconds": t["seconds"], "tflops": flops / t["seconds"] / 1e12,
                 "of_peak": flops / t["seconds"] / 1e12 / peak,
                 "loss": f"{t['loss_first']:.3f}->{t['loss_last']:.3f}"})
    with open(out, "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)
    for r in rows:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a not in ("--quick", "")]
    sys.exit(main(args[0] if args else "gpu-bench.json", quick="--quick" in sys.argv))
